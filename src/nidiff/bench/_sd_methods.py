"""The edits :mod:`nidiff.bench.sd_speed` times, per family: one closure per method, from an
image tensor on the device to the edited image on the device (VAE encoding, the prompts' text
encoding, the method, VAE decoding)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from nidiff.defaults import EF_PAPER, FLOWEDIT_PAPER

__all__ = [
    "EDIT_CONCEPTS",
    "EF_SDE",
    "FAMILY_METHODS",
    "LEDITS_SKIP",
    "MAP_DRAWS",
    "MAP_STRENGTH",
    "SOURCE",
    "TARGET",
    "Settings",
    "edits",
    "ledits_grid_steps",
    "ledits_pipeline",
    "settings",
]

SOURCE, TARGET = "a photo of a cat", "a photo of a dog"
EDIT_CONCEPTS = ("dog",)  # LEDITS++: one concept added (batch 2 per step, as a guided step)
MAP_DRAWS, MAP_STRENGTH = 10, 0.5  # NGDM Sec. 3.4 / 4.1
LEDITS_SKIP = 0.15  # LEDITS++'s default fraction
EF_SDE = "EF + DPM++ SDE"
#: Per family: every method the benchmark times (in this order) and those timed by default.
FAMILY_METHODS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sd": (("NGDM", "EF", EF_SDE, "LEDITS++"), ("NGDM", "EF", "LEDITS++")),
    "sdxl": (("NGDM", "EF", EF_SDE, "LEDITS++"), ("NGDM", "EF", EF_SDE, "LEDITS++")),
    "sd3": (("NGDM", "EF", "FlowEdit"), ("NGDM", "EF", "FlowEdit")),
    "flux": (("NGDM", "EF", "FlowEdit"), ("NGDM", "EF", "FlowEdit")),
}
#: The steps and image side of each family's ``full`` preset: SD's 50 at 512², SDXL's 50 at
#: 1024², FlowEdit's published step counts (SD3 50, FLUX 28) at 1024².
FAMILY_STEPS = {"sd": 50, "sdxl": 50, "sd3": FLOWEDIT_PAPER["sd3"]["steps"],
                "flux": FLOWEDIT_PAPER["flux"]["steps"]}  # fmt: skip
FAMILY_SIZE = {"sd": 512, "sdxl": 1024, "sd3": 1024, "flux": 1024}


def ledits_grid_steps(steps: int) -> int:
    """The leading grid LEDITS++ sets for ``steps`` inversion steps, ``int(steps·(1 + skip))``
    (it runs the last ``steps`` of it)."""
    return int(steps * (1 + LEDITS_SKIP))


@dataclass(frozen=True)
class Settings:
    """Guidance and skips of a family's methods at ``steps``.

    SD and SDXL: NGDM at guidance 7.5, EF with the EF paper's Sec. 6 settings (source 3.5,
    target 15, skip 0.36 N). SD3 and FLUX: NGDM at the family's guidance (SD3 7, FLUX.1-dev's
    distilled 3.5), EF and FlowEdit at FlowEdit's published guidances (SD3 3.5 / 13.5, FLUX
    1.5 / 5.5), EF's skip 0.36 N, FlowEdit's skip ``N − n_max`` scaled to ``N`` (SD3 17/50, FLUX
    4/28).
    """

    ngdm_guidance: float
    ef_source_guidance: float
    ef_guidance: float
    ef_skip: int
    flowedit_skip: int | None = None


def settings(family: str, steps: int) -> Settings:
    """:class:`Settings` of ``family`` at ``steps``."""
    from nidiff.models.families import FAMILIES

    ef_skip = round(EF_PAPER["skip_frac"] * steps)
    if family in ("sd", "sdxl"):
        return Settings(7.5, EF_PAPER["source_guidance"], EF_PAPER["guidance"], ef_skip)
    fe = FLOWEDIT_PAPER[family]
    return Settings(
        FAMILIES[family].guidance, fe["source_guidance"], fe["guidance"], ef_skip,
        round(fe["skip_frac"] * steps),
    )  # fmt: skip


def _prompts(space: Any) -> tuple[Any, Any, Any]:
    """Source, target and unconditional conditions in one batched encode (SDXL base: zeros as
    the unconditional one, as its pipeline and :meth:`null_cond`)."""
    from nidiff.models.latent import split_cond

    src, tgt, null = split_cond(space.encode_prompt([SOURCE, TARGET, space.negative_prompt]))
    if getattr(space, "force_zeros", False):
        null = {k: torch.zeros_like(v) for k, v in null.items()}
    return src, tgt, null


def _grid(space: Any, steps: int, size: int) -> Any:
    """The method grid: SD 1.x's leading grid (as LEDITS++), else the pipeline's own."""
    if hasattr(space, "leading_grid"):
        return space.leading_grid(steps)
    return space.grid(steps, size)


def ledits_pipeline(space: Any) -> Any:
    """diffusers' LEDITS++ pipeline on ``space``'s modules (SD 1.x or SDXL), with
    SDE-DPM-Solver++ (2nd order) made from a copy of its scheduler config."""
    import diffusers

    sched = diffusers.DPMSolverMultistepScheduler.from_config(
        space.scheduler.config, algorithm_type="sde-dpmsolver++", solver_order=2
    )
    if getattr(space, "family", "sd") == "sdxl":
        pipe = diffusers.LEditsPPPipelineStableDiffusionXL(
            vae=space.vae, text_encoder=space.text_encoder, text_encoder_2=space.text_encoder_2,
            tokenizer=space.tokenizer, tokenizer_2=space.tokenizer_2, unet=space.unet,
            scheduler=sched, force_zeros_for_empty_prompt=space.force_zeros,
            add_watermarker=False,
        )  # fmt: skip
    else:
        pipe = diffusers.LEditsPPPipelineStableDiffusion(
            vae=space.vae, text_encoder=space.text_encoder, tokenizer=space.tokenizer,
            unet=space.unet, scheduler=sched, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False,
        )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def edits(
    space: Any, pipe: Any, image: Tensor, steps: int, seed: int
) -> dict[str, Callable[[], Tensor]]:
    """One edit of each method of ``space``'s family (:data:`FAMILY_METHODS`; the module
    docstring of :mod:`nidiff.bench.sd_speed` says what each runs); ``pipe`` is the LEDITS++
    pipeline (``None`` on SD3 and FLUX)."""
    from nidiff.editing import ngdm, weighting_map
    from nidiff.editing.flowedit import flowedit
    from nidiff.inversion import edit_friendly_invert, edit_friendly_regenerate

    family = getattr(space, "family", "sd")
    dev, process = space.device, space.process
    size = int(image.shape[-1])
    grid = _grid(space, steps, size)
    s = settings(family, steps)
    # NGDM never starts at a time of SNR 0 (rectified flow's t = 1; as nidiff edit does).
    ngdm_start = int(float(process.schedule.log_snr(grid.t[0])) == float("-inf"))

    def gen(k: int) -> torch.Generator:
        return torch.Generator(device=dev).manual_seed(seed + k)

    def ngdm_edit() -> Tensor:
        z0 = space.encode_image(image)
        src, tgt, null = _prompts(space)
        g = gen(1)
        wm = weighting_map(
            space.denoiser, z0, process, source_cond=src, target_cond=tgt,
            strength=MAP_STRENGTH, n=MAP_DRAWS, generator=g,
        )  # fmt: skip
        res = ngdm(
            space.denoiser, z0, process, grid[ngdm_start:], wm.lam, cond=tgt,
            guidance=s.ngdm_guidance, null_cond=null, generator=g,
        )  # fmt: skip
        return space.decode_latents(res.x0)

    def ef_edit() -> Tensor:
        z0 = space.encode_image(image)
        src, tgt, null = _prompts(space)
        inv = edit_friendly_invert(
            space.denoiser, z0, process, grid, cond=src, guidance=s.ef_source_guidance,
            null_cond=null, generator=gen(2),
        )  # fmt: skip
        res = edit_friendly_regenerate(
            space.denoiser, inv, process, cond=tgt, guidance=s.ef_guidance, null_cond=null,
            skip=s.ef_skip,
        )  # fmt: skip
        return space.decode_latents(res.x0)

    def ef_sde_edit() -> Tensor:
        z0 = space.encode_image(image)
        src, tgt, null = _prompts(space)
        sub = _grid(space, ledits_grid_steps(steps), size)[-steps:]
        inv = edit_friendly_invert(
            space.denoiser, z0, process, sub, cond=src, rule=process.sampler("dpm++2m-sde"),
            generator=gen(4),
        )  # fmt: skip
        res = edit_friendly_regenerate(
            space.denoiser, inv, process, cond=tgt, guidance=s.ef_guidance, null_cond=null
        )
        return space.decode_latents(res.x0)

    def ledits_edit() -> Tensor:
        processors = dict(space.unet.attn_processors)
        try:
            pipe.invert(
                image=(image + 1) / 2, num_inversion_steps=steps, skip=LEDITS_SKIP,
                generator=gen(3),
            )  # fmt: skip
            out = pipe(editing_prompt=list(EDIT_CONCEPTS), output_type="pt", return_dict=True)
        finally:
            space.unet.set_attn_processor(dict(processors))  # it empties the dict
        return out.images

    def flowedit_edit() -> Tensor:
        z0 = space.encode_image(image)
        src, tgt, null = _prompts(space)
        res = flowedit(
            space.denoiser, z0, process, grid, source_cond=src, target_cond=tgt,
            source_guidance=s.ef_source_guidance, guidance=s.ef_guidance, null_cond=null,
            skip=s.flowedit_skip, generator=gen(5),
        )  # fmt: skip
        return space.decode_latents(res.x0)

    every = {"NGDM": ngdm_edit, "EF": ef_edit, EF_SDE: ef_sde_edit, "LEDITS++": ledits_edit,
             "FlowEdit": flowedit_edit}  # fmt: skip
    return {m: every[m] for m in FAMILY_METHODS[family][0]}
