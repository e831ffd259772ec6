r"""Seconds per edit at full model scale: NGDM, EF, diffusers' LEDITS++ and FlowEdit, per family.

One pipeline with **Stable Diffusion 1.x's architecture and random weights**
(:mod:`nidiff.bench._sd_random`: SD 1.5's UNet, SD's VAE and CLIP text encoder, SD's
scaled-linear schedule; built from configs, seeded, nothing downloaded) edits one seeded smooth
random image of ``size × size`` pixels with three methods, each at ``N`` steps:

* **NGDM** (:func:`nidiff.editing.weighting_map` + :func:`nidiff.editing.ngdm`): the weighting
  map with its ``n = 10`` draws × (source, target) predictions at ``0.5 T`` (one UNet call of
  batch 20, unguided as in the paper), then Algorithm 1 on the ``N``-step leading grid, DDPM
  steps (η = 1) under target guidance 7.5 (``N`` calls of batch 2);
* **EF** (:func:`nidiff.inversion.edit_friendly_invert` +
  :func:`~nidiff.inversion.edit_friendly_regenerate`): inversion over the ``N``-step grid with
  the source prompt at guidance 3.5, then regeneration with the target prompt at guidance 15
  from ``skip = round(0.36 N)`` (EF Sec. 6): ``N + (N − skip)`` calls of batch 2;
* **EF + DPM++ SDE** (opt-in, ``--methods``; issue 14): EF with LEDITS++'s solver and grid at
  LEDITS++'s NFE: the last ``N`` steps of the ``int(N·1.15)``-step leading grid (LEDITS++'s
  ``skip``), inversion with the source prompt *unguided* (``N`` calls of batch 1) recording the
  noise of SDE-DPM-Solver++(2M) (``process.sampler("dpm++2m-sde")``), regeneration with the
  target prompt at guidance 15 over all ``N`` steps (``N`` calls of batch 2): ``3N``, as
  LEDITS++;
* **LEDITS++** (``diffusers.LEditsPPPipelineStableDiffusion`` built from the same modules, with
  its own copy of the scheduler): ``invert(image, num_inversion_steps=N, skip=0.15)`` (no source
  prompt, its default: ``N`` calls of batch 1; the pipeline also decodes the VAE reconstruction
  and converts it to PIL) then ``__call__(editing_prompt=["dog"], output_type="pt")`` with its
  defaults (edit guidance 5, threshold 0.9, intersect masks from cross-attention: ``N`` calls of
  batch 2). Its scheduler is the LEDITS++ paper's SDE-DPM-Solver++ (2nd order); the
  pipeline's DDIM (edit-friendly DDPM) path fails in diffusers 0.42.1 (its ``invert`` indexes
  ``alphas_cumprod`` with a float tensor) and is not offered. ``skip`` does not remove steps in
  LEDITS++: it starts the ``N``-step grid lower.

**What is timed, per edit:** from an image tensor on the device to the edited image on the
device: VAE encoding, the prompts' text encoding, the method, VAE decoding (and, in LEDITS++,
what its ``invert`` and ``__call__`` do besides: image pre- and post-processing, the
reconstruction decode). Model building is not timed. Each method runs ``warmup`` untimed edits,
then ``repeats`` timed ones, the methods taking turns; the median is reported. Forward hooks on
the UNet, the VAE's encoder and decoder and the text encoder count the UNet's calls and batch
sizes and time the inside of each network (device-synchronised on CUDA, where the whole edit is
synchronised too). **NFE** = Σ UNet calls × batch, a guided step counting 2; **UNet share** =
time inside the UNet ÷ wall time.

Note on attention: nidiff runs the UNet with its default attention (PyTorch's
``scaled_dot_product_attention``); diffusers' LEDITS++ installs its own eager processors
(``AttnProcessor``, plus cross-attention maps stored for its masks), so its UNet calls cost more
than the same calls in NGDM or EF. That is the cost of the pipeline as shipped and is included.
The processors are restored after every LEDITS++ edit.

**Families** (the preset field ``family``: ``--set family=sdxl`` or ``nidiff bench sd-speed
--family sdxl``): ``sd`` (the default, described above), and on random full-size architectures
of :mod:`nidiff.bench._sd_random`'s kind (:mod:`nidiff.bench._sd_families`; SDXL base 2.57 B
UNet + CLIP-L + OpenCLIP-bigG, SD3 medium 2.03 B MMDiT + CLIP-L/G + T5-XXL, FLUX.1-dev 11.9 B
transformer + CLIP-L + T5-XXL):

* ``sdxl``: NGDM, EF, EF + DPM++ SDE (all on SDXL's own leading grid with offset 1) and
  ``diffusers.LEditsPPPipelineStableDiffusionXL`` on the same modules (its defaults: no
  attention masks);
* ``sd3`` and ``flux``: NGDM (from the grid's first time of positive SNR, as ``nidiff edit``),
  EF (DDPM-like η = 1 steps of the flow process) and nidiff's **FlowEdit**
  (:func:`nidiff.editing.flowedit.flowedit`) at FlowEdit's published settings
  (:data:`nidiff.defaults.FLOWEDIT_PAPER`: SD3 50 steps, n_max 33, guidance 3.5 / 13.5; FLUX 28
  steps, n_max 24, guidance 1.5 / 5.5 distilled), EF at the same guidances; diffusers has no
  FlowEdit or LEDITS++ for them, so no diffusers baseline. ``t5=false`` leaves SD3's T5 out.

Before anything is built, the networks' parameters are counted on the ``meta`` device; a
pipeline whose parameters alone exceed the device's free memory (``MemAvailable`` on the CPU)
is refused with one line naming both (FLUX.1-dev at float32: 16.7 B parameters, 62 GiB).
``arch=tiny`` takes each family's tiny configs instead (tests).

Presets: ``full`` (the family's size and steps — SD 512², 50; SDXL 1024², 50; SD3 1024², 50;
FLUX 1024², 28 —, 1 warm-up and 3 timed edits per method; for a GPU), ``quick`` (256², 8 steps,
one timed edit per method without warm-up; SD: about 6 minutes on two CPU cores, most of it in
the UNet) and ``tiny`` (the tiny architectures, 32², 2 steps: the code path of a family in
seconds).

    python -m nidiff.bench.sd_speed --device cuda --dtype float16 --out bench-sd-speed  # full
    python -m nidiff.bench.sd_speed --quick --out bench-sd-speed                        # CPU
    nidiff bench sd-speed --device cuda --set family=sdxl --set dtype=float16           # SDXL
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ._device import hardware
from ._report import progress, report
from ._sd_families import (
    ARCHITECTURES,
    SD_TINY,
    FamilyArchitecture,
    check_memory,
    parameter_count,
    sd_parameter_count,
    without_t5,
)
from ._sd_methods import (
    EDIT_CONCEPTS,
    EF_SDE,
    FAMILY_METHODS,
    FAMILY_SIZE,
    FAMILY_STEPS,
    LEDITS_SKIP,
    MAP_DRAWS,
    MAP_STRENGTH,
    SOURCE,
    TARGET,
    ledits_grid_steps,
    ledits_pipeline,
    settings,
)
from ._sd_methods import edits as _methods
from ._sd_random import SD15, Architecture, random_components
from ._sd_report import markdown
from ._sd_timing import NETWORK, Hooks, rows, test_image, time_edits

__all__ = [
    "ALL_METHODS",
    "FAMILIES",
    "METHODS",
    "PRESETS",
    "Preset",
    "ef_sde_nfe",
    "ledits_grid_steps",
    "main",
    "markdown",
    "nidiff_nfe",
    "run",
]

#: The methods timed by default on SD 1.x; ALL_METHODS adds EF with LEDITS++'s solver at its NFE.
METHODS = FAMILY_METHODS["sd"][1]
ALL_METHODS = FAMILY_METHODS["sd"][0]
#: The families the benchmark runs (the preset field ``family``).
FAMILIES = tuple(FAMILY_METHODS)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_SD = settings("sd", 1)
NGDM_GUIDANCE, EF_GUIDANCE = _SD.ngdm_guidance, _SD.ef_guidance
EF_SOURCE_GUIDANCE = _SD.ef_source_guidance
_ledits_pipeline = ledits_pipeline  # the names the tests have always used
_test_image = test_image


@dataclass(frozen=True)
class Preset:
    """Image side in pixels and steps ``N`` of every method (``None``: the family's, module
    docstring), untimed and timed edits per method, the family, its architecture (``full``
    sizes or ``tiny``), SD3's T5 encoder, the methods (``None``: the family's default) and the
    networks' dtype."""

    size: int | None
    steps: int | None
    repeats: int
    warmup: int = 1
    family: str = "sd"
    arch: str = "full"
    t5: bool = True
    methods: tuple[str, ...] | None = None
    dtype: str = "float32"


PRESETS = {
    "full": Preset(size=None, steps=None, repeats=3),
    "quick": Preset(size=256, steps=8, repeats=1, warmup=0),
    "tiny": Preset(size=32, steps=2, repeats=1, warmup=0, arch="tiny"),
}


def ef_sde_nfe(steps: int) -> int:
    """NFE of EF + DPM++ SDE at ``steps``: ``N`` unguided inversion calls + ``2N`` guided ones,
    LEDITS++'s ``3N``."""
    return 3 * steps


def nidiff_nfe(steps: int, map_draws: int = MAP_DRAWS) -> dict[str, int]:
    """NFE of nidiff's two edits on SD 1.x at ``steps`` (guided calls count 2): NGDM
    ``2n + 2N``, EF ``2N + 2(N − skip)`` with ``skip = round(0.36 N)``."""
    skip = settings("sd", steps).ef_skip
    return {"NGDM": 2 * map_draws + 2 * steps, "EF": 2 * steps + 2 * (steps - skip)}


def _architecture(p: Preset, arch: Architecture | FamilyArchitecture | None) -> Any:
    if arch is not None:
        return arch
    if p.family == "sd":
        return SD15 if p.arch == "full" else SD_TINY
    chosen = ARCHITECTURES[p.arch][p.family]
    return chosen if p.t5 or p.family != "sd3" else without_t5(chosen)


def _check(p: Preset) -> None:
    if p.family not in FAMILIES:
        raise ValueError(f"family={p.family!r}: choose one of {', '.join(FAMILIES)}")
    if p.arch not in ARCHITECTURES:
        raise ValueError(f"arch={p.arch!r}: choose one of {', '.join(ARCHITECTURES)}")
    if not p.t5 and p.family != "sd3":
        raise ValueError(f"t5=false applies to sd3 only, not {p.family}")
    if p.steps < 1 or p.repeats < 1 or p.warmup < 0:
        raise ValueError(f"steps={p.steps} and repeats={p.repeats} must be >= 1, warmup >= 0")
    multiple = 32 if p.family in ("sd", "sdxl") else 16
    if p.size <= 0 or p.size % multiple:
        why = "LEDITS++ needs it" if multiple == 32 else "VAE factor 8 × patch 2"
        raise ValueError(f"size={p.size} must be a positive multiple of {multiple} ({why})")
    if p.dtype not in DTYPES:
        raise ValueError(f"dtype={p.dtype!r} must be one of {', '.join(DTYPES)}")
    every = FAMILY_METHODS[p.family][0]
    if not p.methods or any(m not in every for m in p.methods):
        raise ValueError(
            f"methods {list(p.methods or ())}: choose among {', '.join(every)} for {p.family}"
        )


def run(
    quick: bool = True,
    device: str | torch.device = "cpu",
    *,
    preset: Preset | None = None,
    size: int | None = None,
    steps: int | None = None,
    repeats: int | None = None,
    dtype: str | None = None,
    arch: Architecture | FamilyArchitecture | None = None,
    seed: int = 0,
    methods: tuple[str, ...] | None = None,
    family: str | None = None,
) -> dict[str, Any]:
    """Time one edit of each method of a family at equal steps; return a JSON-safe dict.

    Args:
        quick: the ``quick`` preset instead of ``full`` (ignored when ``preset`` is given).
        device: torch device.
        preset: a custom :class:`Preset`; ``size``, ``steps``, ``repeats``, ``dtype``,
            ``methods`` and ``family`` override its fields.
        dtype: ``float32``, ``float16`` or ``bfloat16`` for the networks (float16 is meant for
            CUDA; latents and nidiff's sampler math stay float32).
        arch: the pipeline's configs instead of the preset's (an :class:`Architecture` for SD,
            a :class:`~nidiff.bench._sd_families.FamilyArchitecture` for the others).
        seed: weights, image and every method's noise.
        methods: which of the family's methods to time (in the family's order; default
            :data:`METHODS` on SD, every method elsewhere); ratios are to LEDITS++ when it is
            among them, else to FlowEdit.

    Returns:
        ``{"rows": [...], "ratios": {...}, "config": {...}}``; each row has ``method``,
        ``seconds`` (per timed edit), ``median_s``, ``nfe``, ``calls`` (``{batch: count}`` of
        the UNet or transformer), ``unet_s`` (time inside it), ``vae_s``, ``text_s`` and
        ``unet_share`` (medians), the ratios of the medians to the baseline.

    Raises:
        ValueError: a bad setting, or parameters that do not fit the device's free memory
            (both before anything is built).
    """
    import diffusers
    import transformers
    from diffusers.utils import logging as diffusers_logging

    p = preset if preset is not None else PRESETS["quick" if quick else "full"]
    overrides = {"size": size, "steps": steps, "repeats": repeats, "dtype": dtype,
                 "methods": methods, "family": family}  # fmt: skip
    p = replace(p, **{k: v for k, v in overrides.items() if v is not None})
    if isinstance(arch, FamilyArchitecture):
        p = replace(p, family=arch.family)
    elif isinstance(arch, Architecture):
        p = replace(p, family="sd")
    if p.family in FAMILY_METHODS:
        p = replace(
            p, size=FAMILY_SIZE[p.family] if p.size is None else int(p.size),
            steps=FAMILY_STEPS[p.family] if p.steps is None else int(p.steps),
            methods=FAMILY_METHODS[p.family][1] if p.methods is None else tuple(p.methods),
        )  # fmt: skip
    _check(p)
    methods = tuple(m for m in FAMILY_METHODS[p.family][0] if m in p.methods)
    dev = torch.device(device)
    torch_dtype = DTYPES[p.dtype]
    a = _architecture(p, arch)
    diffusers_logging.set_verbosity_error()

    t0 = time.perf_counter()
    counts = sd_parameter_count(a) if p.family == "sd" else parameter_count(a)
    check_memory(a.name, sum(counts.values()), torch_dtype, dev)
    if p.family == "sd":
        from nidiff.models.stable_diffusion import StableDiffusion

        space = StableDiffusion(**random_components(a, seed), device=dev, dtype=torch_dtype)
    else:
        from ._sd_families import build_space

        progress("sd-speed", f"building {a.name} ({sum(counts.values()) / 1e9:.2f} B params)")
        space = build_space(a, seed, dev, torch_dtype)
    pipe = ledits_pipeline(space) if "LEDITS++" in methods else None
    build_s = time.perf_counter() - t0

    image = test_image(p.size, dev, seed)
    encoders = [getattr(space, n, None) for n in ("text_encoder", "text_encoder_2",
                                                   "text_encoder_3")]  # fmt: skip
    network = space.unet if hasattr(space, "unet") else space.transformer
    hooks = Hooks(
        {NETWORK: network, "vae_encoder": space.vae.encoder, "vae_decoder": space.vae.decoder,
         "text": [e for e in encoders if e is not None]},
        dev,
    )  # fmt: skip
    every = _methods(space, pipe, image, p.steps, seed)
    chosen = {m: every[m] for m in methods}
    try:
        records = time_edits(chosen, hooks, dev, p.warmup, p.repeats,
                             lambda message: progress("sd-speed", message))  # fmt: skip
    finally:
        hooks.remove()

    table = rows(records)
    by = {r["method"]: r["median_s"] for r in table}
    base = next((b for b in ("LEDITS++", "FlowEdit") if b in by), None)
    ratios = {} if base is None else {f"{m}/{base}": by[m] / by[base] for m in methods if m != base}
    s = settings(p.family, p.steps)
    latent = [int(space.vae.config.latent_channels), *(2 * [p.size // space.vae_scale_factor])]
    config = {
        "preset": None if preset is not None else ("quick" if quick else "full"),
        **asdict(p),
        "methods": list(methods),
        "device": str(dev),
        "hardware": hardware(dev),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
        "architecture": a.name,
        "network": type(network).__name__,
        "params_m": {k: v / 1e6 for k, v in counts.items()},
        "unet_params_m": counts["network"] / 1e6,
        "latent": latent,
        "build_s": build_s,
        "seed": seed,
        "ngdm": {"map_draws": MAP_DRAWS, "map_strength": MAP_STRENGTH,
                 "guidance": s.ngdm_guidance, "eta": 1.0, "grid": _grid_name(p.family)},
        "ef": {"source_guidance": s.ef_source_guidance, "guidance": s.ef_guidance,
               "skip": s.ef_skip, "eta": 1.0, "grid": _grid_name(p.family)},
        **({"ef_sde": {"sampler": "dpm++2m-sde", "source_guidance": 1.0,
                       "guidance": s.ef_guidance, "skip": 0, "grid": (
                           f"last {p.steps} of the {ledits_grid_steps(p.steps)}-step leading "
                           "grid (LEDITS++'s)")}} if EF_SDE in methods else {}),
        **({"ledits": {"pipeline": type(pipe).__name__,
                       "scheduler": "sde-dpmsolver++ (2nd order)", "skip": LEDITS_SKIP,
                       "editing_prompt": list(EDIT_CONCEPTS), "source_prompt": ""}}
           if pipe is not None else {}),
        **({"flowedit": {"steps": p.steps, "skip": s.flowedit_skip,
                         "n_max": p.steps - s.flowedit_skip, "n_avg": 1,
                         "source_guidance": s.ef_source_guidance, "guidance": s.ef_guidance}}
           if "FlowEdit" in methods else {}),
        "prompts": {"source": SOURCE, "target": TARGET},
    }  # fmt: skip
    return {"rows": table, "ratios": ratios, "config": config}


def _grid_name(family: str) -> str:
    return {"sd": "leading", "sdxl": "leading, offset 1 (SDXL's scheduler)"}.get(
        family, "the pipeline's shifted flow grid"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m nidiff.bench.sd_speed",
        description="Seconds per edit of NGDM, EF, LEDITS++ and FlowEdit on random-weight "
        "SD 1.x, SDXL, SD3 or FLUX architectures.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="256², 8 steps, 1 edit, no warm-up")
    parser.add_argument("--family", choices=FAMILIES, default="sd", help="model family")
    parser.add_argument("--tiny", action="store_true", help="the family's tiny architecture")
    parser.add_argument("--device", type=str, default="cpu", help="torch device")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32", help="network dtype")
    parser.add_argument("--size", type=int, default=None, help="image side (full: the family's)")
    parser.add_argument("--steps", type=int, default=None, help="steps N (full: the family's)")
    parser.add_argument("--repeats", type=int, default=None, help="timed edits (full: 3)")
    parser.add_argument("--seed", type=int, default=0, help="weights, image and noise")
    parser.add_argument(
        "--methods",
        type=lambda text: tuple(m.strip() for m in text.split(",") if m.strip()),
        default=None,
        help="comma-separated, among the family's: "
        + "; ".join(f"{f}: {', '.join(m[0])}" for f, m in FAMILY_METHODS.items()),
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    parser.add_argument(
        "--out", type=Path, default=None, help="write sd_speed.json and sd_speed.md here"
    )
    args = parser.parse_args(argv)
    preset = PRESETS["tiny" if args.tiny else "quick" if args.quick else "full"]
    result = run(
        quick=args.quick, device=args.device, preset=preset, size=args.size, steps=args.steps,
        repeats=args.repeats, dtype=args.dtype, seed=args.seed, methods=args.methods,
        family=args.family,
    )  # fmt: skip
    if not args.tiny:
        result["config"]["preset"] = "quick" if args.quick else "full"
    report(result, markdown, args.json, name="sd_speed", out=args.out)


if __name__ == "__main__":
    main()
