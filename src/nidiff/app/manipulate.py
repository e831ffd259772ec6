"""Edits of the edit-friendly inversion itself (EF Sec. 5): shift, flip and colour, on the
session's cached inversion, so trying manipulations never re-inverts.

Shifting or flipping every map ``{x_T, z_T … z_1}`` moves the regenerated image
(:func:`~nidiff.inversion.shift_maps`, :func:`~nidiff.inversion.flip_maps`; they replace
``x_T``, so they start at step 0). A colour edit (:func:`~nidiff.inversion.color_edit`, EF
eq. 7) pulls the change map's region towards a colour during regeneration. The result is
regenerated into the source (a pure manipulation, with the inversion's own guidance) or into
the target (with the target guidance).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .fields import validate
from .images import grid_shape
from .inputs import Inputs, painted
from .methods import CountedSpace, edit_options, new_call
from .record import write_outcome
from .studio import Outcome, Progress, Result, Studio, inversion_note

__all__ = ["Manipulation", "manipulate"]

FILLS = ("wrap", "band")


@dataclass(frozen=True)
class Manipulation:
    """What to do to the maps: shift by ``dx`` columns right and ``dy`` rows down (``fill``
    the uncovered band by ``"wrap"`` or the paper's ``"band"`` copy), ``flip`` horizontally,
    or, with ``color`` (``#rrggbb``), pull the change map's region towards it with
    ``strength`` (EF's s); regenerate ``into`` ``"source"`` or ``"target"``."""

    dx: Any = 0
    dy: Any = 0
    fill: str = "wrap"
    flip: bool = False
    color: str | None = None
    strength: Any = 0.05
    into: str = "source"

    def checked(self, side: int) -> Manipulation:
        """Itself with whole-number shifts, or ``ValueError`` naming what is wrong."""
        for name in ("dx", "dy"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or v != v or v != int(v):
                raise ValueError(f"{name} must be a whole number of pixels, not {v!r}")
            if abs(v) >= side:
                raise ValueError(f"{name} {v:g} must be smaller than the grid's {side} pixels")
        if self.fill not in FILLS or self.into not in ("source", "target"):
            raise ValueError(f"fill must be one of {FILLS} and into 'source' or 'target'")
        if not isinstance(self.flip, bool):
            raise ValueError("flip must be true or false")
        if self.color is not None:
            if not re.fullmatch(r"#[0-9a-fA-F]{6}", str(self.color)):
                raise ValueError(f"colour {self.color!r} must be #rrggbb")
            if self.dx or self.dy or self.flip:
                raise ValueError("a colour edit cannot be combined with a shift or a flip")
            s = self.strength
            if isinstance(s, bool) or not isinstance(s, int | float) or not 0 <= s <= 1:
                raise ValueError(f"colour strength must be a number in [0, 1], not {s!r}")
        return Manipulation(
            int(self.dx), int(self.dy), self.fill, self.flip, self.color, self.strength, self.into
        )


def manipulate(
    studio: Studio,
    session_id: str,
    inp: Inputs,
    values: dict[str, Any],
    how: Manipulation,
    progress: Progress | None = None,
) -> Outcome:
    """Regenerate the cached inversion of the input with the manipulation ``how``."""
    from ..inversion import color_edit, edit_friendly_regenerate, flip_maps, shift_maps

    started = time.perf_counter()
    p, m = validate(values, studio.limits), studio.m
    how = how.checked(grid_shape(m)[0])
    prep = studio.prepare(inp)
    session = studio.store.get(session_id)
    lam = painted(m, inp.editor) if how.color else None
    out = Outcome(lam=lam, view=prep.view, painted=lam is not None)
    map_kind = None if how.color is None else "computed" if out.lam is None else "painted"
    with session.lock:
        counted = CountedSpace(m.space, _ticker(progress))
        entry, reused = studio.inversion(session, prep, p, p["seed"], counted)
        inv = entry.inversion
        out.inversion = {"reused": reused, "error": entry.error, "calls": entry.calls}
        out.inverted = inv
        ef = edit_options("ef", p)  # EF's own fields: the manipulations regenerate EF's maps
        into = {"cond": prep.tgt, "guidance": ef["guidance"]} if how.into == "target" else {}
        kw = {"null_cond": counted.null_cond(), **into}
        if how.color is not None:
            if out.lam is None:  # no painted map: NGDM's weighting map
                call = new_call(
                    m,
                    counted,
                    prep.x0,
                    (prep.src, prep.tgt),
                    p["seed"],
                    edit_options("ngdm", p),
                )
                out.lam = call.weighting_map().lam
            color = _color_image(m, how.color, studio.outputs.new())
            res = color_edit(
                counted.denoiser,
                inv,
                counted.process,
                mask=out.lam,
                color=color,
                strength=float(how.strength),
                skip=ef["skip"],
                **kw,
            )
            what = f"colour {how.color}"
        else:
            maps = shift_maps([inv.x_T, *inv.zs], how.dx, how.dy, fill=how.fill)
            maps = flip_maps(maps) if how.flip else maps
            res = edit_friendly_regenerate(
                counted.denoiser, inv, counted.process, x_T=maps[0], zs=maps[1:], **kw
            )
            what = f"shift {how.dx},{how.dy}" + (" flipped" if how.flip else "")
        calls = counted.calls
        record = {
            "seed": p["seed"],
            "method": "ef-manipulation",
            "info": res.info,
            "nfe": calls,
            "resolved": {**ef, "manipulation": how.__dict__},
            "map": map_kind,
            "inversion": out.inversion,
        }
        image = m.to_image(res.x0)[0].clamp(-1, 1).float().cpu()
        out.results.append(Result(f"{what} · {calls} calls", image, calls, record))
        studio.count(session, out)
    write_outcome(m, out, prep, studio.outputs.new(), p, "manipulate", started)
    out.message = (
        f"Done in {time.perf_counter() - started:.1f} s: {what}.{inversion_note(out.inversion)}"
    )
    return out


def _color_image(m: Any, color: str, folder: Any) -> Any:
    """A uniform image of ``color`` in the model's space, read the way the model reads any
    image (written as a PNG in the request's folder, then ``m.load_image``: encoded for
    Stable Diffusion)."""
    from PIL import Image

    rgb = tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))
    path = folder / "color.png"
    Image.fromarray(np.full((m.size, m.size, 3), rgb, np.uint8)).save(path)
    return m.load_image(path, True)


def _ticker(progress: Progress | None) -> Any:
    def tick(calls: int) -> None:
        if progress is not None:
            progress(0.5, f"regenerating: {calls} network calls")

    return tick
