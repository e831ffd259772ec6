r"""A diffusers ``AutoencoderKL`` directory as the codec of a latent-trained nidiff model.

Images :math:`x \in [-1, 1]^{C \times H \times W}` and latents
:math:`z_0 \in \mathbb R^{C_z \times H/f \times W/f}` (``f = 2^{\#blocks - 1}``):

.. math:: m = \mathrm{mode}\, q_\phi(z \mid x), \qquad z_0 = (m - \mu)\, s, \qquad
          \mathcal D(z_0) = \mathrm{dec}_\phi(z_0 / s + \mu),

the posterior **mode** (deterministic, as nidiff's Stable Diffusion adapters encode), shifted and
scaled by a :class:`LatentScaling` :math:`(\mu, s)` — scalars, or per channel ``(C_z,)``. The
scaling is the VAE config's own (``scaling_factor``, ``shift_factor`` or ``latents_mean``/
``latents_std``: what a diffusers pipeline with this VAE uses) or LDM's (Rombach et al. 2022,
Sec. 4 / App. G: :math:`s = 1/\hat\sigma` of the encoded data, :math:`\mu = 0`); a trained model
records which (:meth:`VaeCodec.record`), with the VAE's path, configuration and the SHA-256 of its
weights, so a model is never decoded through another VAE (:func:`check_vae`).

``diffusers`` is imported when a VAE is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["VAE_CLASS", "LatentScaling", "VaeCodec", "check_vae", "read_vae_config", "vae_dir"]

VAE_CLASS = "AutoencoderKL"
_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
#: The configuration entries a model records of its VAE (and :func:`check_vae` compares).
_SHAPE_KEYS = ("in_channels", "out_channels", "latent_channels", "block_out_channels")


@dataclass(frozen=True)
class LatentScaling:
    r""":math:`z_0 = (m - \mu)\,s` (module docstring): ``shift`` :math:`\mu` and ``scale``
    :math:`s`, each a float or one float per latent channel; ``source`` says where they came
    from (``vae``: the VAE's config, ``std``: LDM's :math:`1/\hat\sigma` of the data)."""

    shift: float | tuple[float, ...] = 0.0
    scale: float | tuple[float, ...] = 1.0
    source: str = "vae"

    def _tensors(self, like: Tensor) -> tuple[Tensor, Tensor]:
        def t(v: float | tuple[float, ...]) -> Tensor:
            out = torch.as_tensor(v, dtype=torch.float32, device=like.device)
            return out.view(1, -1, 1, 1) if out.ndim else out

        return t(self.shift), t(self.scale)

    def apply(self, mode: Tensor) -> Tensor:
        """Posterior modes ``(B, C_z, h, w)`` → latents :math:`z_0`."""
        mu, s = self._tensors(mode)
        return ((mode.float() - mu) * s).contiguous()

    def invert(self, z: Tensor) -> Tensor:
        """Latents :math:`z_0` → what the VAE decoder takes, :math:`z_0/s + \\mu`."""
        mu, s = self._tensors(z)
        return z.float() / s + mu

    def to_dict(self) -> dict[str, Any]:
        as_json = lambda v: list(v) if isinstance(v, tuple) else float(v)  # noqa: E731
        return {"shift": as_json(self.shift), "scale": as_json(self.scale), "source": self.source}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LatentScaling:
        as_value = lambda v: tuple(float(x) for x in v) if isinstance(v, list) else float(v)  # noqa: E731
        return cls(as_value(d["shift"]), as_value(d["scale"]), str(d.get("source", "vae")))

    @classmethod
    def of_config(cls, config: dict[str, Any]) -> LatentScaling:
        """The VAE config's own scaling (per-channel ``latents_mean``/``latents_std`` when it
        has them, as :class:`~nidiff.models.latent.LatentPipeline` reads them)."""
        scale = float(config.get("scaling_factor") or 1.0)
        mean, std = config.get("latents_mean"), config.get("latents_std")
        if mean is not None and std is not None:
            return cls(tuple(map(float, mean)), tuple(scale / float(v) for v in std), "vae")
        shift = config.get("shift_factor")
        return cls(0.0 if shift is None else float(shift), scale, "vae")

    @classmethod
    def of_data(cls, modes: Tensor) -> LatentScaling:
        r"""LDM's: :math:`\mu = 0`, :math:`s = 1/\hat\sigma` over every element of ``modes``."""
        std = float(modes.float().std())
        if not std > 0:
            raise ValueError("the encoded data have zero spread: cannot scale them by 1/std")
        return cls(0.0, 1.0 / std, "std")


def vae_dir(path: str | os.PathLike) -> Path:
    """The ``AutoencoderKL`` folder of ``path``: ``path`` itself, or the ``vae/`` sub-folder of a
    diffusers pipeline directory (``model_index.json``)."""
    root = Path(path)
    if (root / "model_index.json").is_file() and (root / "vae" / "config.json").is_file():
        return root / "vae"
    return root


def read_vae_config(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """``(folder, config)`` of an ``AutoencoderKL`` directory (:func:`vae_dir`).

    Raises:
        ValueError: not a directory, no ``config.json``, unreadable JSON, another class than
            ``AutoencoderKL``, or no weights file.
    """
    root = vae_dir(path)
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory (expected a saved diffusers AutoencoderKL)")
    file = root / "config.json"
    if not file.is_file():
        raise ValueError(f"{root} is not an AutoencoderKL directory: it has no config.json")
    try:
        config = json.loads(file.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{file} is not readable JSON ({err})") from None
    name = config.get("_class_name") if isinstance(config, dict) else None
    if name != VAE_CLASS:
        what = f"a {name}" if isinstance(name, str) else "a config that names no _class_name"
        raise ValueError(f"{root} holds {what}, not an {VAE_CLASS} (a diffusers VAE directory)")
    if _weights(root) is None:
        raise ValueError(f"{root} has no weights ({' or '.join(_WEIGHTS)})")
    return root, config


def _weights(root: Path) -> Path | None:
    return next((root / w for w in _WEIGHTS if (root / w).is_file()), None)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class VaeCodec:
    """A loaded ``AutoencoderKL`` with a :class:`LatentScaling` (module docstring).

    Attributes:
        directory: the VAE folder; ``config``: its ``config.json``; ``factor``: ``f``;
        ``in_channels``/``out_channels``: image channels; ``latent_channels``: ``C_z``;
        ``digest``: SHA-256 of the weights file.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        scaling: LatentScaling | None = None,
        device: str | torch.device = "cpu",
    ):
        from .pipeline_dir import place

        self.directory, self.config = read_vae_config(path)
        try:
            from diffusers import AutoencoderKL
        except ImportError as err:  # pragma: no cover (diffusers is a test dependency)
            raise ValueError(
                f"a VAE needs diffusers (pip install 'nidiff[adapters]'): {err}"
            ) from err
        try:
            vae = AutoencoderKL.from_pretrained(str(self.directory), local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
            raise ValueError(f"cannot load the AutoencoderKL in {self.directory}: {err}") from None
        self.device = torch.device(device)
        self.vae = place(vae, self.device, torch.float32)
        cfg = vae.config
        self.factor = 2 ** (len(cfg.block_out_channels) - 1)
        self.in_channels, self.out_channels = int(cfg.in_channels), int(cfg.out_channels)
        self.latent_channels = int(cfg.latent_channels)
        self.scaling = scaling if scaling is not None else LatentScaling.of_config(dict(cfg))
        self._digest: str | None = None

    @property
    def digest(self) -> str:
        """SHA-256 of the weights file (computed once)."""
        if self._digest is None:
            self._digest = _sha256(_weights(self.directory))  # type: ignore[arg-type]
        return self._digest

    def check_size(self, size: int) -> None:
        """Image sides must be positive multiples of the VAE factor."""
        if size <= 0 or size % self.factor:
            raise ValueError(
                f"image size {size} must be a positive multiple of the VAE's downsampling factor "
                f"{self.factor} ({self.directory})"
            )

    @torch.no_grad()
    def modes(self, images: Tensor) -> Tensor:
        """Images ``(B, in_channels, H, W)`` in ``[-1, 1]`` → posterior modes
        ``(B, C_z, H/f, W/f)`` (unscaled), float32 on the CPU."""
        if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
            raise ValueError("images must be a floating tensor (B, C, H, W) in [-1, 1]")
        if images.shape[1] != self.in_channels:
            raise ValueError(
                f"images have {images.shape[1]} channels; the VAE takes {self.in_channels}"
            )
        x = images.to(self.device, torch.float32)
        return self.vae.encode(x).latent_dist.mode().float().cpu()

    def encode(self, images: Tensor) -> Tensor:
        """Images → latents :math:`z_0 = (m - \\mu)s` on :attr:`device`."""
        return self.scaling.apply(self.modes(images)).to(self.device)

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """Latents ``(B, C_z, h, w)`` → images ``(B, out_channels, h f, w f)`` in ``[-1, 1]``."""
        if not isinstance(z, Tensor) or z.ndim != 4 or z.shape[1] != self.latent_channels:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(
                f"latents must be (B, {self.latent_channels}, h, w) for this VAE, got {shape}"
            )
        x = self.scaling.invert(z.to(self.device))
        return self.vae.decode(x).sample.float().clamp(-1.0, 1.0)

    def record(self) -> dict[str, Any]:
        """What a checkpoint keeps of its VAE: path, class, shape entries, weights digest and
        the scaling (:func:`check_vae` compares them)."""
        return {
            "path": str(self.directory.resolve()),
            "class": VAE_CLASS,
            **{k: _plain(self.config.get(k)) for k in _SHAPE_KEYS},
            "factor": self.factor,
            "sha256": self.digest,
            "scaling": self.scaling.to_dict(),
        }


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def check_vae(recorded: dict[str, Any], codec: VaeCodec, what: str) -> None:
    """Refuse ``codec`` for a model trained with the VAE ``recorded`` (:meth:`VaeCodec.record`):
    other channels or factor first (they name both shapes), then other weights.

    Raises:
        ValueError: naming ``what`` (the model) and the difference.
    """
    mine = codec.record()
    for key in ("latent_channels", "in_channels", "out_channels", "factor"):
        if recorded.get(key) != mine[key]:
            raise ValueError(
                f"{what} was trained with a VAE of {key} {recorded.get(key)} "
                f"({recorded.get('path')}); {codec.directory} has {key} {mine[key]}"
            )
    if recorded.get("sha256") != mine["sha256"]:
        raise ValueError(
            f"{what} was trained with another VAE: the weights in {codec.directory} are not the "
            f"ones it recorded (sha256 {str(recorded.get('sha256'))[:12]}…, now "
            f"{mine['sha256'][:12]}…)"
        )
