"""Which of the studio's fields belong to one method: wherever the registry gives a method a
default of its own.

``nidiff edit`` resolves some options per method (:func:`nidiff.methods.method_defaults`): on
pixel models the editing benchmark's choices (NGDM's strength 0.7, EF's skip 0.4 of the steps,
...), on pipelines the papers' (EF 15 guidance and skip 0.36, P2P 9 and 0.12, PnP's
self-attention 0.5, Zero-Shot's cross-attention guidance, ...). The page shows all methods side
by side from one set of fields, so for each such option (:data:`OPTION_OF`):

* in each **regime** (pixel models; each pipeline family), the methods that can run there and
  read the option (:func:`reads`) mostly share one default: that is the **shared field**'s
  (``skip``, ``guidance``, ...);
* a method whose default differs from it in some regime gets a field of its own,
  ``{method}_{option}`` (:func:`per_method_fields`, e.g. ``ef_skip``, ``pnp_self_replace``),
  started at its own default for the model the studio serves.

``steps``, ``eta`` and ``source_guidance`` stay shared and start at EF's (the inversion every
edit of the page reuses). :func:`start_values` gives the start values for a model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from ..methods import METHODS, EditOptions, default_factor, method_defaults

__all__ = ["OPTION_OF", "per_method_fields", "reads", "start_values"]

#: A key of the registry's defaults → the ``nidiff edit`` option it sets.
OPTION_OF = {"strength": "strength", "skip_frac": "skip", "guidance": "guidance",
             "factor_frac": "factor", "self_replace": "self_replace",
             "xa_guidance": "xa_guidance"}  # fmt: skip
Defaults = Callable[[str], dict[str, Any]]


def reads(method: str, option: str) -> bool:
    """Whether ``option`` applies to ``method`` (guidance applies to every method)."""
    return option == "guidance" or option in METHODS[method].options


def runnable(text_model: bool) -> list[str]:
    """The methods of a text-to-image pipeline (``text_model``) or of a pixel model."""
    return [n for n, m in METHODS.items() if not (m.pixel_only if text_model else m.text_only)]


def _own(defaults_of: Defaults, methods: list[str]) -> dict[str, dict[str, Any]]:
    """method → {option: its default (``None``: the command line's own)} of what it reads."""
    out = {}
    for method in methods:
        d = defaults_of(method)
        out[method] = {o: d.get(k) for k, o in OPTION_OF.items() if reads(method, o)}
    return out


def _shared(own: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """option → the default most of the methods reading it share (ties: the registry's
    first)."""
    out = {}
    for option in OPTION_OF.values():
        values = [d[option] for d in own.values() if option in d]
        if values:
            out[option] = Counter(values).most_common(1)[0][0]
    return out


def _regimes() -> list[tuple[Defaults, bool]]:
    from ..models.families import FAMILIES

    out: list[tuple[Defaults, bool]] = [(lambda m: method_defaults(m, latent=False), False)]
    for family in FAMILIES:
        out.append((lambda m, f=family: method_defaults(m, latent=True, family=f), True))
    return out


def _any_default(option: str, method: str | None) -> Any:
    """A default the registry gives ``option`` in some regime, ``method``'s first (for a field
    no method of this model reads: hidden, but checked like the others)."""
    key = next(k for k, o in OPTION_OF.items() if o == option)
    methods = [method] if method is not None else []
    methods += [m for m in METHODS if reads(m, option)]
    for m in methods:
        for defaults_of, _ in _regimes():
            if defaults_of(m).get(key) is not None:
                return defaults_of(m)[key]
    raise ValueError(f"no method has a default for {option}")


def per_method_fields() -> dict[str, tuple[str, str]]:
    """Per-method field → (method, option), grouped by option in :data:`OPTION_OF` order and
    by method in the registry's: one wherever a method's default differs from the shared one
    in some regime (module docs)."""
    own_fields: set[tuple[str, str]] = set()
    for defaults_of, text_model in _regimes():
        own = _own(defaults_of, runnable(text_model))
        shared = _shared(own)
        own_fields |= {(m, o) for m, d in own.items() for o, v in d.items() if v != shared[o]}
    return {
        f"{m.replace('-', '_')}_{o}": (m, o)
        for o in OPTION_OF.values()
        for m in METHODS
        if (m, o) in own_fields
    }


def start_values(
    defaults_of: Defaults,
    text_model: bool,
    fields: dict[str, tuple[str, str]],
    cli: dict[str, Any],
    steps: int,
    side: int,
) -> dict[str, Any]:
    """The start values of the shared fields of :data:`OPTION_OF`'s options and of the
    per-method ``fields`` for a model (``defaults_of(method)``: its ``LoadedCli.defaults``),
    resolved as ``nidiff edit`` resolves them: a skip is ``round(skip_frac × steps)``, ILVR's
    factor :func:`~nidiff.methods.default_factor` of the image ``side``, ``None`` the command
    line's default (else :class:`~nidiff.methods.EditOptions`')."""
    own = _own(defaults_of, list(METHODS))  # every method: a hidden field still has a value
    shared = _shared({m: own[m] for m in runnable(text_model)})

    def resolve(option: str, value: Any, method: str | None = None) -> Any:
        if option == "skip":
            return round(value * steps)
        if option == "factor":
            return default_factor(side, 4 / side if value is None else value)
        if value is None:
            value = cli[option] if cli.get(option) is not None else getattr(EditOptions(), option)
        return _any_default(option, method) if value is None else value

    out = {o: resolve(o, shared.get(o)) for o in OPTION_OF.values()}
    out |= {name: resolve(o, own[m][o], m) for name, (m, o) in fields.items()}
    return out
