"""``nidiff sample``: draw samples from a model and write them as one PNG grid."""

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
    model_option,
    overwrite_option,
    record_path,
    seed_option,
    steps_option,
    write_record,
)


@click.command("sample")
@model_option
@click.option(
    "--num",
    "-n",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="number of samples",
)
@click.option(
    "--class",
    "class_name",
    type=str,
    default=None,
    show_default="all classes in turn",
    help="class of every sample",
)
@steps_option
@guidance_option(3.0, "classifier-free guidance scale (class-conditional models)")
@eta_option("η: 1 ancestral (DDPM) steps, 0 deterministic DDIM")
@seed_option
@click.option(
    "--nrow",
    type=click.IntRange(min=1),
    default=None,
    show_default="√num rounded up",
    help="images per grid row",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="grid image (PNG); the record goes to OUT.json",
)
@overwrite_option
@input_errors
def sample(
    model: str,
    num: int,
    class_name: str | None,
    steps: int,
    guidance: float,
    eta: float,
    seed: int,
    nrow: int | None,
    out: Path,
    overwrite: bool,
) -> None:
    """Sample NUM images from MODEL and write them as one grid OUT (with OUT.json)."""
    from ..generate import generate
    from ..imageio import save_grid
    from ..schedule import leading_grid

    started = time.perf_counter()
    check_outputs([out, record_path(out)], [], overwrite)
    m = load_cli_model(model)
    lm = m.m
    labels = None
    if class_name is not None:
        (c,) = class_conditions(m, class_name)
        labels = c.repeat(num)
    elif lm.num_classes:
        labels = torch.arange(num) % lm.num_classes
    x = generate(
        lm.denoiser,
        lm.step_rule(eta),
        leading_grid(lm.schedule, steps),
        (num, m.channels, m.size, m.size),
        noise=lm.noise,
        labels=labels,
        guidance=guidance,
        null_class=lm.null_class,
        generator=torch.Generator().manual_seed(seed),
    )
    save_grid(x.clamp(-1, 1), out, nrow=nrow)
    write_record(
        out,
        "sample",
        started,
        seed=seed,
        method="ddim" if eta < 1 else "ddpm",
        nfe=steps,
        model=m.describe(),
        labels=labels,
    )
    click.echo(f"wrote {out} ({num} samples)")
