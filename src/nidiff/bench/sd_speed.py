r"""Seconds per edit at Stable Diffusion scale: NGDM, EF and diffusers' LEDITS++ at equal steps.

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

Presets: ``full`` (512², 50 steps, 1 warm-up and 3 timed edits per method; for a GPU) and
``quick`` (256², 8 steps, one timed edit per method without warm-up; about 6 minutes on two
CPU cores, most of it in the UNet).

    python -m nidiff.bench.sd_speed --device cuda --dtype float16 --out bench-sd-speed  # full
    python -m nidiff.bench.sd_speed --quick --out bench-sd-speed                        # CPU
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nidiff.methods import EF_PAPER

from ._device import hardware, sync, timed
from ._report import report
from ._sd_random import SD15, Architecture, random_components

__all__ = [
    "ALL_METHODS",
    "METHODS",
    "PRESETS",
    "Preset",
    "ef_sde_nfe",
    "main",
    "markdown",
    "nidiff_nfe",
    "run",
]

SOURCE, TARGET = "a photo of a cat", "a photo of a dog"
EDIT_CONCEPTS = ("dog",)  # LEDITS++: one concept added (batch 2 per step, as a guided step)
MAP_DRAWS, MAP_STRENGTH = 10, 0.5  # NGDM Sec. 3.4 / 4.1
NGDM_GUIDANCE = 7.5
EF_SOURCE_GUIDANCE, EF_GUIDANCE = EF_PAPER["source_guidance"], EF_PAPER["guidance"]  # EF Sec. 6
EF_SKIP_FRACTION = EF_PAPER["skip_frac"]
LEDITS_SKIP = 0.15  # LEDITS++'s default fraction
EF_SDE = "EF + DPM++ SDE"
#: The methods timed by default; ALL_METHODS adds EF with LEDITS++'s solver at its NFE.
METHODS = ("NGDM", "EF", "LEDITS++")
ALL_METHODS = ("NGDM", "EF", EF_SDE, "LEDITS++")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Preset:
    """Image side in pixels, steps ``N`` of every method, untimed and timed edits per method."""

    size: int
    steps: int
    repeats: int
    warmup: int = 1


PRESETS = {
    "full": Preset(size=512, steps=50, repeats=3),
    "quick": Preset(size=256, steps=8, repeats=1, warmup=0),
}


def ledits_grid_steps(steps: int) -> int:
    """The leading grid LEDITS++ sets for ``steps`` inversion steps, ``int(steps·(1 + skip))``
    (it runs the last ``steps`` of it)."""
    return int(steps * (1 + LEDITS_SKIP))


def ef_sde_nfe(steps: int) -> int:
    """NFE of EF + DPM++ SDE at ``steps``: ``N`` unguided inversion calls + ``2N`` guided ones,
    LEDITS++'s ``3N``."""
    return 3 * steps


def nidiff_nfe(steps: int, map_draws: int = MAP_DRAWS) -> dict[str, int]:
    """NFE of nidiff's two edits at ``steps`` (guided calls count 2): NGDM ``2n + 2N``,
    EF ``2N + 2(N − skip)`` with ``skip = round(0.36 N)``."""
    skip = round(EF_SKIP_FRACTION * steps)
    return {"NGDM": 2 * map_draws + 2 * steps, "EF": 2 * steps + 2 * (steps - skip)}


class _Hooks:
    """Forward hooks timing the inside of named modules; the UNet's calls are also counted by
    batch size."""

    def __init__(self, modules: dict[str, nn.Module], device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = {name: 0.0 for name in modules}
        self.batches: Counter[int] = Counter()
        self._start: dict[str, float] = {}
        self._handles = []
        for name, module in modules.items():
            self._handles.append(
                module.register_forward_pre_hook(self._pre(name), with_kwargs=True)
            )
            self._handles.append(module.register_forward_hook(self._post(name)))

    def _pre(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            if name == "unet":
                x = args[0] if args else kwargs["sample"]
                self.batches[int(x.shape[0])] += 1
            sync(self.device)
            self._start[name] = time.perf_counter()

        return hook

    def _post(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, out: Any) -> None:
            sync(self.device)
            self.seconds[name] += time.perf_counter() - self._start.pop(name)

        return hook

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.seconds, 0.0)
        self.batches.clear()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def _test_image(size: int, device: torch.device, seed: int) -> Tensor:
    """A smooth random colour image ``(1, 3, size, size)`` in ``[-1, 1]`` (seeded)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, 3, 8, 8, generator=g)
    up = nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    return torch.tanh(up).to(device)


def _methods(
    sd: Any, pipe: Any, image: Tensor, steps: int, seed: int
) -> dict[str, Callable[[], Tensor]]:
    """One edit of each method, from ``image`` to the edited image (module docstring)."""
    from nidiff.editing import ngdm, weighting_map
    from nidiff.inversion import edit_friendly_invert, edit_friendly_regenerate

    dev, process = sd.device, sd.process
    grid = sd.leading_grid(steps)
    skip = round(EF_SKIP_FRACTION * steps)
    image01 = (image + 1) / 2
    unet_processors = dict(sd.unet.attn_processors)

    def gen(k: int) -> torch.Generator:
        return torch.Generator(device=dev).manual_seed(seed + k)

    def prompts() -> tuple[Tensor, Tensor, Tensor]:
        src, tgt, null = sd.encode_prompt([SOURCE, TARGET, ""]).split(1)
        return src, tgt, null

    def ngdm_edit() -> Tensor:
        z0 = sd.encode_image(image)
        src, tgt, null = prompts()
        g = gen(1)
        wm = weighting_map(
            sd.denoiser, z0, process, source_cond=src, target_cond=tgt, strength=MAP_STRENGTH,
            n=MAP_DRAWS, generator=g,
        )  # fmt: skip
        res = ngdm(
            sd.denoiser, z0, process, grid, wm.lam, cond=tgt, guidance=NGDM_GUIDANCE,
            null_cond=null, generator=g,
        )  # fmt: skip
        return sd.decode_latents(res.x0)

    def ef_edit() -> Tensor:
        z0 = sd.encode_image(image)
        src, tgt, null = prompts()
        inv = edit_friendly_invert(
            sd.denoiser, z0, process, grid, cond=src, guidance=EF_SOURCE_GUIDANCE,
            null_cond=null, generator=gen(2),
        )  # fmt: skip
        res = edit_friendly_regenerate(
            sd.denoiser, inv, process, cond=tgt, guidance=EF_GUIDANCE, null_cond=null, skip=skip
        )
        return sd.decode_latents(res.x0)

    def ef_sde_edit() -> Tensor:
        z0 = sd.encode_image(image)
        src, tgt, null = prompts()
        sub = sd.leading_grid(ledits_grid_steps(steps))[-steps:]
        inv = edit_friendly_invert(
            sd.denoiser, z0, process, sub, cond=src, rule=process.sampler("dpm++2m-sde"),
            generator=gen(4),
        )  # fmt: skip
        res = edit_friendly_regenerate(
            sd.denoiser, inv, process, cond=tgt, guidance=EF_GUIDANCE, null_cond=null
        )
        return sd.decode_latents(res.x0)

    def ledits_edit() -> Tensor:
        try:
            pipe.invert(
                image=image01, num_inversion_steps=steps, skip=LEDITS_SKIP, generator=gen(3)
            )
            out = pipe(editing_prompt=list(EDIT_CONCEPTS), output_type="pt", return_dict=True)
        finally:
            sd.unet.set_attn_processor(dict(unet_processors))  # it empties the dict
        return out.images

    return {"NGDM": ngdm_edit, "EF": ef_edit, EF_SDE: ef_sde_edit, "LEDITS++": ledits_edit}


def _ledits_pipeline(sd: Any) -> Any:
    """diffusers' LEDITS++ pipeline on ``sd``'s modules, with SDE-DPM-Solver++ (2nd order)
    made from a copy of ``sd``'s scheduler config."""
    from diffusers import DPMSolverMultistepScheduler, LEditsPPPipelineStableDiffusion

    sched = DPMSolverMultistepScheduler.from_config(
        sd.scheduler.config, algorithm_type="sde-dpmsolver++", solver_order=2
    )
    pipe = LEditsPPPipelineStableDiffusion(
        vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, unet=sd.unet,
        scheduler=sched, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(
    quick: bool = True,
    device: str | torch.device = "cpu",
    *,
    preset: Preset | None = None,
    size: int | None = None,
    steps: int | None = None,
    repeats: int | None = None,
    dtype: str = "float32",
    arch: Architecture = SD15,
    seed: int = 0,
    methods: tuple[str, ...] = METHODS,
) -> dict[str, Any]:
    """Time one edit of NGDM, EF and LEDITS++ at equal steps; return a JSON-safe dict.

    Args:
        quick: the ``quick`` preset instead of ``full`` (ignored when ``preset`` is given).
        device: torch device.
        preset: a custom :class:`Preset`; ``size``, ``steps``, ``repeats`` override its fields.
        dtype: ``float32``, ``float16`` or ``bfloat16`` for the networks (float16 is meant for
            CUDA; latents and nidiff's sampler math stay float32).
        arch: the pipeline's configs (default SD 1.x; tests pass a tiny one).
        seed: weights, image and every method's noise.
        methods: which of :data:`ALL_METHODS` to time (in that order; default
            :data:`METHODS`); ratios are to LEDITS++ when it is among them.

    Returns:
        ``{"rows": [...], "ratios": {...}, "config": {...}}``; each row has ``method``,
        ``seconds`` (per timed edit), ``median_s``, ``nfe``, ``calls`` (``{batch: count}`` of
        the UNet), ``unet_s``, ``vae_s``, ``text_s`` and ``unet_share`` (medians), the ratios
        ``NGDM/LEDITS++`` and ``EF/LEDITS++`` of the medians.
    """
    import diffusers
    import transformers
    from diffusers.utils import logging as diffusers_logging

    from nidiff.models.stable_diffusion import StableDiffusion

    p = preset if preset is not None else PRESETS["quick" if quick else "full"]
    overrides = {"size": size, "steps": steps, "repeats": repeats}
    p = Preset(**{**asdict(p), **{k: int(v) for k, v in overrides.items() if v is not None}})
    if p.steps < 1 or p.repeats < 1 or p.warmup < 0:
        raise ValueError(f"steps={p.steps} and repeats={p.repeats} must be >= 1, warmup >= 0")
    if p.size <= 0 or p.size % 32:
        raise ValueError(f"size={p.size} must be a positive multiple of 32 (LEDITS++ needs it)")
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} must be one of {', '.join(DTYPES)}")
    if not methods or any(m not in ALL_METHODS for m in methods):
        raise ValueError(f"methods {list(methods)}: choose among {', '.join(ALL_METHODS)}")
    methods = tuple(m for m in ALL_METHODS if m in methods)
    dev = torch.device(device)
    diffusers_logging.set_verbosity_error()

    t0 = time.perf_counter()
    parts = random_components(arch, seed)
    sd = StableDiffusion(**parts, device=dev, dtype=DTYPES[dtype])
    pipe = _ledits_pipeline(sd)
    build_s = time.perf_counter() - t0

    image = _test_image(p.size, dev, seed)
    hooks = _Hooks(
        {
            "unet": sd.unet,
            "vae_encoder": sd.vae.encoder,
            "vae_decoder": sd.vae.decoder,
            "text": sd.text_encoder,
        },
        dev,
    )
    every = _methods(sd, pipe, image, p.steps, seed)
    chosen = {m: every[m] for m in methods}
    records: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    try:
        with torch.no_grad():
            for _ in range(p.warmup):
                for fn in chosen.values():
                    fn()
            for _ in range(p.repeats):
                for name, fn in chosen.items():
                    hooks.reset()
                    out, wall = timed(dev, fn)
                    if not bool(torch.isfinite(out).all()):
                        raise RuntimeError(f"{name} made a non-finite image (try --dtype float32)")
                    records[name].append(
                        {"wall": wall, "batches": dict(hooks.batches), **hooks.seconds}
                    )
    finally:
        hooks.remove()

    rows = []
    for name in methods:
        recs = records[name]
        batches = recs[0]["batches"]
        rows.append(
            {
                "method": name,
                "seconds": [r["wall"] for r in recs],
                "median_s": statistics.median(r["wall"] for r in recs),
                "nfe": sum(b * n for b, n in batches.items()),
                "calls": {str(b): n for b, n in sorted(batches.items())},
                "unet_s": statistics.median(r["unet"] for r in recs),
                "vae_s": statistics.median(r["vae_encoder"] + r["vae_decoder"] for r in recs),
                "text_s": statistics.median(r["text"] for r in recs),
                "unet_share": statistics.median(r["unet"] / r["wall"] for r in recs),
            }
        )
    by = {r["method"]: r["median_s"] for r in rows}
    ratios = {}
    if "LEDITS++" in by:
        ratios = {f"{m}/LEDITS++": by[m] / by["LEDITS++"] for m in methods if m != "LEDITS++"}
    config = {
        "preset": None if preset is not None else ("quick" if quick else "full"),
        **asdict(p),
        "device": str(dev),
        "hardware": hardware(dev),
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
        "architecture": arch.name,
        "unet_params_m": sum(q.numel() for q in sd.unet.parameters()) / 1e6,
        "latent": [int(sd.vae.config.latent_channels), *(2 * [p.size // sd.vae_scale_factor])],
        "build_s": build_s,
        "seed": seed,
        "ngdm": {"map_draws": MAP_DRAWS, "map_strength": MAP_STRENGTH,
                 "guidance": NGDM_GUIDANCE, "eta": 1.0, "grid": "leading"},
        "ef": {"source_guidance": EF_SOURCE_GUIDANCE, "guidance": EF_GUIDANCE,
               "skip": round(EF_SKIP_FRACTION * p.steps), "eta": 1.0, "grid": "leading"},
        **({"ef_sde": {"sampler": "dpm++2m-sde", "source_guidance": 1.0,
                       "guidance": EF_GUIDANCE, "skip": 0, "grid": (
                           f"last {p.steps} of the {ledits_grid_steps(p.steps)}-step leading "
                           "grid (LEDITS++'s)")}} if EF_SDE in methods else {}),
        "methods": list(methods),
        "ledits": {"scheduler": "sde-dpmsolver++ (2nd order)", "skip": LEDITS_SKIP,
                   "editing_prompt": list(EDIT_CONCEPTS), "source_prompt": ""},
        "prompts": {"source": SOURCE, "target": TARGET},
    }  # fmt: skip
    return {"rows": rows, "ratios": ratios, "config": config}


def _fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.3g}" if x < 10 else f"{x:.1f}"


def _timing(repeats: int, warmup: int) -> str:
    timed = "one timed edit" if repeats == 1 else f"median of {repeats}"
    return f"{timed} after {warmup} warm-up" if warmup else f"{timed}, no warm-up"


def markdown(result: dict[str, Any]) -> str:
    """The table of a :func:`run` result: seconds per edit, ratio to LEDITS++, NFE, UNet calls,
    time inside the networks (and the UNet's per evaluation) and the UNet's share of the wall
    time."""
    c = result["config"]
    device = c["hardware"] if c["device"] == "cpu" else f"{c['hardware']} ({c['device']})"
    lines = [
        f"Seconds per edit, {c['architecture']}, {c['size']}² ({c['steps']} steps, latent "
        f"{'×'.join(map(str, c['latent']))}), {c['dtype']} on {device}, {c['threads']} threads; "
        f"{_timing(c['repeats'], c['warmup'])}; torch {c['torch']}, diffusers "
        f"{c['diffusers']}. Times include VAE encode/decode and text encoding.",
        "",
        "| method | s / edit | × LEDITS++ | NFE | UNet calls × batch | UNet s | UNet ms / NFE "
        "| VAE s | text s | UNet share |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    ledits = next((r["median_s"] for r in result["rows"] if r["method"] == "LEDITS++"), None)
    for r in result["rows"]:
        calls = ", ".join(f"{n}×{b}" for b, n in r["calls"].items())
        ratio = "–" if ledits is None else f"{r['median_s'] / ledits:.2f}"
        lines.append(
            f"| {r['method']} | {_fmt(r['median_s'])} | {ratio} | "
            f"{r['nfe']} | {calls} | {_fmt(r['unet_s'])} | {_fmt(1e3 * r['unet_s'] / r['nfe'])} | "
            f"{_fmt(r['vae_s'])} | "
            f"{_fmt(r['text_s'])} | {r['unet_share']:.2f} |"
        )
    ng, ef, le = c["ngdm"], c["ef"], c["ledits"]
    lines += [
        "",
        f"NGDM: weighting map ({ng['map_draws']} draws × source/target at "
        f"{ng['map_strength']:g} T) + Algorithm 1, guidance {ng['guidance']:g}. EF: inversion "
        f"(source guidance {ef['source_guidance']:g}) + regeneration from skip {ef['skip']} "
        f"(guidance {ef['guidance']:g}). LEDITS++: diffusers' pipeline, {le['scheduler']}, "
        f"skip {le['skip']:g}, editing prompt {le['editing_prompt']}, no source prompt; its "
        "eager attention processors are part of its cost.",
    ]
    if "ef_sde" in c:
        e = c["ef_sde"]
        lines[-1] += (
            f" {EF_SDE}: {e['grid']}, inversion with the source prompt unguided recording "
            f"{e['sampler']}'s noise, regeneration at guidance {e['guidance']:g} over every "
            "step: LEDITS++'s NFE."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m nidiff.bench.sd_speed",
        description="Seconds per edit of NGDM, EF and LEDITS++ on a random-weight SD 1.x UNet.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="256², 8 steps, 1 edit, no warm-up")
    parser.add_argument("--device", type=str, default="cpu", help="torch device")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32", help="network dtype")
    parser.add_argument("--size", type=int, default=None, help="image side (preset: 512)")
    parser.add_argument("--steps", type=int, default=None, help="steps N (preset: 50)")
    parser.add_argument("--repeats", type=int, default=None, help="timed edits (preset: 3)")
    parser.add_argument("--seed", type=int, default=0, help="weights, image and noise")
    parser.add_argument(
        "--methods",
        type=lambda text: tuple(m.strip() for m in text.split(",") if m.strip()),
        default=METHODS,
        help=f"comma-separated, among {', '.join(ALL_METHODS)}",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    parser.add_argument(
        "--out", type=Path, default=None, help="write sd_speed.json and sd_speed.md here"
    )
    args = parser.parse_args(argv)
    result = run(
        quick=args.quick, device=args.device, size=args.size, steps=args.steps,
        repeats=args.repeats, dtype=args.dtype, seed=args.seed, methods=args.methods,
    )  # fmt: skip
    report(result, markdown, args.json, name="sd_speed", out=args.out)


if __name__ == "__main__":
    main()
