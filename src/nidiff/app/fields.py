"""The studio's numeric and choice parameters, taken from ``nidiff edit``'s own options.

Every parameter of the page is an option of ``nidiff edit`` (:data:`FROM_CLI`): its help, its
range and its default are read from the click command, so the studio and the command line
cannot drift apart. The studio only tightens what the command line leaves open
(:class:`~nidiff.app.limits.Limits`: ``steps``, draws, seeds the browser can represent) and
splits ``--strength``, whose default depends on the method, into one field per method. On a
model whose :meth:`~nidiff.cli.model.LoadedCli.defaults` differ (Stable Diffusion), the fields
start at the settings of the EF paper, the method the shared inversion serves.

Sliders bound what a page sends, not what a crafted request sends: :func:`validate` checks
every value again on the server, with a message that names the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import click

from .limits import LIMITS, Limits

__all__ = ["FROM_CLI", "Field", "defaults", "fields", "validate"]

#: studio field → (the ``nidiff edit`` option it is, its label in the page).
FROM_CLI: dict[str, tuple[str, str]] = {
    "steps": ("steps", "steps"),
    "seed": ("seed", "seed"),
    "guidance": ("guidance", "guidance (target)"),
    "source_guidance": ("source_guidance", "source guidance (inversion)"),
    "eta": ("eta", "η"),
    "skip": ("skip", "skip (EF, DDIM, Cycle)"),
    "sdedit_strength": ("strength", "SDEdit strength"),
    "diffedit_strength": ("strength", "DiffEdit strength"),
    "factor": ("factor", "ILVR factor"),
    "map_n": ("map_n", "map draws"),
    "map_strength": ("map_strength", "map noise level"),
    "map_mode": ("map_mode", "painted map"),
    "threshold": ("threshold", "DiffEdit threshold"),
    "preserve": ("preserve", "preserve (NGDM)"),
    "cross_replace": ("cross_replace", "P2P cross-attention"),
    "self_replace": ("self_replace", "P2P self-attention"),
    "p2p_mode": ("p2p_mode", "P2P mode"),
}
#: The largest seed a browser's number field carries exactly (JavaScript numbers).
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class Field:
    """One parameter: ``kind`` is ``int``, ``float``, ``bool`` or ``str`` (one of
    ``choices``); numbers lie in ``[lo, hi]`` (``(lo, hi]`` with ``low_open``); ``info`` is
    the command line's help."""

    name: str
    label: str
    kind: type
    lo: float | None = None
    hi: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()
    info: str = ""

    def check(self, value: Any) -> Any:
        """``value`` as ``kind`` if valid; ``ValueError`` naming the field otherwise."""
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{self.label} must be true or false, not {value!r}")
            return value
        if self.kind is str:
            if value not in self.choices:
                raise ValueError(f"{self.label} must be one of {', '.join(self.choices)}")
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{self.label} must be a number, not {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{self.label} must be a finite number, not {value!r}")
        if self.kind is int and value != int(value):
            raise ValueError(f"{self.label} must be a whole number, not {value!r}")
        low = self.lo is not None and (value <= self.lo if self.low_open else value < self.lo)
        if low or (self.hi is not None and value > self.hi):
            raise ValueError(f"{self.label} {value:g} is outside its range {self.range_text()}")
        return self.kind(value)

    def range_text(self) -> str:
        return f"{'(' if self.low_open else '['}{self.lo:g}, {self.hi:g}]"


def fields(limits: Limits = LIMITS) -> tuple[Field, ...]:
    """The fields in :data:`FROM_CLI` order, with ``nidiff edit``'s types, ranges and help,
    capped by ``limits``."""
    from ..cli.edit import edit

    options = {p.name: p for p in edit.params}
    caps = {
        "steps": limits.max_steps,
        "skip": limits.max_steps - 1,
        "seed": MAX_SEED,
        "map_n": limits.max_map_n,
        "factor": 64,
    }
    out = []
    for name, (option, label) in FROM_CLI.items():
        p = options[option]
        info = " ".join(str(p.help or "").split())
        if getattr(p, "is_flag", False):
            out.append(Field(name, label, bool, info=info))
        elif isinstance(p.type, click.Choice):
            out.append(Field(name, label, str, choices=tuple(p.type.choices), info=info))
        else:
            kind = int if isinstance(p.type, click.IntRange) else float
            hi = min(x for x in (p.type.max, caps.get(name)) if x is not None)
            low_open = bool(getattr(p.type, "min_open", False))
            out.append(Field(name, label, kind, p.type.min, hi, low_open, info=info))
    return tuple(out)


def defaults(model_defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every field's start value: ``nidiff edit``'s defaults, overlaid with a model's own
    (``LoadedCli.defaults("ef")``: the EF paper's for Stable Diffusion); ``skip`` is
    ``round(skip fraction × steps)`` and each strength its method's default
    (:func:`nidiff.methods.method_defaults`), as in the CLI."""
    from ..cli.edit import edit
    from ..methods import SKIP_FRAC, method_defaults

    cli = {p.name: p.default for p in edit.params}
    extra = dict(model_defaults or {})
    values = {name: cli[option] for name, (option, _) in FROM_CLI.items()}
    for name in ("steps", "eta", "guidance", "source_guidance"):
        values[name] = extra.get(name, values[name])
    values["skip"] = round(extra.get("skip_frac", SKIP_FRAC) * values["steps"])
    if values["factor"] is None:  # nidiff edit's depends on the image side
        values["factor"] = 4
    for method in ("sdedit", "diffedit"):
        values[f"{method}_strength"] = method_defaults(method, latent=False)["strength"]
    return values


def validate(values: dict[str, Any], limits: Limits = LIMITS) -> dict[str, Any]:
    """Every field of ``values`` checked (:meth:`Field.check`) and ``skip < steps``.

    Raises:
        ValueError: for a missing, ill-typed or out-of-range value, naming the field.
    """
    out = {}
    for f in fields(limits):
        if f.name not in values:
            raise ValueError(f"{f.label} is missing from the request")
        out[f.name] = f.check(values[f.name])
    if out["skip"] >= out["steps"]:
        raise ValueError(f"skip {out['skip']} must be less than steps {out['steps']}")
    return out
