"""The studio's actions, free of any web framework: load an input, compute its change map, and
edit it with several methods side by side or with one method over several seeds
(:mod:`nidiff.app.manipulate` adds the inversion's shift, flip and colour edits).

Each action takes the session's id, the request's :class:`~nidiff.app.inputs.Inputs` and its
fields (checked by :func:`~nidiff.app.fields.validate`) and returns an :class:`Outcome`; any
problem with the input is a ``ValueError`` (or the CLI's ``InputError``) whose message
:func:`message_of` turns into the one sentence the page shows. :mod:`nidiff.app.layout` wires
these actions to the page; tests can call them directly.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from torch import Tensor

from .fields import defaults, validate
from .images import editor_value, grid_shape, save_map
from .inputs import Inputs, Prepared, painted, prepare
from .limits import LIMITS, Limits
from .methods import (
    CountedSpace,
    available,
    check,
    edit_options,
    label,
    new_call,
    run_edit,
    stochastic,
    takes_map,
)
from .record import Outputs, safe_stem, write_outcome
from .session import CachedInversion, InversionKey, Session, SessionStore

__all__ = ["Outcome", "Progress", "Result", "Studio", "inversion_note", "message_of"]

log = logging.getLogger("nidiff.app")
#: ``progress(fraction, description)``.
Progress = Callable[[float, str], None]


@dataclass(frozen=True, eq=False)
class Result:
    """One edited image: ``image`` ``(C, H, W)`` in ``[-1, 1]`` at the model's size, its
    ``caption``, the network ``calls`` it ran, and its ``record`` (a JSON-able dict)."""

    caption: str
    image: Tensor
    calls: int
    record: dict[str, Any]


@dataclass(eq=False)
class Outcome:
    """What an action produced: ``results``; ``lam``, the λ that drove NGDM (if any);
    ``inversion``, the first use of the cached inversion (``{"reused", "error", "calls"}``)
    and ``inverted``, that :class:`~nidiff.inversion.Inversion`; the network calls of this
    request and of the session, the inversions the session made; the files written, a
    one-line ``message``, the input's ``view`` and whether a map was ``painted`` (else ``lam``
    is the computed weighting map, shown in the editor)."""

    results: list[Result] = field(default_factory=list)
    lam: Tensor | None = None
    inversion: dict[str, Any] | None = None
    inverted: Any = None
    calls: int = 0
    session_calls: int = 0
    inversions_made: int = 0
    files: list[Path] = field(default_factory=list)
    message: str = ""
    view: Any = None
    painted: bool = False


def message_of(err: BaseException, root: Path | None = None) -> str:
    """The one sentence the page shows for ``err``: the message of an input error (server
    paths under ``root`` removed), or a short note for an internal error (whose traceback goes
    to the server's log)."""
    if isinstance(err, click.ClickException):
        text = err.format_message()
    elif isinstance(err, ValueError | FileNotFoundError | FileExistsError):
        text = str(err)
    else:
        log.error("internal error", exc_info=err)
        text = f"internal error ({type(err).__name__}); the server log has the details"
    if root is not None:
        text = re.sub(re.escape(str(root)) + r"[^\s,;:'\")]*", "the upload", text)
    text = " ".join(text.split()).removeprefix("Error: ")
    return text[:1].upper() + text[1:]


class Studio:
    """The actions of one studio server on one model ``m`` (a
    :class:`~nidiff.cli.model.LoadedCli`), with its temporary folder ``root`` (uploads and
    outputs; nothing is read or written elsewhere) and its ``limits``."""

    def __init__(self, m: Any, root: Path, limits: Limits = LIMITS):
        self.m, self.root, self.limits = m, Path(root), limits
        self.store = SessionStore(limits.max_sessions, limits.cache_entries, limits.cache_bytes)
        self.outputs = Outputs(self.root)
        self.methods = available(m.sd is not None)
        self.defaults = defaults(m.defaults, m.size // m.factor, m.sd is not None)

    @property
    def classes(self) -> list[str] | None:
        """The class names of a class-conditional model (``None`` for text models)."""
        return None if self.m.sd is not None else list(self.m.m.class_names)

    def prepare(self, inp: Inputs, *, conditions: bool = True) -> Prepared:
        """The request's input, read and checked (:func:`~nidiff.app.inputs.prepare`)."""
        return prepare(self.m, inp, self.root, self.limits, conditions=conditions)

    def load(self, inp: Inputs) -> tuple[dict[str, Any], str]:
        """The editor's value for a new input (the image, no map) and a message."""
        prep = self.prepare(inp, conditions=False)
        h, w = grid_shape(self.m)
        return editor_value(prep.view), f"Loaded {prep.name}, edited at the model's {w}×{h}."

    def weighting(self, session_id: str, inp: Inputs, values: dict[str, Any]) -> Outcome:
        """NGDM's weighting map λ of the input: what NGDM computes when no map is painted
        (same seed, same draws)."""
        p, prep = validate(values, self.limits), self.prepare(inp)
        session = self.store.get(session_id)
        with session.lock:
            counted = CountedSpace(self.m.space)
            opts = edit_options("ngdm", p)
            call = new_call(self.m, counted, prep.x0, (prep.src, prep.tgt), p["seed"], opts)
            out = Outcome(lam=call.weighting_map().lam, calls=counted.calls, view=prep.view)
            self.count(session, out)
        folder = self.outputs.new()
        out.files = [save_map(out.lam, folder / f"{safe_stem(prep.name)}-map.png")]
        out.message = f"Computed the weighting map ({out.calls} network call)."
        return out

    def edit(
        self,
        session_id: str,
        inp: Inputs,
        methods: list[str] | None,
        values: dict[str, Any],
        progress: Progress | None = None,
    ) -> Outcome:
        """Edit the input with each of ``methods`` at the fields' seed, side by side."""
        jobs = [(name, 0) for name in self.check_methods(methods)]
        return self._run(session_id, inp, jobs, values, progress, "edit")

    def seeds(
        self,
        session_id: str,
        inp: Inputs,
        method: str,
        count: Any,
        values: dict[str, Any],
        progress: Progress | None = None,
    ) -> Outcome:
        """Edit the input with one stochastic method at ``count`` consecutive seeds from the
        fields' seed (a gallery of what the seed changes)."""
        (method,) = self.check_methods([method])
        if not stochastic(method):
            raise ValueError(f"{label(method)} does not depend on the seed for one input")
        n = self.limits.max_seeds
        if isinstance(count, bool) or count not in range(1, n + 1):  # 2.5, "3", None: not in
            raise ValueError(f"the number of seeds must be a whole number from 1 to {n}")
        jobs = [(method, i) for i in range(int(count))]
        return self._run(session_id, inp, jobs, values, progress, "seeds")

    def check_methods(self, methods: list[str] | None) -> list[str]:
        """``methods`` if every one is a method of this model; ``ValueError`` otherwise."""
        methods = list(methods or [])
        if not methods:
            raise ValueError("no method chosen: tick at least one")
        for name in methods:
            if name not in self.methods:
                known = ", ".join(self.methods)
                raise ValueError(f"{name!r} is not a method of this model ({known})")
        return methods

    def _run(self, session_id, inp, jobs, values, progress, kind) -> Outcome:
        """Run ``jobs`` (``(method, seed offset)``) on one input, write their files."""
        started = time.perf_counter()
        p, prep = validate(values, self.limits), self.prepare(inp)
        lam = painted(self.m, inp.editor)
        for name, _ in jobs:
            check(self.m.space, name, prep.source, prep.target, edit_options(name, p))
        session = self.store.get(session_id)
        out = Outcome(lam=None, view=prep.view, painted=lam is not None)
        with session.lock:
            for k, (name, offset) in enumerate(jobs):
                seed = p["seed"] + offset
                title = label(name) if kind == "edit" else f"seed {seed}"
                tick = _ticker(progress, k, len(jobs), title)
                job = (name, seed, title)
                out.results.append(self._one(session, prep, job, p, lam, out, tick))
            self.count(session, out)
        write_outcome(self.m, out, prep, self.outputs.new(), p, kind, started)
        inv = out.inversion
        note = "" if inv is None else inversion_note(inv)
        done = ", ".join(r.caption for r in out.results)
        out.message = f"Done in {time.perf_counter() - started:.1f} s: {done}.{note}"
        return out

    def _one(self, session, prep, job, p, lam, out, tick) -> Result:
        """One method at one seed (``job = (method, seed, label)``), with the painted ``lam``
        (or its own weighting map) and the inversion from the session's cache."""
        name, seed, title = job
        opts = edit_options(name, p)
        counted = CountedSpace(self.m.space, tick)
        used: dict[str, Any] = {}

        def invert() -> Any:
            entry, reused = self.inversion(session, prep, p, seed, counted)
            used.update(reused=reused, error=entry.error, calls=entry.calls)
            if out.inversion is None:
                out.inversion, out.inverted = dict(used), entry.inversion
            return entry.inversion

        lam = lam if takes_map(name) else None
        call = new_call(
            self.m,
            counted,
            prep.x0,
            (prep.src, prep.tgt),
            seed,
            opts,
            prompts=(prep.source, prep.target),
            invert=invert,
            user_map=lam,
        )
        res = run_edit(call, name)
        calls = res.nfe if name == "p2p" else counted.calls  # P2P runs the pipeline's own UNet
        if takes_map(name) and out.lam is None:  # the λ that drove the first NGDM method
            out.lam = res.lam
        record = {
            "seed": seed,
            "method": name,
            "info": res.info,
            "nfe": calls,
            "resolved": opts,
            "map": _map_kind(lam is not None, bool(call.maps)),
            "inversion": used or None,
        }
        image = self.m.to_image(res.x0)[0].clamp(-1, 1).float().cpu()
        return Result(f"{title} · {calls} calls", image, calls, record)

    def inversion(
        self, session: Session, prep: Prepared, p: dict[str, Any], seed: int, counted: Any
    ) -> tuple[CachedInversion, bool]:
        """The session's edit-friendly inversion of the input (made by the registry's
        :meth:`~nidiff.methods.EditCall.ef_invert` through ``counted`` if not cached, with its
        reconstruction error) and whether it was reused."""
        from ..inversion import edit_friendly_regenerate

        src = json.dumps(self.m.condition_record("source", prep.source, prep.src))
        opts = edit_options("ef", p)
        key = InversionKey(
            prep.digest, self.m.name, src, p["steps"], seed, p["source_guidance"], opts["eta"],
            opts.get("sampler"),
        )  # fmt: skip
        reused = key in session.cache

        def make() -> CachedInversion:
            before = counted.calls
            inv = new_call(self.m, counted, prep.x0, (prep.src, None), seed, opts).ef_invert()
            back = edit_friendly_regenerate(
                counted.denoiser, inv, counted.process, null_cond=counted.null_cond()
            )
            error = float((back.x0 - prep.x0).abs().max())
            return CachedInversion(inv, error, counted.calls - before)

        return session.cache.get(key, make), reused

    def count(self, session: Session, out: Outcome) -> None:
        """Add ``out``'s network calls to the session's and note the session's totals."""
        out.calls = out.calls or sum(r.calls for r in out.results)
        session.calls += out.calls
        out.session_calls, out.inversions_made = session.calls, session.cache.made


def _ticker(progress: Progress | None, k: int, n: int, label: str) -> Callable[[int], None]:
    def tick(calls: int) -> None:
        if progress is not None:
            progress(k / n, f"{label} ({k + 1}/{n}): {calls} network calls")

    return tick


def inversion_note(inv: dict[str, Any]) -> str:
    """What the status line says of the inversion an action used."""
    state = "reused" if inv["reused"] else "computed"
    return f" EF inversion {state}; reconstruction error max|x̂₀ − x₀| = {inv['error']:.1e}."


def _map_kind(painted: bool, computed: bool) -> str | None:
    """Which map drove NGDM: ``painted``, ``computed`` or both (``map_mode = multiply``)."""
    kinds = {(True, False): "painted", (False, True): "computed", (True, True): "painted×computed"}
    return kinds.get((painted, computed))
