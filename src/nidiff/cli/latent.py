r"""A latent text-to-image pipeline (any family of :data:`nidiff.models.families.FAMILIES`: SD
1.x/2.x, SDXL, SD3/3.5, FLUX) as the CLI's :class:`~nidiff.cli.model.LoadedCli`: methods run on
VAE latents, conditions are text prompts.

An image file is read as RGB, centre-cropped to the largest square, resized (bicubic) to
``size × size`` and encoded, :math:`x_0 = z_0 = \mathcal E(x)` of shape
``(1, C_z, size/f, size/f)`` (the posterior mode, scaled; ``f`` = 8 for every family's VAE).
Weighting maps, :math:`\lambda` and masks therefore live at latent resolution (FLUX's too: its
space is the unpacked latent). The method runs with the pipeline's own process and grid; the
result is decoded, :math:`\hat x = \mathcal D(\hat z_0)`. The unconditional condition of
classifier-free guidance is the empty prompt (zeros for SDXL base). Defaults (size, guidance,
steps, the sampler of ``nidiff sample``) are the family's.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import click
import torch
from torch import Tensor

from ..methods import EF_PAPER, P2P_PAPER, method_defaults
from ..models.latent import repeat_cond, split_cond
from .common import InputError, check_image_file

__all__ = ["EF_PAPER", "P2P_PAPER", "LatentModel"]


class LatentModel:
    """A diffusers pipeline directory loaded for the CLI (module docstring).

    Args:
        path: the pipeline directory (``model_index.json`` and the components' sub-folders).
        device, dtype, offload: passed to :func:`nidiff.models.families.load_pipeline`.
        size: image side in pixels (default: the family's, e.g. 512 for SD 1.x, 1024 for SDXL,
            SD3 and FLUX); must follow the family's size rule.

    Attributes:
        family: the :class:`~nidiff.models.families.Family` row.
        sd: the adapter (a :class:`~nidiff.models.space.ModelSpace`), also ``space``.

    Raises:
        ValueError: not a pipeline, an unsupported family, missing components, or a size the
            family cannot take.
    """

    def __init__(
        self,
        path: Path,
        *,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        size: int | None = None,
        offload: bool = False,
        negative_prompt: str | None = None,
        true_cfg: float | None = None,
    ):
        try:
            from ..models.families import detect_family

            self.family = detect_family(path)
            options = _text_options(path, self.family.name, negative_prompt, true_cfg)
            _quiet()
            sd = self.family.adapter_class().from_pretrained(
                path, device=device, dtype=dtype, offload=offload, **options
            )
        except ImportError as err:
            raise InputError(
                f"diffusers pipelines need diffusers and transformers "
                f"(pip install 'nidiff[adapters]'): {err}"
            ) from err
        self.sd, self.name, self.directory = sd, str(path), Path(path)
        self.factor = sd.vae_scale_factor
        self.size = sd.default_image_size if size is None else int(size)
        sd.check_image_size(self.size, self.size)
        self.device = sd.device
        self.denoiser, self.process = sd.denoiser, sd.process
        self.null = sd.null_cond()
        self.conditional = True  # text prompts
        self.space = sd

    def grid(self, steps: int):
        """The pipeline's own grid for images of :attr:`size` (its scheduler's spacing and
        ``steps_offset``, its shift), the times a diffusers pipeline visits."""
        try:
            return self.sd.grid(steps, size=self.size)
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
        """Prompt conditions of batch 1 (the family's: embeddings ``(1, L, D)``, or a dict of
        them); a prompt longer than a text encoder's context is truncated with a warning on
        stderr."""
        prompts = [n for n in names if n is not None]
        if not prompts:
            return [None for _ in names]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            states = self.sd.encode_prompt(prompts)
        for w in caught:
            click.echo(f"Warning: {w.message}", err=True)
        it = iter(split_cond(states))
        return [None if n is None else next(it) for n in names]

    def condition_record(self, role: str, name: str | None, cond: Any) -> dict[str, Any]:
        return {f"{role}_prompt": name}

    def sampling(self, name: str | None, num: int, guidance: float) -> tuple[Any, Any, dict]:
        """Prompt ``name`` for every sample under guidance ``guidance``; without a prompt,
        unconditional samples (empty prompt, no guidance)."""
        from ..models.contract import with_guidance

        if name is None:
            return self.denoiser, repeat_cond(self.null, num), {"prompt": None}
        (c,) = self.conditions(name)
        model = with_guidance(self.denoiser, guidance, self.null)
        return model, repeat_cond(c, num), {"prompt": name}

    def shape(self, num: int) -> tuple[int, ...]:
        return self.sd.latent_shape(num, self.size)

    def defaults(self, method: str) -> dict[str, Any]:
        """The family's defaults (:func:`nidiff.methods.method_defaults`): for SD 1.x/2.x the EF
        paper's settings for ``ef`` (:data:`EF_PAPER`) and ``p2p`` (:data:`P2P_PAPER`) and
        guidance 7.5 for the others; for SDXL, SD3 and FLUX their pipelines' guidance and steps
        (and, for ``sample``, the sampler equal to the pipeline's scheduler)."""
        return method_defaults(method, latent=True, family=self.family.name, space=self.sd)

    def describe(self) -> dict[str, Any]:
        distilled = getattr(self.sd, "distilled", False)  # FLUX.1-dev: true CFG applies
        return {
            "name": self.name,
            "dir": str(self.directory.resolve()),
            "kind": self.family.kind,
            "family": self.family.name,
            "size": self.size,
            "latent_shape": list(self.shape(1)[1:]),
            "prediction": self.denoiser.prediction,
            "device": str(self.device),
            "dtype": str(self.sd.dtype).removeprefix("torch."),
            "offload": self.sd.offload.enabled,
            "negative_prompt": self.sd.negative_prompt,
            **({"true_cfg": self.sd.denoiser.true_cfg} if distilled else {}),
        }


def _text_options(
    path: Path, family: str, negative_prompt: str | None, true_cfg: float | None
) -> dict[str, Any]:
    """The adapter's options of ``--negative-prompt`` and ``--true-cfg`` (guidance-distilled
    FLUX only: its transformer's config has ``guidance_embeds``)."""
    import json

    options: dict[str, Any] = {}
    if negative_prompt is not None:
        options["negative_prompt"] = negative_prompt
    if true_cfg is not None:
        what = "--true-cfg is true classifier-free guidance of guidance-distilled FLUX (FLUX.1-dev)"
        if family != "flux":
            raise InputError(f"{what}; on {family} pipelines --guidance is classifier-free "
                             "guidance")  # fmt: skip
        try:
            config = json.loads((Path(path) / "transformer" / "config.json").read_text())
        except (OSError, ValueError):
            config = {}  # the loader says what is wrong with the transformer
        if config and not config.get("guidance_embeds"):
            raise InputError(f"{what}; {path}'s transformer has no guidance embedding, so "
                             "--guidance is classifier-free guidance there")  # fmt: skip
        options["true_cfg"] = true_cfg
    return options


def _quiet() -> None:
    """No loading progress bars from diffusers/transformers on the CLI's stderr."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
