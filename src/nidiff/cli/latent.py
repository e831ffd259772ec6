r"""A Stable Diffusion pipeline as the CLI's :class:`~nidiff.cli.model.LoadedCli`: methods run
on VAE latents, conditions are text prompts.

An image file is read as RGB, centre-cropped to the largest square, resized (bicubic) to
``size × size`` and encoded, :math:`x_0 = z_0 = \mathcal E(x)` of shape
``(1, C_z, size/f, size/f)`` (the posterior mode, scaled; ``f`` = 8 for SD 1.x). Weighting
maps, :math:`\lambda` and masks therefore live at latent resolution. The method runs with the
pipeline's own schedule (:attr:`~nidiff.models.stable_diffusion.StableDiffusion.process`); the
result is decoded, :math:`\hat x = \mathcal D(\hat z_0)`. The unconditional condition of
classifier-free guidance is the empty prompt.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import click
import torch
from torch import Tensor

from ..methods import EF_PAPER, P2P_PAPER, method_defaults
from .common import InputError, check_image_file

__all__ = ["EF_PAPER", "P2P_PAPER", "LatentModel"]


class LatentModel:
    """A diffusers Stable Diffusion pipeline directory loaded for the CLI (module docstring).

    Args:
        path: the pipeline directory (``model_index.json`` and the components' sub-folders).
        device, dtype: passed to
            :meth:`~nidiff.models.stable_diffusion.StableDiffusion.from_pretrained`.
        size: image side in pixels (default: the UNet's training size, 512 for SD 1.x); must be
            a multiple of the VAE factor.

    Raises:
        ValueError: not a pipeline, missing components, or a size the VAE cannot take.
    """

    def __init__(
        self,
        path: Path,
        *,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        size: int | None = None,
    ):
        try:
            from ..models.stable_diffusion import StableDiffusion

            _quiet()
            sd = StableDiffusion.from_pretrained(path, device=device, dtype=dtype)
        except ImportError as err:
            raise InputError(
                f"Stable Diffusion models need diffusers and transformers "
                f"(pip install 'nidiff[adapters]'): {err}"
            ) from err
        self.sd, self.name, self.directory = sd, str(path), Path(path)
        self.factor = sd.vae_scale_factor
        self.size = sd.default_image_size if size is None else int(size)
        sd.check_image_size(self.size, self.size)
        self.device = sd.device
        self.denoiser, self.process = sd.denoiser, sd.process
        self.null = sd.null_cond()
        self.space = sd

    def grid(self, steps: int):
        """The pipeline's own grid (its scheduler's spacing and ``steps_offset``), the times a
        diffusers pipeline visits (:meth:`StableDiffusion.grid`)."""
        try:
            return self.sd.grid(steps)
        except ValueError as err:
            raise InputError(str(err)) from err

    def load_image(self, path: Path, resize: bool) -> Tensor:
        """Encode an image file (RGB, centre crop, resize to ``size``) to latents :math:`z_0`;
        ``resize`` is implied."""
        check_image_file(path)
        return self.sd.encode_image(self.sd.load_image(path, self.size))

    def load_mask(self, path: Path, resize: bool) -> Tensor:
        """A grey image at ``size``, averaged over ``f × f`` blocks: ``(1, 1, h, w)`` in
        ``[0, 1]`` at latent resolution."""
        from ..data.folder import load_image

        check_image_file(path)
        grey = (load_image(path, self.size, channels=1)[None].to(self.device) + 1) / 2
        return torch.nn.functional.avg_pool2d(grey, self.factor)

    def to_image(self, x: Tensor) -> Tensor:
        return self.sd.decode_latents(x)

    def conditions(self, *names: str | None) -> list[Any]:
        """Text embeddings ``(1, L, D)`` of the prompts; a prompt longer than the tokenizer's
        ``L`` tokens is truncated with a warning on stderr."""
        prompts = [n for n in names if n is not None]
        if not prompts:
            return [None for _ in names]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            states = self.sd.encode_prompt(prompts)
        for w in caught:
            click.echo(f"Warning: {w.message}", err=True)
        it = iter(states.split(1))
        return [None if n is None else next(it) for n in names]

    def condition_record(self, role: str, name: str | None, cond: Any) -> dict[str, Any]:
        return {f"{role}_prompt": name}

    def sampling(self, name: str | None, num: int, guidance: float) -> tuple[Any, Any, dict]:
        """Prompt ``name`` for every sample under guidance ``guidance``; without a prompt,
        unconditional samples (empty prompt, no guidance)."""
        from ..models.contract import with_guidance

        if name is None:
            return self.denoiser, self.null.expand(num, -1, -1), {"prompt": None}
        (c,) = self.conditions(name)
        model = with_guidance(self.denoiser, guidance, self.null)
        return model, c.expand(num, -1, -1), {"prompt": name}

    def shape(self, num: int) -> tuple[int, ...]:
        h = self.size // self.factor
        return (num, int(self.sd.vae.config.latent_channels), h, h)

    def defaults(self, method: str) -> dict[str, Any]:
        """The EF paper's settings for ``ef`` (:data:`EF_PAPER`) and ``p2p``
        (:data:`P2P_PAPER`); Stable Diffusion's usual guidance scale 7.5 for the others
        (:func:`nidiff.methods.method_defaults`)."""
        return method_defaults(method, latent=True)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dir": str(self.directory.resolve()),
            "kind": "stable-diffusion",
            "size": self.size,
            "latent_shape": list(self.shape(1)[1:]),
            "prediction": self.denoiser.prediction,
            "device": str(self.device),
            "dtype": str(self.sd.dtype).removeprefix("torch."),
        }


def _quiet() -> None:
    """No loading progress bars from diffusers/transformers on the CLI's stderr."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
