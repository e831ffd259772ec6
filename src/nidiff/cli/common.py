"""What every ``nidiff`` command shares: the error boundary, model and image loading, output
checks, conditions, and (re-exported from :mod:`.progress` and :mod:`.record`) progress bars and
the JSON provenance record written next to each output.

Exit codes: ``0`` success, ``2`` bad usage or input (one ``Error: ...`` line on stderr, no
traceback), ``1`` internal errors.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click
import torch

from .._io import check_writable
from ..bundled import MODELS
from .progress import progress_bar, quiet_option, show_progress
from .record import record_path, write_record

__all__ = [
    "GUIDANCE",
    "SEED",
    "FiniteFloatRange",
    "InputError",
    "check_image_file",
    "check_image_output",
    "check_outputs",
    "class_conditions",
    "device_option",
    "device_options",
    "input_errors",
    "model_grid",
    "model_option",
    "negative_prompt_options",
    "offload_option",
    "option_given",
    "progress_bar",
    "quiet_option",
    "record_path",
    "refuse_guidance",
    "resolve_device",
    "resolve_dtype",
    "sampler_option",
    "seed_option",
    "shift_grid_option",
    "show_progress",
    "size_option",
    "step_rule",
    "write_record",
]


class InputError(click.ClickException):
    """Bad input or usage found after parsing: ``Error: <message>`` on stderr, exit code 2."""

    exit_code = 2


def input_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the library's ``ValueError``/``FileNotFoundError``/``FileExistsError`` into exit 2.

    The library raises these for bad arguments and unreadable files, with a message that says
    what to fix; anything else is an internal error (exit 1, traceback kept).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError, FileExistsError) as err:
            raise InputError(" ".join(str(err).split())) from err

    return wrapper


def model_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--model",
        "model",
        type=str,
        default="default",
        show_default=True,
        help=f"bundled model ({', '.join(MODELS)}; 'default' = {MODELS[0]}), a nidiff model "
        "directory, or a diffusers pipeline directory (model_index.json): Stable Diffusion "
        "1.x/2.x, SDXL, SD3/3.5 or FLUX.1",
    )(fn)


class FiniteFloatRange(click.FloatRange):
    """A :class:`click.FloatRange` that also refuses ``nan`` (which compares false with every
    bound, so a plain range lets it through), naming the option and the range."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if isinstance(rv, float) and not math.isfinite(rv):
            self.fail(
                f"{value!r} is not a number in the range {self._describe_range()}.", param, ctx
            )
        return rv


#: ``--seed``: what ``torch.Generator.manual_seed`` takes, with room for batch mode's row offsets.
SEED = click.IntRange(0, 2**63 - 1)
#: A classifier-free guidance scale: ``0`` (unconditional) to ``100``; the papers use 1–15, and
#: far larger scales only overflow the guided prediction.
GUIDANCE = FiniteFloatRange(0, 100)


def seed_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--seed",
        type=SEED,
        default=0,
        show_default=True,
        help="seed of the one torch.Generator every random draw comes from (0 to 2**63 - 1)",
    )(fn)


#: ``--steps``: the number of steps of the leading time grid (every sampling command).
steps_option = click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="steps of the leading time grid",
)


def guidance_option(default: float, help: str) -> Callable[..., Any]:
    """``--guidance``: a classifier-free guidance scale in ``[0, 100]`` (:data:`GUIDANCE`)."""
    return click.option("--guidance", type=GUIDANCE, default=default, show_default=True, help=help)


def eta_option(help: str, *, min_open: bool = False) -> Callable[..., Any]:
    """``--eta``: the stochasticity η of the steps, in [0, 1] (``(0, 1]`` with ``min_open``)."""
    return click.option(
        "--eta",
        type=FiniteFloatRange(0, 1, min_open=min_open),
        default=1.0,
        show_default=True,
        help=help,
    )


def sampler_option(help: str) -> Callable[..., Any]:
    """``--sampler NAME``: a step rule of :data:`nidiff.samplers.SAMPLERS` (default: the
    process's own, DDPM or DDIM(η); the edge-preserving posterior for EP models)."""
    from ..samplers.registry import SAMPLERS

    return click.option(
        "--sampler",
        type=click.Choice(list(SAMPLERS)),
        default=None,
        show_default="the model's own: ddpm (ddim with --eta < 1), edge-posterior for EP models",
        help=help + "; " + "; ".join(f"{n}: {s.summary}" for n, s in SAMPLERS.items()),
    )


def step_rule(process: Any, sampler: str | None, eta: float) -> Any:
    """The rule a command runs: ``--sampler`` (with ``--eta`` when given, for samplers that take
    one) or the process's own rule with ``--eta``; a mismatch is exit 2 naming both."""
    from ..samplers.registry import choose_rule

    eta_arg = eta if sampler is None or option_given("eta") else None
    return input_errors(choose_rule)(process, sampler, eta=eta_arg)


def shift_grid_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--shift-grid S``: the model's time grid moved toward high noise (:func:`model_grid`)."""
    return click.option(
        "--shift-grid",
        "grid_shift",
        type=FiniteFloatRange(0, 100, min_open=True),
        default=1.0,
        show_default="1: the model's own grid",
        help="move the time grid toward high noise by S, u ↦ Su/(1+(S−1)u) of t/T (SD3's "
        "shift of the time axis, for few-step inversion as in TurboEdit; VP models only). "
        "RESULTS.md: helps EF's strong edits at 3 steps (S = 2), not at 10",
    )(fn)


def model_grid(m: Any, steps: int, shift: float = 1.0) -> Any:
    """The model's own grid of ``steps`` steps, moved toward high noise by ``shift``
    (:func:`nidiff.schedule.shift_grid`; ``1`` leaves it as it is).

    Raises:
        InputError: a shift on a model that is not variance-preserving (rectified-flow
            pipelines shift their grid with their own scheduler's setting), or a step count
            whose shifted times collide on the model's integer steps.
    """
    from ..schedule import AlphaBarSchedule, shift_grid

    grid = m.grid(steps)
    if shift == 1.0:
        return grid
    schedule = m.process.schedule
    if not isinstance(schedule, AlphaBarSchedule):
        raise InputError(
            f"--shift-grid applies to variance-preserving (DDPM-style) models; {m.name} has a "
            f"{type(schedule).__name__} schedule (a flow pipeline's grid takes the shift of its "
            "own scheduler)"
        )
    try:
        return shift_grid(grid, schedule, shift)
    except ValueError as err:
        raise InputError(f"--shift-grid {shift:g} with --steps {steps}: {err}") from err


def overwrite_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--overwrite",
        is_flag=True,
        default=False,
        show_default=True,
        help="replace existing output files (inputs are never overwritten)",
    )(fn)


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(name: str) -> str:
    """``--device``: ``auto`` (cuda if available, else cpu) or a torch device name; a CUDA device
    on a machine without CUDA is refused (exit 2)."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise InputError(f"--device {name!r} is not a torch device ({err})") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine")
    return name


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """``--dtype``: the networks' precision. float16 needs a CUDA device (many CPU kernels lack
    half precision); on a CPU use float32 or bfloat16."""
    if name == "float16" and torch.device(device).type != "cuda":
        raise InputError(
            f"--dtype float16 needs a CUDA device, not {device}; use float32 or bfloat16 on a CPU"
        )
    return DTYPES[name]


#: ``--device``: where the networks run (:func:`resolve_device` reads it).
device_option = click.option(
    "--device",
    type=str,
    default="auto",
    show_default="auto: cuda if available, else cpu",
    help="torch device, e.g. cpu, cuda or cuda:1",
)


def device_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--device`` and ``--dtype`` (where the model runs and in which precision)."""
    fn = click.option(
        "--dtype",
        type=click.Choice(list(DTYPES)),
        default="float32",
        show_default=True,
        help="precision of the networks (float16 only on CUDA); inputs, latents and outputs "
        "stay float32",
    )(fn)
    return device_option(fn)


def offload_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--offload``: keep a pipeline's networks on the CPU, each moved to the device only while
    it is used (text encoders, then the denoiser, then the VAE), like diffusers'
    ``enable_model_cpu_offload``."""
    return click.option(
        "--offload",
        is_flag=True,
        default=False,
        show_default=True,
        help="diffusers pipelines: keep the networks on the CPU and move each to --device only "
        "while it runs (one at a time; for SDXL/SD3/FLUX on a small GPU)",
    )(fn)


def negative_prompt_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--negative-prompt`` (text-to-image pipelines: the unconditional prompt of guidance)
    and ``--true-cfg`` (FLUX.1-dev: true classifier-free guidance on top of the embedded one)."""
    fn = click.option(
        "--true-cfg",
        type=FiniteFloatRange(1, 100),
        default=None,
        show_default="1: off",
        help="guidance-distilled FLUX (FLUX.1-dev): true classifier-free guidance scale on top "
        "of the embedded --guidance (two passes, the unconditional one under "
        "--negative-prompt; FluxPipeline's true_cfg_scale)",
    )(fn)
    return click.option(
        "--negative-prompt",
        metavar="TEXT",
        default=None,
        show_default="the empty prompt",
        help="text-to-image pipelines: the unconditional prompt of classifier-free guidance, "
        "which the image is guided away from (diffusers' negative_prompt; recorded in OUT.json)",
    )(fn)


def option_given(name: str) -> bool:
    """Whether the user set option ``name`` (command line or environment), not its default."""
    from click.core import ParameterSource

    source = click.get_current_context().get_parameter_source(name)
    return source not in (None, ParameterSource.DEFAULT)


def refuse_guidance(m: Any, *names: str) -> None:
    """On an unconditional model, a guidance option the user set to anything but 1 is exit 2:
    classifier-free guidance steers toward a condition, and the model has none."""
    if getattr(m, "conditional", True):
        return
    params = click.get_current_context().params
    for name in names:
        value = params.get(name)
        if option_given(name) and value is not None and value != 1:
            raise InputError(
                f"--{name.replace('_', '-')} {value:g}: classifier-free guidance steers toward a "
                f"class, and {m.name} is unconditional (trained without classes); leave it out"
            )


def check_image_file(path: Path) -> tuple[int, int]:
    """The ``(width, height)`` of an image file from its header; a missing, unreadable or too
    large file (:data:`nidiff.imageio.MAX_PIXELS`, decompression bombs) is exit 2."""
    from ..imageio import image_size

    try:
        return image_size(path)
    except (ValueError, FileNotFoundError) as err:
        raise InputError(str(err)) from err


def check_image_output(path: Path | None, option: str = "--out") -> None:
    """Refuse, before any work, an image output whose extension names no format nidiff writes
    (:data:`nidiff.imageio.OUTPUT_FORMATS`)."""
    from ..imageio import output_format

    if path is None:
        return
    try:
        output_format(path)
    except ValueError as err:
        raise InputError(f"{option} {err}") from err


def class_conditions(model: Any, *names: str | None) -> list[torch.Tensor | None]:
    """The model conditions of the class or prompt names (``None`` stays ``None``).

    ``model`` is a :class:`~nidiff.cli.pixel.PixelModel` (``.m``, ``.name``); text prompts of
    Stable Diffusion models go through :class:`~nidiff.cli.latent.LatentModel` instead. Names
    are matched like :func:`nidiff.data.fashion_mnist.class_index` (case,
    spaces and punctuation ignored, synonyms for Fashion-MNIST) or given as class ids.
    """
    from ..data.fashion_mnist import CLASS_NAMES, class_index

    classes = model.m.class_names
    if not model.m.num_classes:
        if any(n is not None for n in names):
            raise InputError(
                f"{model.name} is unconditional (trained without classes): it takes no class or "
                "prompt (leave out --source, --target and --class)"
            )
        return [None for _ in names]

    def norm(s: str) -> str:
        return "".join(ch for ch in s.lower() if ch.isalnum())

    def one(name: str) -> int:
        if name.strip().isdigit() and int(name) < model.m.num_classes:
            return int(name)
        if tuple(classes) == CLASS_NAMES:
            try:
                return class_index(name)
            except ValueError as err:
                raise InputError(str(err)) from err
        table = {norm(c): i for i, c in enumerate(classes)}
        if norm(name) in table:
            return table[norm(name)]
        valid = ", ".join(repr(c) for c in classes)
        raise InputError(f"unknown class {name!r} for {model.name}; valid names: {valid}")

    return [None if n is None else torch.tensor([one(n)]) for n in names]


def check_outputs(
    outputs: Iterable[Path | None], inputs: Iterable[Path | None], overwrite: bool
) -> None:
    """Refuse outputs that are inputs, repeat each other, exist (unless ``overwrite``) or
    cannot be written (checked now, before any work, by creating a file where they go)."""
    outs = [p for p in outputs if p is not None]
    ins = {p.resolve() for p in inputs if p is not None}
    seen: set[Path] = set()
    for p in outs:
        r = p.resolve()
        if r in ins:
            raise InputError(f"output {p} is an input file; inputs are never overwritten")
        if r in seen:
            raise InputError(f"{p} is named for two outputs")
        seen.add(r)
        if p.is_dir():
            raise InputError(f"output {p} is a directory")
        if p.exists() and not overwrite:
            raise InputError(f"{p} exists; pass --overwrite to replace it")
    probed: set[Path] = set()
    for p in outs:  # one probe per folder
        if p.resolve().parent not in probed:
            probed.add(p.resolve().parent)
            try:
                check_writable(p)
            except PermissionError as err:
                raise InputError(str(err)) from err


#: ``--size``: the side of the square images of a Stable Diffusion model (pixel models: fixed).
size_option = click.option(
    "--size",
    type=click.IntRange(min=1),
    default=None,
    show_default="the model's: 512 for SD 1.x, 1024 for SDXL/SD3/FLUX, 28 for the bundled models",
    help="image side in pixels; pipelines: images are centre-cropped and resized to SIZE×SIZE, "
    "a multiple of 8 (SD, SDXL) or 16 (SD3: VAE 8 × patch 2; FLUX: VAE 8 × packing 2)",
)
