"""The options of ``nidiff edit`` that belong to particular methods (skip, strength, factor,
the stroke painting, the change map and mask, the attention methods'), with their help and
defaults read from the registry (:mod:`nidiff.defaults`), and the command's epilog."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..methods import (
    EF_PAPER,
    P2P_PAPER,
    PIXEL_DEFAULTS,
    PNP_PAPER,
    SKIP_FRAC,
    STRENGTH,
    STROKES_EP,
    ZERO_SHOT_DDIM_PAPER,
    ZERO_SHOT_PAPER,
    EditOptions,
)

__all__ = ["EPILOG", "method_options", "pixel_defaults"]

_SD_EF = (
    f"Stable Diffusion with --method ef: unless given, the EF paper's {EF_PAPER['steps']} steps, "
    f"η {EF_PAPER['eta']:g}, --source-guidance {EF_PAPER['source_guidance']:g}, --guidance "
    f"{EF_PAPER['guidance']:g}, --skip {round(EF_PAPER['skip_frac'] * 100)} of 100 "
    f"(round({EF_PAPER['skip_frac']} × steps)); with --method p2p the same but --guidance "
    f"{P2P_PAPER['guidance']:g} and --skip {round(P2P_PAPER['skip_frac'] * 100)} of 100 (EF "
    "paper, Table 3); zero-shot and zero-shot-ddim: the EF paper's Table 4 (50 steps, --guidance "
    f"{ZERO_SHOT_PAPER['guidance']:g}, --skip 0, --xa-guidance {ZERO_SHOT_PAPER['xa_guidance']:g}"
    f" / {ZERO_SHOT_DDIM_PAPER['xa_guidance']:g}, --source-guidance "
    f"{ZERO_SHOT_PAPER['source_guidance']:g} / {ZERO_SHOT_DDIM_PAPER['source_guidance']:g}); "
    f"pnp-ddim: PnP's (Table 3: {PNP_PAPER['inversion_steps']} inversion steps at guidance "
    f"{PNP_PAPER['source_guidance']:g}, 50 edit steps, --guidance {PNP_PAPER['guidance']:g}, "
    f"--feature-replace {PNP_PAPER['feature_replace']:g}, --self-replace "
    f"{PNP_PAPER['self_replace']:g}), pnp the same on EF maps (--source-guidance 3.5)"
)


def pixel_defaults(key: str, fmt: str = "{:g}") -> str:
    """The pixel models' default ``key`` per method (:data:`nidiff.methods.PIXEL_DEFAULTS`)."""
    return ", ".join(f"{m} {fmt.format(d[key])}" for m, d in PIXEL_DEFAULTS.items() if key in d)


_BENCH = (
    "On nidiff's pixel models (bundled or trained), unset --strength, --skip, --factor and "
    "--guidance are each method's point of the editing benchmark with target accuracy ≥ 0.9 and "
    "the best fidelity (SSIM, background PSNR), or its most accurate point where none reaches 0.9 "
    "(RESULTS.md, 'Default settings of nidiff edit'). "
)

#: ``nidiff edit --help``'s closing paragraph: where the defaults come from.
EPILOG = _BENCH + _SD_EF + "."

_METHOD_OPTIONS = (
    click.option(
        "--skip",
        type=click.IntRange(min=0),
        default=None,
        show_default=f"pixel models round(F × steps) with F: {pixel_defaults('skip_frac')} (the "
        f"editing benchmark's); pipelines round({SKIP_FRAC} × steps)",
        help="noisiest steps skipped (ef, ddim, cycle, p2p, zero-shot*, pnp*; Stable Diffusion ef: "
        "0.36 × steps, zero-shot and pnp: 0)",
    ),
    click.option(
        "--strength",
        type=click.FloatRange(0, 1, min_open=True),
        default=None,
        show_default=f"pixel models {pixel_defaults('strength')} (the editing benchmark's), "
        f"strokes {STROKES_EP['strength']:g} (the EP paper's hijack time, nidiff bench edge's); "
        "pipelines " + ", ".join(f"{m} {v:g}" for m, v in STRENGTH.items()) + ", ngdm/ngdm-ef 1",
        help="start level, fraction of t_max: sdedit noises to it (strokes: the painting); ngdm "
        "and ngdm-ef start their grid at its first time ≤ s·t_max, λ's per-pixel start times "
        "below it (1: the grid's top, the NGDM paper's); diffedit's encoding ratio",
    ),
    click.option(
        "--factor",
        type=click.IntRange(min=1),
        default=None,
        show_default="pixel models: the largest divisor of the side ≤ half of it (14 on the 28² "
        "models, the editing benchmark's); pipelines 4",
        help="ILVR downsampling factor (must divide the image size; Stable Diffusion: SIZE/8)",
    ),
    click.option(
        "--clusters",
        type=click.IntRange(min=1),
        default=None,
        show_default=f"{STROKES_EP['clusters']}, nidiff bench edge's (EP paper, stroke SDEdit)",
        help="strokes: grey levels (colours) of the k-means painting made from IMAGE",
    ),
    click.option(
        "--stroke-blur",
        type=click.FloatRange(0),
        default=None,
        show_default=f"{STROKES_EP['stroke_blur']:g}, nidiff bench edge's",
        help="strokes: std in pixels of the Gaussian blur before k-means (0: none)",
    ),
    click.option(
        "--painting",
        "painting_file",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="strokes: your own painting (an image of IMAGE's size, read as IMAGE is) instead of "
        "the k-means painting of IMAGE",
    ),
    click.option(
        "--map-n",
        type=click.IntRange(min=1),
        default=EditOptions.map_n,
        show_default=f"{EditOptions.map_n}, the NGDM paper's",
        help="noise draws of the NGDM weighting map / DiffEdit mask (2 for few-step edits: "
        "measured on the same accuracy-fidelity curve at a fifth of the map's cost; RESULTS.md)",
    ),
    click.option(
        "--map-strength",
        type=click.FloatRange(0, 1, min_open=True),
        default=0.5,
        show_default=True,
        help="noise level of the weighting map / mask, fraction of t_max",
    ),
    click.option(
        "--map",
        "map_file",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="ngdm, ngdm-ef: a grey change map (white = change, black = keep; Differential "
        "Diffusion's convention) of the image's aspect, resized to the model's grid, as λ",
    ),
    click.option(
        "--map-mode",
        type=click.Choice(["replace", "multiply"]),
        default="replace",
        show_default=True,
        help="ngdm, ngdm-ef: --map replaces the computed weighting map, or multiplies it",
    ),
    click.option(
        "--threshold",
        type=click.FloatRange(0, 1),
        default=0.5,
        show_default=True,
        help="DiffEdit mask binarisation level",
    ),
    click.option(
        "--preserve",
        is_flag=True,
        default=False,
        show_default=True,
        help="ngdm, ngdm-ef: keep the source where λ starts below the last step",
    ),
    click.option(
        "--cross-replace",
        type=click.FloatRange(0, 1),
        default=0.6,
        show_default=True,
        help="p2p: fraction of the steps run whose cross-attention is the source's",
    ),
    click.option(
        "--self-replace",
        type=click.FloatRange(0, 1),
        default=0.2,
        show_default="0.2; pnp, pnp-ddim 0.5",
        help="p2p, pnp, pnp-ddim: fraction of the steps run whose self-attention is the source's",
    ),
    click.option(
        "--feature-replace",
        type=click.FloatRange(0, 1),
        default=PNP_PAPER["feature_replace"],
        show_default=True,
        help="pnp, pnp-ddim: fraction of the steps run whose decoder ResNet features are the "
        "source's",
    ),
    click.option(
        "--xa-guidance",
        type=click.FloatRange(0),
        default=None,
        show_default=f"zero-shot {ZERO_SHOT_PAPER['xa_guidance']:g}, zero-shot-ddim "
        f"{ZERO_SHOT_DDIM_PAPER['xa_guidance']:g}",
        help="zero-shot, zero-shot-ddim: cross-attention guidance weight λ_xa (0: none)",
    ),
    click.option(
        "--noise-reg-steps",
        type=click.IntRange(min=0),
        default=ZERO_SHOT_DDIM_PAPER["noise_reg_steps"],
        show_default=True,
        help="zero-shot-ddim: rounds of pix2pix-zero's noise regularization per inversion step (0: "
        "plain DDIM inversion)",
    ),
    click.option(
        "--inversion-steps",
        type=click.IntRange(min=1),
        default=PNP_PAPER["inversion_steps"],
        show_default=True,
        help="pnp-ddim: DDIM inversion steps (a refinement of the edit grid through its times)",
    ),
    click.option(
        "--p2p-mode",
        type=click.Choice(["replace", "refine"]),
        default="replace",
        show_default=True,
        help="p2p: replace (word swap, equal word counts) or refine (words added or removed)",
    ),
    click.option(
        "--reweight",
        type=str,
        multiple=True,
        metavar="WORD=FACTOR",
        help="p2p: scale the target's attention to WORD by FACTOR (repeatable)",
    ),
)


def method_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the method-specific options to ``fn``, in ``--help`` order."""
    for option in reversed(_METHOD_OPTIONS):
        fn = option(fn)
    return fn
