"""``nidiff invert``: edit-friendly DDPM inversion of one image into a ``.safetensors`` file."""

from __future__ import annotations

import time
from pathlib import Path

import click
import torch

from .common import (
    check_outputs,
    class_conditions,
    eta_option,
    guidance_option,
    input_errors,
    load_cli_model,
    load_input,
    model_option,
    overwrite_option,
    record_path,
    seed_option,
    steps_option,
    write_record,
)


@click.command("invert")
@click.argument("image", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--source", "-s", type=str, required=True, help="class the image shows")
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="inversion file (.safetensors); the record goes to OUT.json",
)
@model_option
@steps_option
@seed_option
@guidance_option(1.0, "classifier-free guidance scale of the inversion")
@eta_option("η of the inverted steps, in (0, 1]", min_open=True)
@click.option(
    "--resize",
    is_flag=True,
    default=False,
    show_default=True,
    help="resize an image of another size (centre crop + bicubic)",
)
@overwrite_option
@input_errors
def invert(
    image: Path,
    source: str,
    out: Path,
    model: str,
    steps: int,
    seed: int,
    guidance: float,
    eta: float,
    resize: bool,
    overwrite: bool,
) -> None:
    """Invert IMAGE (of class SOURCE) into its edit-friendly noise maps; writes OUT and OUT.json.

    Regenerate or edit the result with `nidiff regenerate OUT`.
    """
    from ..inversion import edit_friendly_invert, save_inversion
    from ..schedule import leading_grid

    started = time.perf_counter()
    check_outputs([out, record_path(out)], [image], overwrite)
    m = load_cli_model(model)
    x0 = load_input(image, m, resize)
    (src,) = class_conditions(m, source)
    lm = m.m
    inv = edit_friendly_invert(
        lm.denoiser,
        x0,
        lm.process,
        leading_grid(lm.schedule, steps),
        cond=src,
        guidance=guidance,
        null_cond=m.null,
        eta=eta,
        generator=torch.Generator().manual_seed(seed),
    )
    save_inversion(inv, out, overwrite=overwrite)
    write_record(
        out,
        "invert",
        started,
        seed=seed,
        method="edit_friendly",
        nfe=steps,
        model=m.describe(),
        source_class=int(src) if src is not None else None,
    )
    click.echo(f"wrote {out} ({steps} maps)")
