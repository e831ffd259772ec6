"""``nidiff regenerate``: regenerate an inversion, optionally edited (class, shift, flip,
colour; EF Sec. 4–5)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ..bundled import MODELS
from .common import (
    GUIDANCE,
    InputError,
    check_image_output,
    check_outputs,
    device_options,
    input_errors,
    offload_option,
    overwrite_option,
    record_path,
    refuse_guidance,
    sampler_option,
    write_record,
)
from .model import load_cli_model


def _model_of(inversion: Path) -> str:
    """The model named in the inversion's record (``INVERSION.json``), else ``default``."""
    try:
        described = json.loads(record_path(inversion).read_text())["model"]
        name = str(described["name"])
        return name if name == "default" or name in MODELS else str(described["dir"])
    except (OSError, ValueError, KeyError, TypeError):
        return "default"


def _shift(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        dx, dy = (int(v) for v in value.split(","))
    except ValueError:
        raise InputError(
            f"--shift {value!r}: expected DX,DY, two integers (columns right, rows down; "
            "negative moves left/up), e.g. --shift 2,-1"
        ) from None
    return dx, dy


#: The first bytes of the image files a user may give in place of an inversion.
_IMAGE_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"BM": "a BMP image",
    b"II*\x00": "a TIFF image",
    b"MM\x00*": "a TIFF image",
    b"RIFF": "a WebP image",
}


def _check_inversion_file(path: Path) -> None:
    """Refuse a file that is not a safetensors file at all (an image, text) with a message that
    names the argument and what it takes, where the safetensors parser says "header too large"."""
    if not path.is_file():
        raise InputError(f"inversion file {path} does not exist")
    with path.open("rb") as f:
        head = f.read(9)
    what = next((name for magic, name in _IMAGE_MAGIC.items() if head.startswith(magic)), None)
    size = path.stat().st_size
    declared = int.from_bytes(head[:8], "little") if len(head) == 9 else -1
    if what is None and 0 < declared <= size - 8 and head[8:9] == b"{":
        return  # a safetensors header; load_inversion checks the rest
    raise InputError(
        f"INVERSION {path} is not a readable nidiff inversion ({what or 'not a safetensors file'}"
        "): give the .safetensors file written by `nidiff invert IMAGE -s SOURCE --out FILE`"
    )


@click.command("regenerate")
@click.argument("inversion", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="regenerated image (format from the extension: .png, .jpg, .webp, .bmp, .tif); the "
    "record goes to OUT.json",
)
@click.option(
    "--target",
    "-t",
    type=str,
    default=None,
    show_default="the inversion's class or prompt",
    help="class or prompt to regenerate into",
)
@click.option(
    "--model",
    type=str,
    default=None,
    show_default="the model named in INVERSION.json, else 'default'",
    help="bundled model name, model or Stable Diffusion pipeline directory (must be the "
    "inversion's)",
)
@device_options
@offload_option
@click.option(
    "--skip",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="noisiest steps skipped (start from the inverted state there)",
)
@click.option(
    "--guidance",
    type=GUIDANCE,
    default=None,
    show_default="the inversion's",
    help="classifier-free guidance scale",
)
@click.option(
    "--shift",
    type=str,
    default=None,
    metavar="DX,DY",
    help="shift all noise maps DX columns right, DY rows down (--skip 0; Stable Diffusion: "
    "latent pixels)",
)
@click.option(
    "--flip",
    is_flag=True,
    default=False,
    show_default=True,
    help="flip every noise map horizontally (needs --skip 0)",
)
@click.option(
    "--color-mask",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="grey image: where to apply the colour edit (white = fully)",
)
@click.option(
    "--color",
    "color_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="image of the desired colours (with --color-mask)",
)
@click.option(
    "--color-strength",
    type=click.FloatRange(min=0),
    default=0.05,
    show_default=True,
    help="strength s of the colour edit (EF eq. 7)",
)
@click.option(
    "--resize",
    is_flag=True,
    default=False,
    show_default=True,
    help="resize --color-mask/--color images of another size to the model's (implied for "
    "Stable Diffusion)",
)
@sampler_option("the inversion's step rule (its maps replay only with it; another name is refused)")
@overwrite_option
@input_errors
def regenerate(
    inversion: Path,
    out: Path,
    target: str | None,
    model: str | None,
    device: str,
    dtype: str,
    offload: bool,
    skip: int,
    guidance: float | None,
    shift: str | None,
    flip: bool,
    color_mask: Path | None,
    color_file: Path | None,
    color_strength: float,
    resize: bool,
    sampler: str | None,
    overwrite: bool,
) -> None:
    """Regenerate INVERSION (from `nidiff invert`); with its own class and guidance the result
    reproduces the inverted image. Writes OUT and OUT.json."""
    from ..imageio import save_image
    from ..inversion import (
        color_edit,
        edit_friendly_regenerate,
        flip_maps,
        load_inversion,
        shift_maps,
    )

    started = time.perf_counter()
    dxdy = _shift(shift)
    if (color_mask is None) != (color_file is None):
        raise InputError("--color-mask and --color go together")
    manipulated = dxdy is not None or flip
    if color_mask is not None and manipulated:
        raise InputError("a colour edit cannot be combined with --shift/--flip")
    if manipulated and skip:
        raise InputError(f"--shift/--flip replace x_T, so they need --skip 0 (got {skip})")
    inputs = [inversion, record_path(inversion), color_mask, color_file]
    check_image_output(out)
    check_outputs([out, record_path(out)], inputs, overwrite)
    _check_inversion_file(inversion)
    model = _model_of(inversion) if model is None else model
    m = load_cli_model(model, device=device, dtype=dtype, offload=offload)
    inv = load_inversion(inversion, process=m.process, device=str(m.device))
    _check_fits(inversion, inv, m)
    refuse_guidance(m, "guidance")
    recorded = inv.sampler["sampler"]
    if (
        sampler is not None
        and sampler != recorded
        and not (sampler == "ddpm" and recorded == "ddim" and inv.sampler.get("eta") == 1.0)
    ):
        raise InputError(
            f"--sampler {sampler}: {inversion} was recorded with {recorded}, and its noise maps "
            f"replay only with the rule that recorded them (omit --sampler)"
        )
    m.size = int(inv.x0.shape[-1]) * m.factor  # the inverted image's size
    (tgt,) = m.conditions(target)
    kw = {"cond": tgt, "guidance": guidance, "null_cond": m.null, "skip": skip}
    if color_mask is not None:
        mask = m.load_mask(color_mask, resize)
        color = m.load_image(color_file, resize)
        res = color_edit(
            m.denoiser, inv, m.process, mask=mask, color=color, strength=color_strength, **kw
        )
    else:
        maps = [inv.x_T, *inv.zs]
        if dxdy is not None:
            maps = shift_maps(maps, *dxdy)
        if flip:
            maps = flip_maps(maps)
        if manipulated:
            kw |= {"x_T": maps[0], "zs": maps[1:]}
        res = edit_friendly_regenerate(m.denoiser, inv, m.process, **kw)
    save_image(m.to_image(res.x0)[0].clamp(-1, 1), out)
    write_record(
        out,
        "regenerate",
        started,
        method=res.info.get("method"),
        info=res.info,
        nfe=res.nfe,
        model=m.describe(),
        **m.condition_record("target", target, tgt),
        manipulations={"shift": dxdy, "flip": flip, "color": color_mask is not None},
        seed=None,
    )
    click.echo(f"wrote {out} ({res.nfe} model calls)")


def _check_fits(path: Path, inv, m) -> None:
    """The inversion's maps must have the model's shape: its channels, and for a pixel model its
    image size (a 28×28 inversion does not belong to an 8×8 model, though their processes may
    agree); the maps must be floating point."""
    got, want = tuple(inv.x0.shape[1:]), tuple(m.shape(1)[1:])
    if not inv.x0.is_floating_point():
        raise InputError(f"{path} holds {inv.x0.dtype} maps; an inversion's maps are floating")
    if len(got) != len(want) or got[0] != want[0] or (m.factor == 1 and got != want):
        raise InputError(
            f"{path} holds maps of shape {got}, but {m.name} works on {want}: it was inverted "
            "with another model (pass the inversion's own --model)"
        )
