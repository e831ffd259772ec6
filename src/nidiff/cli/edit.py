"""``nidiff edit``: edit one image from a source to a target class or prompt with one editing
method (the methods' table is :data:`nidiff.cli.methods.METHODS`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from .._checks import check_skip
from ..methods import (
    METHODS,
    OPTION_NAMES,
    STROKES_EP,
    check_conditions,
    check_options,
    default_factor,
)
from .batch import is_batch, on_error_option, read_rows, report_failures, run_rows, shard_of_env
from .common import (
    GUIDANCE,
    InputError,
    check_image_file,
    check_image_output,
    check_outputs,
    device_options,
    eta_option,
    guidance_option,
    input_errors,
    model_grid,
    model_option,
    negative_prompt_options,
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
    write_record,
)
from .edit_options import EPILOG, method_options, pixel_defaults
from .methods import check_method, run_method
from .model import LoadedCli, load_cli_model

__all__ = ["METHODS", "edit", "run_method"]


@click.command("edit", epilog=EPILOG)
@click.argument("image", type=click.Path(path_type=Path))
@click.option(
    "--method",
    type=click.Choice(list(METHODS)),
    default="ngdm",
    show_default=True,
    help="; ".join(f"{n}: {m.about}" if m.about else n for n, m in METHODS.items()),
)
@click.option(
    "--source",
    "-s",
    type=str,
    default=None,
    help="class or prompt the image shows (CSV: per row); sdedit, ilvr, strokes and ngdm/ngdm-ef "
    "with --map need none, and a model trained on an image folder (unconditional) takes none",
)
@click.option(
    "--target",
    "-t",
    type=str,
    default=None,
    help="class or prompt to edit into (CSV: per row); none for an unconditional model, whose "
    "sdedit, ilvr, strokes and ngdm/ngdm-ef with --map regenerate unguided",
)
@model_option
@device_options
@offload_option
@negative_prompt_options
@size_option
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=50,
    show_default="50; Stable Diffusion ef: 100; SD3/FLUX: 28",
    help="steps of the leading time grid",
)
@shift_grid_option
@seed_option
@guidance_option(
    3.0,
    "classifier-free guidance scale of the target (pixel models: "
    + pixel_defaults("guidance")
    + ", the editing benchmark's, else 3; unconditional models: 1, none; Stable Diffusion: 7.5; ef "
    "15, "
    "p2p 9; SDXL 5, SD3 7; FLUX.1-dev: its distilled guidance, 3.5)",
)
@click.option(
    "--source-guidance",
    type=GUIDANCE,
    default=1.0,
    show_default=True,
    help="guidance scale of the inversion (ef, ngdm-ef, ddim, cycle; Stable Diffusion ef, SDXL, "
    "SD3: 3.5; FLUX: 1.5)",
)
@eta_option(
    "η of the stochastic steps (ngdm, ef, ngdm-ef, sdedit, ilvr, cycle, strokes; ef/cycle need "
    "η > 0)"
)
@sampler_option(
    "step rule (ngdm, ef, ngdm-ef, sdedit, ilvr, strokes); ef and ngdm-ef need a stochastic one"
)
@method_options
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    show_default="IMAGE-METHOD.png here; batch: the folder edits",
    help="edited image, format from the extension (.png, .jpg, .webp, .bmp, .tif; batch: a "
    "folder of PNGs); the record goes to OUT.json",
)
@click.option(
    "--save-map",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="write the λ map (ngdm, ngdm-ef) or mask (diffedit) as a grey image (Stable Diffusion: "
    "at latent resolution)",
)
@click.option(
    "--save-painting",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="strokes: write the painting the edit started from as an image",
)
@click.option(
    "--resize",
    is_flag=True,
    default=False,
    show_default=True,
    help="resize an image of another size (centre crop + bicubic); implied for Stable Diffusion",
)
@on_error_option
@quiet_option
@overwrite_option
@input_errors
def edit(
    image: Path,
    method: str,
    source: str | None,
    target: str | None,
    model: str,
    device: str,
    dtype: str,
    offload: bool,
    negative_prompt: str | None,
    true_cfg: float | None,
    size: int | None,
    steps: int,
    grid_shift: float,
    seed: int,
    guidance: float,
    source_guidance: float,
    eta: float,
    sampler: str | None,
    skip: int | None,
    strength: float | None,
    factor: int | None,
    clusters: int | None,
    stroke_blur: float | None,
    painting_file: Path | None,
    map_n: int,
    map_strength: float,
    map_file: Path | None,
    map_mode: str,
    threshold: float,
    preserve: bool,
    cross_replace: float,
    self_replace: float,
    p2p_mode: str,
    reweight: tuple[str, ...],
    feature_replace: float,
    xa_guidance: float | None,
    noise_reg_steps: int,
    inversion_steps: int,
    out: Path | None,
    save_map: Path | None,
    save_painting: Path | None,
    resize: bool,
    on_error: str,
    quiet: bool,
    overwrite: bool,
) -> None:
    """Edit IMAGE from SOURCE into TARGET; writes OUT and OUT.json.

    SOURCE and TARGET are class names for the bundled (class-conditional) models and text
    prompts for a Stable Diffusion pipeline directory (--model), whose methods run on VAE
    latents (maps at latent resolution) with the pipeline's own schedule. A model trained on
    an image folder is unconditional: it takes neither, and runs sdedit, ilvr, strokes, and
    ngdm/ngdm-ef with --map, unguided (EF reconstruction and manipulations: `nidiff invert`,
    `regenerate`).

    Batch mode: IMAGE may be a folder of images (every one edited from SOURCE to TARGET) or a
    CSV file of `image,source,target` rows (paths relative to the CSV; a header row is
    allowed); OUT is then a folder (default `edits`) receiving IMAGE-METHOD-TARGET.png and its
    record per row. Rows whose record exists are skipped (re-runs resume); under torchrun
    (RANK, WORLD_SIZE) each process takes rows[rank::world]. Row i uses seed SEED + i.
    """
    started = time.perf_counter()
    check_options(method, {name for name in OPTION_NAMES if option_given(name)})
    if save_map is not None and not METHODS[method].has_map:
        with_map = ", ".join(n for n, m in METHODS.items() if m.has_map)
        raise InputError(f"--save-map needs a method with a map ({with_map}), not {method}")
    given = {
        "steps": steps, "grid_shift": grid_shift, "guidance": guidance,
        "source_guidance": source_guidance,
        "eta": eta if sampler is None or option_given("eta") else None, "sampler": sampler,
        "skip": skip, "strength": strength, "factor": factor, "map_n": map_n,
        "map_strength": map_strength, "map_mode": map_mode, "threshold": threshold,
        "preserve": preserve,
        "cross_replace": cross_replace, "self_replace": self_replace, "p2p_mode": p2p_mode,
        "reweight": _reweights(reweight), "feature_replace": feature_replace,
        "xa_guidance": xa_guidance, "noise_reg_steps": noise_reg_steps,
        "inversion_steps": inversion_steps, "clusters": clusters, "stroke_blur": stroke_blur,
    }  # fmt: skip
    _check_painting_options(method, painting_file, save_painting)
    if map_file is not None and not METHODS[method].takes_user_map:
        takers = ", ".join(n for n, m in METHODS.items() if m.takes_user_map)
        raise InputError(f"--map applies to --method {takers}, not {method}")
    if skip is not None and METHODS[method].skips:
        input_errors(check_skip)(skip, steps, "--skip", "--steps")
    load = {"device": device, "dtype": dtype, "size": size, "offload": offload,
            "negative_prompt": negative_prompt, "true_cfg": true_cfg}  # fmt: skip
    if is_batch(image):
        if any(p is not None for p in (save_map, map_file, painting_file, save_painting)):
            raise InputError(
                "--save-map, --map, --painting and --save-painting are for one image, not batch "
                "mode"
            )
        folder = Path("edits") if out is None else out
        rows = read_rows(image, source, target, folder, method, require=())
        run = (seed, resize, overwrite, on_error, quiet)
        _run_batch(rows, folder, method, model, load, run, given)
        return
    if option_given("on_error"):
        raise InputError("--on-error applies to batch mode (IMAGE a folder or a CSV file)")
    out = out if out is not None else Path(f"{image.stem}-{method}.png")
    check_image_output(out)
    check_image_output(save_map, "--save-map")
    check_image_output(save_painting, "--save-painting")
    check_outputs(
        [out, record_path(out), save_map, save_painting],
        [image, map_file, painting_file],
        overwrite,
    )
    if map_file is not None:
        _check_map(map_file, image)
    if painting_file is not None:
        _check_painting(painting_file, image)
    m = load_cli_model(model, **load)
    _check_model(m, method)
    _check_conditions(m, method, {r for r, v in (("source", source), ("target", target)) if v},
                      user_map=map_file is not None, map_mode=map_mode)  # fmt: skip
    opts = resolve_options(m, method, given)
    check_method(m, method, source, target, **opts)
    model_grid(m, opts["steps"], grid_shift)  # a grid that cannot be: exit 2 before any work
    x0 = m.load_image(image, resize)
    user_map = None if map_file is None else m.load_mask(map_file, resize)
    painting = None if painting_file is None else m.load_image(painting_file, resize)
    src, tgt = m.conditions(source, target)
    conds = (source, target, src, tgt)
    maps = (save_map, map_file, user_map)
    paint = (save_painting, painting_file, painting)
    calls = opts["steps"] * (1 + METHODS[method].inverts)  # an estimate; the bar ends at the count
    with progress_bar(calls, f"edit {method}", quiet, unit="call") as bar:
        nfe = _edit_one(m, x0, conds, out, maps, method, seed, opts, started, {}, bar.update,
                        paint)  # fmt: skip
    click.echo(f"wrote {out} ({method}, {nfe} model calls)")


def _reweights(items: tuple[str, ...]) -> tuple[tuple[str, float], ...]:
    """``--reweight WORD=FACTOR`` items as ``((word, factor), ...)``."""
    pairs = []
    for item in items:
        word, sep, factor = item.rpartition("=")
        try:
            value = float(factor)
        except ValueError:
            value = float("nan")
        if not sep or not word.strip() or not value >= 0:
            raise InputError(f"--reweight {item!r}: expected WORD=FACTOR with FACTOR >= 0")
        pairs.append((word.strip(), value))
    return tuple(pairs)


def _check_model(m: LoadedCli, method: str) -> None:
    if METHODS[method].text_only and m.sd is None:
        raise InputError(
            f"--method {method} needs {METHODS[method].needs}; {m.name} is a pixel model"
        )


def _check_conditions(m: LoadedCli, method: str, given: set[str], **maps: Any) -> None:
    """The registry's policy of which conditions ``method`` needs on this model
    (:func:`nidiff.methods.check_conditions`), and no guidance on an unconditional model."""
    input_errors(check_conditions)(
        method, conditional=m.conditional, given=given, model=m.name, **maps
    )
    refuse_guidance(m, "guidance", "source_guidance")


#: Options whose default is a paper's setting of the method (the papers' tables in
#: :mod:`nidiff.methods`), not the command line's.
_PAPER_OPTIONS = ("self_replace", "feature_replace", "xa_guidance", "noise_reg_steps",
                  "inversion_steps")  # fmt: skip


def resolve_options(m: LoadedCli, method: str, given: dict[str, Any]) -> dict[str, Any]:
    """The options of one run: the model's defaults for ``method`` (the EF paper's for Stable
    Diffusion) where the user gave none, then ``skip`` and ``strength`` from their rules."""
    opts = dict(given)
    defaults = m.defaults(method)
    for name in ("steps", "eta", "guidance", "source_guidance", *_PAPER_OPTIONS):
        if name in defaults and not option_given(name):
            opts[name] = defaults[name]
    if opts["skip"] is None:
        opts["skip"] = round(defaults["skip_frac"] * opts["steps"])
    if METHODS[method].skips:
        input_errors(check_skip)(opts["skip"], opts["steps"], "--skip", "--steps")
    if opts["strength"] is None:
        opts["strength"] = defaults["strength"]
    if opts["factor"] is None:
        side = m.size // m.factor
        frac = defaults.get("factor_frac")
        opts["factor"] = 4 if frac is None else default_factor(side, frac)
    for name in ("clusters", "stroke_blur"):  # strokes: nidiff bench edge's (STROKES_EP)
        if opts.get(name) is None:
            opts[name] = defaults.get(name, STROKES_EP[name])
    return opts


def _check_painting_options(method: str, painting: Path | None, save: Path | None) -> None:
    """``--painting`` and ``--save-painting`` are for ``strokes``; a given painting takes no
    ``--clusters`` or ``--stroke-blur`` (they make the painting from IMAGE)."""
    for flag, value in (("--painting", painting), ("--save-painting", save)):
        if value is not None and method != "strokes":
            raise InputError(f"{flag} applies to --method strokes, not {method}")
    made = [f"--{n.replace('_', '-')}" for n in ("clusters", "stroke_blur") if option_given(n)]
    if painting is not None and made:
        raise InputError(
            f"{' and '.join(made)} {'make' if len(made) > 1 else 'makes'} the painting from "
            f"IMAGE; with --painting {painting} "
            "there is none to make (leave them out)"
        )


def _check_painting(path: Path, image: Path) -> None:
    """``--painting`` must be an image of IMAGE's size (it is read, and resized, as IMAGE is)."""
    (pw, ph), (iw, ih) = check_image_file(path), check_image_file(image)
    if (pw, ph) != (iw, ih):
        raise InputError(
            f"--painting {path} is {pw}×{ph}, IMAGE {image} is {iw}×{ih}: a painting must have "
            "the image's size"
        )


def _check_map(path: Path, image: Path) -> None:
    """``--map`` must be an image of IMAGE's aspect (it is centre-cropped and resized as the
    image is, so a map of another aspect would cover another part of it)."""
    (mw, mh), (iw, ih) = check_image_file(path), check_image_file(image)
    if abs(mw * ih - iw * mh) > 0.01 * iw * mh:
        raise InputError(
            f"--map {path} is {mw}×{mh}, IMAGE {image} is {iw}×{ih}: a change map must have the "
            "image's aspect ratio (it is cropped and resized as the image is)"
        )


def _edit_one(
    m, x0, conds, out, maps, method, seed, opts, started, row, tick=None, paint=(None,) * 3
) -> int:
    """Edit one image, write it (and its map or painting) and its record; returns the model
    calls (``tick(calls)`` after each model call).

    ``conds`` is ``(source, target, source_cond, target_cond)``: names and model conditions;
    ``maps`` is ``(save_map, map_file, user_map)``: where λ goes, the ``--map`` file and the
    map read from it (or ``None``s); ``paint`` the same for strokes' painting
    (``--save-painting``, ``--painting`` and the painting read from it).
    """
    from ..imageio import save_image

    source, target, src, tgt = conds
    save_map, map_file, user_map = maps
    save_painting, painting_file, painting = paint
    res, extra_nfe = run_method(
        m, x0, method, src, tgt, seed=seed, names=(source, target), user_map=user_map,
        painting=painting, tick=None if tick is None else lambda calls: tick(1), **opts,
    )  # fmt: skip
    save_image(m.to_image(res.x0)[0].clamp(-1, 1), out)
    if save_map is not None:
        save_image(res.lam[0][:1].float() * 2 - 1, save_map)
    if save_painting is not None:
        save_image(m.to_image(res.painting)[0].clamp(-1, 1), save_painting)
    write_record(
        out, "edit", started, seed=seed, method=method, info=res.info,
        nfe=res.nfe + extra_nfe, resolved=opts, model=m.describe(), row=row,
        **m.condition_record("source", source, src), **m.condition_record("target", target, tgt),
        outputs={"image": str(out), "map": None if save_map is None else str(save_map),
                 "painting": None if save_painting is None else str(save_painting)},
        map=None if map_file is None else str(map_file),
        painting=None if painting_file is None else str(painting_file),
    )  # fmt: skip
    return res.nfe + extra_nfe


def _run_batch(rows, folder, method, model, load, run, given) -> None:
    """Edit this process's shard of ``rows``; every row is checked before any is edited, a bad
    one skipped and reported (exit 1) or stopping the batch (``--on-error``, :func:`run_rows`).

    ``run`` is ``(seed, resize, overwrite, on_error, quiet)``."""
    seed, resize, overwrite, on_error, quiet = run
    rank, world = shard_of_env()
    # a row is done once its record (written last) exists
    mine = [r for r in rows[rank::world] if overwrite or not record_path(r.out).exists()]
    done = len(rows[rank::world]) - len(mine)
    check_outputs([r.out for r in mine], [r.image for r in rows], overwrite=True)
    m = load_cli_model(model, **load)
    _check_model(m, method)
    for r in rows:  # every row's conditions, before any row is edited
        try:
            _check_conditions(m, method, r.given)
        except InputError as err:
            raise InputError(f"row {r.index + 1} ({r.image}): {err.message}") from err
    opts = resolve_options(m, method, given)
    model_grid(m, opts["steps"], opts["grid_shift"])  # before any row is edited

    def prepare(r):
        check_method(m, method, r.source, r.target, **opts)
        x0 = m.load_image(r.image, resize)
        return x0, (r.source, r.target, *m.conditions(r.source, r.target))

    def edit_row(r, item):
        row = {"index": r.index, "image": str(r.image), "source": r.source, "target": r.target,
               "rank": rank, "world_size": world}  # fmt: skip
        maps = (None, None, None)
        _edit_one(m, *item, r.out, maps, method, seed + r.index, opts, time.perf_counter(), row)

    label = f"edit {method} (rank {rank}/{world}, {done} done before)"
    edited, failures = run_rows(
        mine, prepare, edit_row, on_error=on_error, label=label, quiet=quiet
    )
    click.echo(f"wrote {edited} edits to {folder} ({done} already there)")
    report_failures(failures, len(mine))
