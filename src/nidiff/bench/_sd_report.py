"""The markdown table of :mod:`nidiff.bench.sd_speed`'s results."""

from __future__ import annotations

import math
from typing import Any

from ._sd_methods import EF_SDE

__all__ = ["markdown"]


def _fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.3g}" if x < 10 else f"{x:.1f}"


def _timing(repeats: int, warmup: int) -> str:
    timed = "one timed edit" if repeats == 1 else f"median of {repeats}"
    return f"{timed} after {warmup} warm-up" if warmup else f"{timed}, no warm-up"


def _params_text(c: dict[str, Any]) -> str:
    params = c.get("params_m")
    if not params:
        return ""
    net = "UNet" if c.get("network", "UNet2DConditionModel").startswith("UNet") else "transformer"
    return (f" ({_count(sum(params.values()))} parameters: {net} {_count(params['network'])}, "
            f"text {_count(params['text'])}, VAE {_count(params['vae'])})")  # fmt: skip


def _count(millions: float) -> str:
    return f"{millions / 1e3:.2f} B" if millions >= 1e3 else f"{millions:.3g} M"


def markdown(result: dict[str, Any]) -> str:
    """The table of a :func:`run` result: seconds per edit, ratio to the baseline (LEDITS++, or
    FlowEdit on SD3/FLUX), NFE, network calls, time inside the networks (and the UNet's or
    transformer's per evaluation) and its share of the wall time."""
    c = result["config"]
    device = c["hardware"] if c["device"] == "cpu" else f"{c['hardware']} ({c['device']})"
    family = c.get("family", "sd")
    names = [r["method"] for r in result["rows"]]
    base = next((b for b in ("LEDITS++", "FlowEdit") if b in names), None)
    net = "UNet" if family in ("sd", "sdxl") else "transformer"
    lines = [
        f"Seconds per edit, family {family}: {c['architecture']}{_params_text(c)}, "
        f"{c['size']}² ({c['steps']} steps, latent {'×'.join(map(str, c['latent']))}), "
        f"{c['dtype']} on {device}, {c['threads']} threads; "
        f"{_timing(c['repeats'], c['warmup'])}; torch {c['torch']}, diffusers "
        f"{c['diffusers']}. Times include VAE encode/decode and text encoding.",
        "",
        f"| method | s / edit | × {base or '–'} | NFE | {net} calls × batch | {net} s | "
        f"{net} ms / NFE | VAE s | text s | {net} share |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    ref = next((r["median_s"] for r in result["rows"] if r["method"] == base), None)
    for r in result["rows"]:
        calls = ", ".join(f"{n}×{b}" for b, n in r["calls"].items())
        ratio = "–" if ref is None else f"{r['median_s'] / ref:.2f}"
        lines.append(
            f"| {r['method']} | {_fmt(r['median_s'])} | {ratio} | "
            f"{r['nfe']} | {calls} | {_fmt(r['unet_s'])} | {_fmt(1e3 * r['unet_s'] / r['nfe'])} | "
            f"{_fmt(r['vae_s'])} | "
            f"{_fmt(r['text_s'])} | {r['unet_share']:.2f} |"
        )
    ng, ef = c["ngdm"], c["ef"]
    notes = (
        f"NGDM: weighting map ({ng['map_draws']} draws × source/target at "
        f"{ng['map_strength']:g} T) + Algorithm 1, guidance {ng['guidance']:g}. EF: inversion "
        f"(source guidance {ef['source_guidance']:g}) + regeneration from skip {ef['skip']} "
        f"(guidance {ef['guidance']:g})."
    )
    if "ledits" in c:
        le = c["ledits"]
        notes += (
            f" LEDITS++: diffusers' {le.get('pipeline', 'pipeline')}, {le['scheduler']}, skip "
            f"{le['skip']:g}, editing prompt {le['editing_prompt']}, no source prompt; its "
            "attention processors are part of its cost."
        )
    if "ef_sde" in c:
        e = c["ef_sde"]
        notes += (
            f" {EF_SDE}: {e['grid']}, inversion with the source prompt unguided recording "
            f"{e['sampler']}'s noise, regeneration at guidance {e['guidance']:g} over every "
            "step: LEDITS++'s NFE."
        )
    if "flowedit" in c:
        fe = c["flowedit"]
        notes += (
            f" FlowEdit (nidiff's): {fe['steps']} steps, n_max {fe['n_max']}, n_avg "
            f"{fe['n_avg']}, guidance {fe['source_guidance']:g} / {fe['guidance']:g} (FlowEdit's "
            "published settings, skip scaled to the steps); no diffusers pipeline runs it."
        )
    return "\n".join([*lines, "", notes])
