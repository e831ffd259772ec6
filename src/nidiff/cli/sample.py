"""``nidiff sample``: draw samples from a model and write them as one image grid."""

from __future__ import annotations

import time
from pathlib import Path

import click
import torch

from .._memory import chunk_size
from .common import (
    InputError,
    check_image_output,
    check_outputs,
    device_options,
    eta_option,
    guidance_option,
    input_errors,
    model_option,
    negative_prompt_options,
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
@negative_prompt_options
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
    "--final-step",
    type=click.Choice(["clean", "pipeline"]),
    default="clean",
    show_default=True,
    help="where the last step lands: clean data, or where the diffusers pipeline's own last step "
    "does (SD 1.x/2.x DDIM with set_alpha_to_one=False: the first training step's noise level; "
    "with --sampler ddim this reproduces the pipeline exactly)",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    show_default="as many as fit in a quarter of the free memory, at most 1024",
    help="samples per chunk: any --num runs in bounded memory (the samples depend on the chunk "
    "size once --num exceeds it)",
)
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
    negative_prompt: str | None,
    true_cfg: float | None,
    size: int | None,
    num: int,
    class_name: str | None,
    steps: int,
    guidance: float,
    eta: float,
    sampler: str | None,
    seed: int,
    final_step: str,
    batch_size: int | None,
    nrow: int | None,
    out: Path,
    overwrite: bool,
) -> None:
    """Sample NUM images from MODEL and write them as one grid OUT (with OUT.json).

    x_T = Σ^{1/2} z with z ~ N(0, I) from the seeded generator, then STEPS steps of DDIM(η)
    over the leading grid; Stable Diffusion samples latents and decodes them.
    """
    from ..models.latent import slice_cond
    from ..noise import white_noise
    from ..samplers import sample as run_sampler
    from ..samplers.registry import rule_spec

    started = time.perf_counter()
    check_image_output(out)
    check_outputs([out, record_path(out)], [], overwrite)
    m = load_cli_model(model, device=device, dtype=dtype, size=size, offload=offload,
                       negative_prompt=negative_prompt, true_cfg=true_cfg)  # fmt: skip
    defaults = m.defaults("sample")
    if not option_given("guidance"):
        guidance = defaults.get("guidance", guidance)
    if not option_given("steps"):
        steps = defaults.get("steps", steps)
    if sampler is None and not option_given("eta"):  # the pipeline's own scheduler (SDXL ...)
        sampler = defaults.get("sampler")
    rule, grid = step_rule(m.process, sampler, eta), m.grid(steps)
    if final_step == "pipeline":
        pipeline_grid = getattr(m.space, "pipeline_grid", None)
        if pipeline_grid is None:
            raise InputError(
                "--final-step pipeline is for Stable Diffusion 1.x/2.x pipelines (their DDIM "
                f"scheduler's last step); {m.name} ends on clean data"
            )
        grid = input_errors(pipeline_grid)(steps)
    chunk = chunk_size(m.shape(1)[1:], batch_size)
    channels = 3 if m.factor > 1 else m.shape(1)[1]  # latent models decode to RGB
    tiles = _Tiles(num, nrow, (channels, m.size, m.size))
    net, cond, conditioning = m.sampling(class_name, num, guidance)
    g = torch.Generator(device=m.device).manual_seed(seed)
    nfe = 0
    with torch.no_grad():
        for start in range(0, num, chunk):
            n = min(chunk, num - start)
            x_T = m.process.prior(white_noise(m.shape(n), generator=g))
            c = None if cond is None else slice_cond(cond, start, start + n)
            run = run_sampler(net, x_T, grid, rule, cond=c, noise=g)
            nfe = run.nfe
            for i in range(n):
                tiles.put(start + i, m.to_image(run.x0[i : i + 1])[0].clamp(-1, 1))
    tiles.save(out)
    write_record(
        out,
        "sample",
        started,
        seed=seed,
        method="ddim" if eta < 1 else "ddpm",
        sampler=rule_spec(rule),
        nfe=nfe,
        batch_size=chunk,
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


class _Tiles:
    """The output grid, filled one image at a time as uint8 (the samples themselves are never
    all in memory); a grid of more than 4 × :data:`nidiff.imageio.MAX_PIXELS` pixels is refused
    up front."""

    def __init__(self, num: int, nrow: int | None, image_shape: tuple[int, ...], pad: int = 2):
        import math

        import numpy as np

        from ..imageio import MAX_PIXELS

        limit = 4 * MAX_PIXELS  # a grid we write may be larger than an input we read
        c, h, w = (int(v) for v in image_shape)
        self.nrow = nrow or math.ceil(math.sqrt(num))
        rows = math.ceil(num / self.nrow)
        H, W = rows * (h + pad) + pad, self.nrow * (w + pad) + pad
        if limit < H * W:
            raise InputError(
                f"a grid of {num:,} images of {h}×{w} is {H:,}×{W:,} = {H * W:,} pixels, above "
                f"the {limit:,} an output grid may have; ask for fewer with --num"
            )
        self.h, self.w, self.pad = h, w, pad
        self.grid = np.full((H, W) if c == 1 else (H, W, 3), 255, dtype=np.uint8)

    def put(self, i: int, image: torch.Tensor) -> None:
        from ..imageio import to_array

        r, q = divmod(i, self.nrow)
        y, x = self.pad + r * (self.h + self.pad), self.pad + q * (self.w + self.pad)
        self.grid[y : y + self.h, x : x + self.w] = to_array(image)

    def save(self, path: Path) -> None:
        from ..imageio import save_array

        save_array(self.grid, path)
