"""``nidiff sample``: draw samples from a model and write them as one image grid."""

from __future__ import annotations

import time
from pathlib import Path

import click
import torch

from .common import (
    check_image_output,
    check_outputs,
    device_options,
    eta_option,
    guidance_option,
    input_errors,
    model_option,
    offload_option,
    option_given,
    overwrite_option,
    record_path,
    sampler_option,
    seed_option,
    size_option,
    step_rule,
    steps_option,
    write_record,
)
from .model import load_cli_model


@click.command("sample")
@model_option
@device_options
@offload_option
@size_option
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
    show_default="all classes in turn; Stable Diffusion: unconditional",
    help="class or prompt of every sample",
)
@steps_option
@guidance_option(
    3.0, "classifier-free guidance scale (conditional models, with --class; Stable Diffusion: 7.5)"
)
@eta_option("η: 1 ancestral (DDPM) steps, 0 deterministic DDIM")
@sampler_option("step rule")
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
    help="grid image (format from the extension: .png, .jpg, .webp, .bmp, .tif); the record "
    "goes to OUT.json",
)
@overwrite_option
@input_errors
def sample(
    model: str,
    device: str,
    dtype: str,
    offload: bool,
    size: int | None,
    num: int,
    class_name: str | None,
    steps: int,
    guidance: float,
    eta: float,
    sampler: str | None,
    seed: int,
    nrow: int | None,
    out: Path,
    overwrite: bool,
) -> None:
    """Sample NUM images from MODEL and write them as one grid OUT (with OUT.json).

    x_T = Σ^{1/2} z with z ~ N(0, I) from the seeded generator, then STEPS steps of DDIM(η)
    over the leading grid; Stable Diffusion samples latents and decodes them.
    """
    from ..imageio import save_grid
    from ..noise import white_noise
    from ..samplers import sample as run_sampler
    from ..samplers.registry import rule_spec

    started = time.perf_counter()
    check_image_output(out)
    check_outputs([out, record_path(out)], [], overwrite)
    m = load_cli_model(model, device=device, dtype=dtype, size=size, offload=offload)
    defaults = m.defaults("sample")
    if not option_given("guidance"):
        guidance = defaults.get("guidance", guidance)
    if not option_given("steps"):
        steps = defaults.get("steps", steps)
    if sampler is None and not option_given("eta"):  # the pipeline's own scheduler (SDXL ...)
        sampler = defaults.get("sampler")
    rule, grid = step_rule(m.process, sampler, eta), m.grid(steps)
    net, cond, conditioning = m.sampling(class_name, num, guidance)
    g = torch.Generator(device=m.device).manual_seed(seed)
    x_T = m.process.prior(white_noise(m.shape(num), generator=g))
    with torch.no_grad():
        run = run_sampler(net, x_T, grid, rule, cond=cond, noise=g)
        x = run.x0
        images = torch.cat([m.to_image(x[i : i + 1]) for i in range(num)])
    save_grid(images.clamp(-1, 1), out, nrow=nrow)
    write_record(
        out,
        "sample",
        started,
        seed=seed,
        method="ddim" if eta < 1 else "ddpm",
        sampler=rule_spec(rule),
        nfe=run.nfe,
        # conditional samples (a class, every class in turn, a prompt) are guided with this scale
        guidance=guidance if _guided(conditioning) else None,
        model=m.describe(),
        **conditioning,
    )
    click.echo(f"wrote {out} ({num} samples)")


def _guided(conditioning: dict) -> bool:
    """Whether the samples were drawn under guidance: they have labels or a prompt (the
    models' :meth:`~nidiff.cli.model.LoadedCli.sampling` record says which)."""
    return any(conditioning.get(key) is not None for key in ("labels", "prompt"))
