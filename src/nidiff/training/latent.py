r"""Training in a VAE's latent space (the edge-preserving paper's latent experiments, EP Table 2
and App. E, after LDM, Rombach et al. 2022): the dataset is encoded once, cached on disk, and
the diffusion model is trained on :math:`z_0 = (\mathrm{mode}\,q_\phi(z\mid x) - \mu)s`
(:mod:`nidiff.models.vae`) with isotropic, GFF or edge-preserving noise — the edges are taken on
the latent, :math:`G(z_0)` (EP: "the diffusion process runs in the latent space").

**The cache.** Posterior modes (unscaled, so every scaling shares them) are written in chunks of
``chunk`` images, ``ROOT/KEY/chunk-NNNNNN.safetensors``, each atomically; a killed encoding
resumes at the first missing chunk, a complete one is read back without calling the encoder.
``KEY`` is the SHA-256 of the images fed to the VAE (their bytes and shape) and of the VAE's
weights digest and shape entries, so other data or another VAE never read a stale cache.

**What the paper leaves open** (``docs/latent-training.md``): the scaling :math:`(\mu, s)` — the
VAE's own (default) or LDM's :math:`1/\hat\sigma`; the edge map of a multi-channel latent — the
Sobel responses of every latent channel, squared and summed (one map shared by the channels,
:class:`~nidiff.noise.SobelEdges`' default), normalised per image; grey images are fed to an RGB
VAE as three equal channels.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from .._io import atomic_path, write_json
from ..models.vae import VaeCodec
from .fashion import FASHION_PROCESSES

__all__ = [
    "LATENT_PROCESSES",
    "EncodedData",
    "cache_key",
    "default_cache_root",
    "encode_dataset",
    "vae_images",
]

#: The noise processes of latent training: the pixel models' (:data:`FASHION_PROCESSES`), with
#: EP's latent-space edge sensitivity :math:`\lambda_{min} = 10^{-5}` (EP App. E).
LATENT_PROCESSES: dict[str, dict[str, Any]] = {
    **FASHION_PROCESSES,
    "edge": {**FASHION_PROCESSES["edge"], "lambda_min": 1e-5},
}
#: Bump when the cached content changes meaning (part of every key).
_CACHE_FORMAT = "nidiff-latents-1"


def default_cache_root() -> Path:
    """``$NIDIFF_CACHE/latents``, else ``$XDG_CACHE_HOME/nidiff/latents``, else
    ``~/.cache/nidiff/latents``."""
    if os.environ.get("NIDIFF_CACHE"):
        return Path(os.environ["NIDIFF_CACHE"]) / "latents"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nidiff" / "latents"


def vae_images(images: Tensor, in_channels: int) -> Tensor:
    """``images`` ``(N, C, H, W)`` as the VAE takes them: grey ``C = 1`` repeated to an RGB
    VAE's three channels (a view); otherwise ``C`` must be the VAE's ``in_channels``.

    Raises:
        ValueError: other channel counts.
    """
    c = images.shape[1]
    if c == in_channels:
        return images
    if c == 1 and in_channels == 3:
        return images.expand(-1, 3, -1, -1)
    raise ValueError(f"the images have {c} channels; the VAE takes {in_channels}")


def cache_key(images: Tensor, codec: VaeCodec) -> str:
    """SHA-256 of the images (shape and float32 bytes, before :func:`vae_images`), the VAE's
    weights digest and shape entries, and the cache format."""
    h = hashlib.sha256(_CACHE_FORMAT.encode())
    vae = {k: v for k, v in codec.record().items() if k not in ("path", "scaling")}
    h.update(json.dumps({"shape": list(images.shape), "vae": vae}, sort_keys=True).encode())
    h.update(images.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class EncodedData:
    """The dataset's posterior modes ``(N, C_z, h, w)`` and how they were obtained.

    Attributes:
        cached: images read from the cache; ``encoded``: images the encoder ran on now;
        ``seconds``: wall time of the whole step (reading and encoding); ``directory``: the cache.
    """

    modes: Tensor
    cached: int
    encoded: int
    seconds: float
    directory: Path

    def stats(self) -> dict[str, Any]:
        return {
            "cache": str(self.directory),
            "cached": self.cached,
            "encoded": self.encoded,
            "seconds": round(self.seconds, 3),
        }


def encode_dataset(
    images: Tensor,
    codec: VaeCodec,
    root: str | os.PathLike,
    *,
    chunk: int = 256,
    tick: Callable[[int], None] | None = None,
) -> EncodedData:
    """The posterior modes of ``images`` ``(N, C, H, W)`` in ``[-1, 1]`` (grey ones fed to an
    RGB VAE, :func:`vae_images`), from the cache under ``root`` where present, encoded (and
    cached) where not. ``tick(n)`` after every ``n`` images read or encoded.

    A chunk file that does not read back (truncated, foreign, other shape) is encoded again.
    """
    if chunk < 1:
        raise ValueError(f"chunk={chunk} must be >= 1")
    started = time.perf_counter()
    directory = Path(root) / cache_key(images, codec)
    directory.mkdir(parents=True, exist_ok=True)
    n, h = len(images), images.shape[-1] // codec.factor
    shape = (codec.latent_channels, images.shape[-2] // codec.factor, h)
    write_json(directory / "meta.json", {
        "format": _CACHE_FORMAT, "images": n, "chunk": chunk, "shape": list(shape),
        "vae": str(codec.directory.resolve()),
    })  # fmt: skip
    parts, cached, encoded = [], 0, 0
    for start in range(0, n, chunk):
        count = min(chunk, n - start)
        path = directory / f"chunk-{start // chunk:06d}-{chunk}.safetensors"
        modes = _read_chunk(path, (count, *shape))
        if modes is None:
            batch = vae_images(images[start : start + count], codec.in_channels)
            modes = codec.modes(batch)
            with atomic_path(path) as tmp:
                save_file({"modes": modes.contiguous()}, str(tmp), metadata={"start": str(start)})
            encoded += count
        else:
            cached += count
        parts.append(modes)
        if tick is not None:
            tick(count)
    modes = torch.cat(parts) if parts else torch.empty(0, *shape)
    return EncodedData(modes, cached, encoded, time.perf_counter() - started, directory)


def _read_chunk(path: Path, shape: tuple[int, ...]) -> Tensor | None:
    if not path.is_file():
        return None
    try:
        modes = load_file(str(path)).get("modes")
    except (SafetensorError, OSError, ValueError):
        return None
    if modes is None or tuple(modes.shape) != shape or modes.dtype != torch.float32:
        return None
    return modes
