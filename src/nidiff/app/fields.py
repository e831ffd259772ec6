"""The studio's numeric and choice parameters, taken from ``nidiff edit``'s own options.

Every parameter of the page is an option of ``nidiff edit`` (:data:`FROM_CLI`): its help, its
range and its default are read from the click command, so the studio and the command line
cannot drift apart. The studio only tightens what the command line leaves open
(:class:`~nidiff.app.limits.Limits`: ``steps``, draws, seeds the browser can represent).

**Per-method defaults.** Where the registry gives a method a default of its own (``nidiff
edit``'s ``--strength``, ``--skip``, ``--guidance``, ``--self-replace``, ``--xa-guidance``
on pixel models or some pipeline family), the method has a field of its own
(:data:`PER_METHOD`, e.g. ``ef_skip``, ``ngdm_ef_guidance``, ``pnp_self_replace``); the
others read the shared field (``skip``, ``guidance``, ...), started at the value most of them
share (:mod:`nidiff.app.per_method`). Every field starts where ``nidiff edit`` starts the
option for the model (:meth:`~nidiff.cli.model.LoadedCli.defaults`): one home for the policy.
``steps``, ``eta`` and ``source_guidance`` start at EF's (on Stable Diffusion the EF paper's:
the inversion the page reuses); the manipulations regenerate EF's maps with EF's fields.
:func:`option_field` says which field an option of a method reads, :func:`used_by` whether
any of a model's methods reads a field (the page hides the others).

Sliders bound what a page sends, not what a crafted request sends: :func:`validate` checks
every value again on the server, with a message that names the field.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from ..methods import COMMON, METHODS, EditOptions
from .limits import LIMITS, Limits
from .per_method import per_method_fields, runnable, start_values

__all__ = [
    "FROM_CLI", "OWN", "PER_METHOD", "SKIP_FIELDS", "Field", "defaults", "fields", "follow_steps",
    "option_field", "used_by", "validate",
]  # fmt: skip

#: Per-method field → (method, option) (:mod:`nidiff.app.per_method`), e.g. ``ef_skip``,
#: ``ngdm_ef_guidance``, ``pnp_self_replace``.
PER_METHOD: dict[str, tuple[str, str]] = per_method_fields()
#: studio field → (the ``nidiff edit`` option it is, its label in the page).
FROM_CLI: dict[str, tuple[str, str]] = {
    "steps": ("steps", "steps"),
    "seed": ("seed", "seed"),
    "guidance": ("guidance", "guidance (target, other methods)"),
    "source_guidance": ("source_guidance", "source guidance (inversion)"),
    "eta": ("eta", "η"),
    "skip": ("skip", "skip (other methods)"),
    "strength": ("strength", "strength (other methods)"),
    "factor": ("factor", "ILVR factor"),
    **{
        name: (option, f"{METHODS[method].label} {option.replace('_', ' ')}")
        for name, (method, option) in PER_METHOD.items()
    },
    "sampler": ("sampler", "sampler"),
    "map_n": ("map_n", "map draws"),
    "map_strength": ("map_strength", "map noise level"),
    "map_mode": ("map_mode", "painted map"),
    "threshold": ("threshold", "DiffEdit threshold"),
    "clusters": ("clusters", "strokes: painting's grey levels"),
    "stroke_blur": ("stroke_blur", "strokes: blur before k-means"),
    "preserve": ("preserve", "preserve (NGDM)"),
    "cross_replace": ("cross_replace", "P2P cross-attention"),
    "self_replace": ("self_replace", "self-attention injection (other methods)"),
    "p2p_mode": ("p2p_mode", "P2P mode"),
    "feature_replace": ("feature_replace", "PnP feature injection"),
    "xa_guidance": ("xa_guidance", "Zero-Shot cross-attention guidance (other methods)"),
    "noise_reg_steps": ("noise_reg_steps", "Zero-Shot (DDIM) noise regularisation"),
    "inversion_steps": ("inversion_steps", "PnP (DDIM) inversion steps"),
}
#: The fields that count skipped steps (``nidiff edit``'s ``--skip``): they follow ``steps``.
SKIP_FIELDS = tuple(name for name, (option, _) in FROM_CLI.items() if option == "skip")
#: The choice that stands for a command-line default of ``None`` (``--sampler``: the model's
#: own rule); :func:`validate` gives ``None`` for it.
OWN = "model's own"
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
            if value == OWN and OWN in self.choices:
                return None
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


@functools.cache  # read once per Limits: every request's validate uses them
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
        "factor": 64,  # the slider's top: the command line has none
        "clusters": 32,
        "stroke_blur": 8.0,
        "xa_guidance": 1.0,
        "noise_reg_steps": 20,
        "inversion_steps": 1000,  # PnP's own (DDIM inversion: one call a step)
    }
    out = []
    for name, (option, label) in FROM_CLI.items():
        p = options[option]
        cap = caps.get(option)
        info = " ".join(str(p.help or "").split())
        if getattr(p, "is_flag", False):
            out.append(Field(name, label, bool, info=info))
        elif isinstance(p.type, click.Choice):
            own = (OWN,) if p.default is None else ()
            choices = own + tuple(p.type.choices)
            out.append(Field(name, label, str, choices=choices, info=info))
        else:
            kind = int if isinstance(p.type, click.IntRange) else float
            hi = min(x for x in (p.type.max, cap) if x is not None)
            low_open = bool(getattr(p.type, "min_open", False))
            out.append(Field(name, label, kind, p.type.min, hi, low_open, info=info))
    return tuple(out)


def option_field(method: str, option: str) -> str:
    """The field ``option`` of ``method`` reads: its own (:data:`PER_METHOD`) or the shared
    one named as the option."""
    own = f"{method.replace('-', '_')}_{option}"
    return own if own in PER_METHOD else option


def used_by(name: str, methods: list[str]) -> bool:
    """Whether one of ``methods`` reads field ``name`` (its own, or a shared one it has no own
    field for)."""
    if name in PER_METHOD:
        return PER_METHOD[name][0] in methods
    option = FROM_CLI[name][0]
    if option in COMMON or option == "seed":
        return True
    return any(
        (option in METHODS[m].options or option == "guidance") and option_field(m, option) == name
        for m in methods
    )


def defaults(
    model_defaults: Callable[[str], dict[str, Any]] | None = None,
    side: int = 28,
    text_model: bool = False,
) -> dict[str, Any]:
    """Every field's start value for a model: ``nidiff edit``'s defaults, overlaid with the
    model's own (``model_defaults(method)``, i.e. ``LoadedCli.defaults``; ``None``: the
    registry's pixel defaults), resolved as ``nidiff edit`` resolves them
    (:func:`~nidiff.app.per_method.start_values`): ``steps``, ``eta`` and
    ``source_guidance`` EF's, each shared field the value most methods share, each per-method
    field its method's (module docs). ``side``: the image side (ILVR's factor)."""
    from ..cli.edit import edit
    from ..methods import method_defaults

    if model_defaults is None:

        def model_defaults(method: str) -> dict[str, Any]:
            return method_defaults(method, latent=False)

    cli = {p.name: p.default for p in edit.params}
    values = {name: cli[option] for name, (option, _) in FROM_CLI.items()}
    for f in fields():
        if f.kind is str and values[f.name] is None:  # the command line's None: OWN
            values[f.name] = OWN
    ef = model_defaults("ef")
    for name in ("steps", "eta", "source_guidance"):
        values[name] = ef.get(name, values[name])
    values |= start_values(model_defaults, text_model, PER_METHOD, cli, values["steps"], side)
    for name, (option, _) in FROM_CLI.items():
        if values[name] is None:  # an option the registry resolves per model (e.g. strokes')
            readers = (model_defaults(m) for m in runnable(text_model) if option in
                       METHODS[m].options)  # fmt: skip
            own = (d[option] for d in readers if option in d)  # else EditOptions' own
            values[name] = next(own, getattr(EditOptions(), option))
    return values


def follow_steps(skips: dict[str, int], old: int, new: int) -> dict[str, int]:
    """The skip fields when the page's steps go from ``old`` to ``new``: each keeps its
    fraction of the steps, ``round(skip × new / old)`` (how ``nidiff edit`` resolves a skip
    fraction), and stays below ``new``, so a default that was valid stays valid."""
    return {name: max(0, min(round(k * new / old), new - 1)) for name, k in skips.items()}


def validate(values: dict[str, Any], limits: Limits = LIMITS) -> dict[str, Any]:
    """Every field of ``values`` checked (:meth:`Field.check`) and ``skip < steps``.

    Raises:
        ValueError: for a missing, ill-typed or out-of-range value, naming the field.
    """
    out, checked = {}, fields(limits)
    for f in checked:
        if f.name not in values:
            raise ValueError(f"{f.label} is missing from the request")
        out[f.name] = f.check(values[f.name])
    for f in checked:
        if f.name in SKIP_FIELDS and out[f.name] >= out["steps"]:
            raise ValueError(
                f"skip {out[f.name]} ({f.label}) must be less than steps {out['steps']}"
            )
    return out
