"""``nidiff train --vae DIR``: the latent-space half of ``nidiff train``
(:mod:`nidiff.training.latent`).

:func:`vae_options` declares the options; :func:`latent_run` checks them (before anything is
written: the VAE, the image size, the channels, a run to resume) and returns a
:class:`LatentRun` whose :meth:`~LatentRun.encode` turns the dataset into latents (cached, with a
progress bar) and whose :attr:`~LatentRun.record` goes into the checkpoint's config as ``"vae"``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from torch import Tensor

from .common import InputError, input_errors, progress_bar

__all__ = ["LatentRun", "latent_run", "vae_options"]

_SCALES = ("vae", "std")


def vae_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--vae``, ``--latent-scale`` and ``--latent-cache``."""
    fn = click.option(
        "--latent-cache",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        show_default="$NIDIFF_CACHE/latents or ~/.cache/nidiff/latents",
        help="where --vae keeps the encoded dataset (reused by every run on the same data and VAE)",
    )(fn)
    fn = click.option(
        "--latent-scale",
        type=click.Choice(_SCALES),
        default="vae",
        show_default=True,
        help="--vae latents: the VAE config's scaling_factor/shift_factor (as its pipelines), or "
        "std: 1/std of the encoded data (LDM's)",
    )(fn)
    return click.option(
        "--vae",
        type=click.Path(path_type=Path),
        default=None,
        help="train on the latents of this diffusers AutoencoderKL directory (or a pipeline's "
        "vae/); sample and edit decode through it",
    )(fn)


@dataclass
class LatentRun:
    """A checked ``--vae`` run: the codec, the latent shape ``(C_z, h, w)``, the processes."""

    codec: Any
    shape: tuple[int, int, int]
    scale: str
    cache: Path
    processes: dict[str, dict[str, Any]]
    stats: dict[str, Any] | None = None

    @property
    def record(self) -> dict[str, Any]:
        """The checkpoint's ``"vae"`` entry (:meth:`nidiff.models.vae.VaeCodec.record`)."""
        return self.codec.record()

    def encode(self, images: Tensor, quiet: bool) -> Tensor:
        """The latents :math:`z_0` ``(N, C_z, h, w)`` of ``images`` (from the cache where it
        has them); sets the scaling (``std``: from these data) and :attr:`stats`."""
        from ..models.vae import LatentScaling
        from ..training.latent import encode_dataset

        with progress_bar(len(images), "encoding with the VAE", quiet, unit="img") as bar:
            data = encode_dataset(images, self.codec, self.cache, tick=bar.update)
        if self.scale == "std":
            self.codec.scaling = input_errors(LatentScaling.of_data)(data.modes)
        self.stats = data.stats()
        return self.codec.scaling.apply(data.modes)


def latent_run(
    vae: Path | None,
    scale: str,
    cache: Path | None,
    *,
    images: Tensor,
    size: int,
    out_dir: Path,
    resume: bool,
    sample_every: int,
) -> LatentRun | None:
    """Check a ``--vae`` run (``None`` without ``--vae``, after checking that the run to resume
    is not a latent one); every problem is one line, exit 2, before anything is written."""
    from ..models.vae import VaeCodec
    from ..training.latent import LATENT_PROCESSES, default_cache_root, vae_images

    recorded = _resumed_vae(out_dir) if resume else _NOTHING
    if vae is None:
        if recorded not in (_NOTHING, None):
            raise InputError(
                f"cannot resume {out_dir}: it was trained on the latents of the VAE "
                f"{recorded.get('path')}; pass --vae"
            )
        if cache is not None or scale != "vae":
            raise InputError("--latent-scale and --latent-cache apply with --vae only")
        return None
    if sample_every:
        raise InputError(
            "--sample-every: the training loop's sample grids are pixel images; with --vae use "
            "nidiff sample on a checkpoint (--model OUT_DIR/checkpoints/step-N)"
        )
    if vae.exists() and not vae.is_dir():
        raise InputError(f"--vae {vae} is a file; give a diffusers AutoencoderKL directory")
    try:
        codec = VaeCodec(vae)
    except ValueError as err:
        raise InputError(f"--vae: {' '.join(str(err).split())}") from err
    if codec.factor < 2 or codec.out_channels != 3:
        raise InputError(
            f"--vae {vae}: nidiff trains on VAEs that downsample (factor {codec.factor}) and "
            f"decode to RGB (out_channels {codec.out_channels}); need a factor >= 2 and 3"
        )
    try:
        codec.check_size(size)
        vae_images(images[:1], codec.in_channels)
    except ValueError as err:
        raise InputError(f"--vae: {err}") from err
    if recorded is None:
        raise InputError(f"cannot resume {out_dir} with --vae: it was trained in pixel space")
    if recorded is not _NOTHING:
        from ..models.vae import check_vae

        try:
            check_vae(recorded, codec, f"the run in {out_dir}")
        except ValueError as err:
            raise InputError(f"--vae: cannot resume: {err}") from err
        if recorded.get("scaling", {}).get("source", "vae") != scale:
            raise InputError(
                f"--latent-scale {scale}: the run in {out_dir} was trained with "
                f"--latent-scale {recorded['scaling'].get('source')}"
            )
    h = size // codec.factor
    return LatentRun(
        codec=codec,
        shape=(codec.latent_channels, h, h),
        scale=scale,
        cache=(cache if cache is not None else default_cache_root()).resolve(),
        processes=LATENT_PROCESSES,
    )


_NOTHING: Any = object()  # no run to resume


def _resumed_vae(out_dir: Path) -> Any:
    """The ``"vae"`` record of the checkpoint a resume would continue (``None``: a pixel run;
    :data:`_NOTHING`: nothing readable to resume)."""
    from ..training.checkpoint import read_config
    from ..training.trainer import latest_checkpoint

    for ckpt in (latest_checkpoint(out_dir), out_dir / "model"):
        if ckpt is None:
            continue
        try:
            return read_config(ckpt).get("vae")
        except (ValueError, FileNotFoundError):
            continue
    return _NOTHING
