"""``nidiff invert``: edit-friendly DDPM inversion of one image into a ``.safetensors`` file."""

from __future__ import annotations

import time
from pathlib import Path

import click
import torch

from .common import (
    InputError,
    check_outputs,
    device_options,
    eta_option,
    guidance_option,
    input_errors,
    model_grid,
    model_option,
    offload_option,
    option_given,
    overwrite_option,
    progress_bar,
    quiet_option,
    record_path,
    refuse_guidance,
    sampler_option,
    seed_option,
    shift_grid_option,
    size_option,
    step_rule,
    write_record,
)
from .model import load_cli_model


@click.command(
    "invert",
    epilog="Stable Diffusion: unless given, the EF paper's 100 steps, η 1 and guidance 3.5; "
    "SDXL, SD3, FLUX: their pipelines' steps (50, 28, 28) and guidance 3.5, 3.5, 1.5.",
)
@click.argument("image", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--source",
    "-s",
    type=str,
    default=None,
    help="class or prompt the image shows (required for class and text models; none for a model "
    "trained on an image folder)",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="inversion file (.safetensors); the record goes to OUT.json",
)
@model_option
@device_options
@offload_option
@size_option
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=50,
    show_default="50; Stable Diffusion: 100",
    help="steps of the leading time grid",
)
@shift_grid_option
@seed_option
@guidance_option(1.0, "classifier-free guidance scale of the inversion (Stable Diffusion: 3.5)")
@eta_option("η of the inverted steps, in (0, 1]", min_open=True)
@sampler_option("stochastic step rule whose noise is recorded (regenerate replays it)")
@click.option(
    "--resize",
    is_flag=True,
    default=False,
    show_default=True,
    help="resize an image of another size (centre crop + bicubic); implied for Stable Diffusion",
)
@quiet_option
@overwrite_option
@input_errors
def invert(
    image: Path,
    source: str | None,
    out: Path,
    model: str,
    device: str,
    dtype: str,
    offload: bool,
    size: int | None,
    steps: int,
    grid_shift: float,
    seed: int,
    guidance: float,
    eta: float,
    sampler: str | None,
    resize: bool,
    quiet: bool,
    overwrite: bool,
) -> None:
    """Invert IMAGE (of class or prompt SOURCE) into edit-friendly noise maps; writes OUT, OUT.json.

    Regenerate or edit the result with `nidiff regenerate OUT`.
    """
    from ..inversion import edit_friendly_invert, save_inversion
    from ..inversion.edit_friendly import inversion_rule
    from ..models.space import CountingDenoiser

    started = time.perf_counter()
    check_outputs([out, record_path(out)], [image], overwrite)
    m = load_cli_model(model, device=device, dtype=dtype, size=size, offload=offload)
    if source is None and m.conditional:
        raise InputError(f"--source is required: {m.name} is conditional (give the image's class)")
    refuse_guidance(m, "guidance")
    paper = m.defaults("ef")  # the EF paper's settings for Stable Diffusion; none for pixels
    steps = steps if option_given("steps") else paper.get("steps", steps)
    eta = eta if option_given("eta") else paper.get("eta", eta)
    guidance = guidance if option_given("guidance") else paper.get("source_guidance", guidance)
    rule = step_rule(m.process, sampler, eta)
    input_errors(inversion_rule)(m.process, 1.0, rule)  # a deterministic rule: before any work
    grid = model_grid(m, steps, grid_shift)
    x0 = m.load_image(image, resize)
    (src,) = m.conditions(source)
    with progress_bar(len(grid), "invert", quiet, unit="call") as bar:
        inv = edit_friendly_invert(
            CountingDenoiser(m.denoiser, lambda calls: bar.update(1)),
            x0,
            m.process,
            grid,
            cond=src,
            guidance=guidance,
            null_cond=m.null,
            rule=rule,
            generator=torch.Generator(device=m.device).manual_seed(seed),
        )
    save_inversion(inv, out, overwrite=overwrite)
    write_record(
        out,
        "invert",
        started,
        seed=seed,
        method="edit_friendly",
        nfe=steps,
        resolved={
            "steps": steps,
            "eta": eta,
            "guidance": guidance,
            "sampler": inv.sampler,
            "grid_shift": grid_shift,
            "grid": inv.grid.t.tolist(),
        },
        model=m.describe(),
        **m.condition_record("source", source, src),
    )
    click.echo(f"wrote {out} ({steps} maps)")
