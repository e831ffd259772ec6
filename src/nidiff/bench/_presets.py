"""Choosing a benchmark's preset and changing single fields of it from the command line.

Every benchmark with sizes keeps them in a frozen dataclass ``Preset`` and names a few in
``PRESETS`` (``quick``, ``full``, sometimes ``cpu``). ``--set KEY=VALUE`` (repeatable) changes one
field of the chosen preset, so a one-off experiment is still a single reproducible command::

    nidiff bench editing --preset cpu --set steps=100 --set methods=SDEdit,NGDM,EF

A value is read by the field's annotation: ``int``, ``float``, ``bool`` (``true``/``false``),
``str``, ``None`` for optional fields, and comma-separated tuples of those; the elements of a
tuple of pairs are written ``a:b`` (``pairs=7:5,2:4``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["choose_preset", "override", "parse_value", "run_preset"]

_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _scalar(text: str, kind: Any, key: str) -> Any:
    if kind is bool:
        if text.lower() not in _BOOLS:
            raise ValueError(f"--set {key}: {text!r} is not a boolean (true or false)")
        return _BOOLS[text.lower()]
    if kind in (int, float, str):
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"--set {key}: {text!r} is not a{'n' * (kind is int)} "
                             f"{kind.__name__}") from None  # fmt: skip
    raise ValueError(f"--set {key}: fields of type {kind} cannot be set from the command line")


def parse_value(text: str, annotation: Any, key: str = "value") -> Any:
    """``text`` read as a value of ``annotation`` (module docs); ``ValueError`` if it is not one."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.strip().lower() == "none":
            return None
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise ValueError(f"--set {key}: fields of type {annotation} cannot be set")
        return parse_value(text, rest[0], key)
    if origin is tuple:
        item = args[0]
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if typing.get_origin(item) is tuple:  # pairs a:b
            inner = typing.get_args(item)
            out = []
            for p in parts:
                fields = p.split(":")
                if len(fields) != len(inner):
                    raise ValueError(f"--set {key}: {p!r} should have {len(inner)} parts a:b")
                out.append(tuple(_scalar(f, k, key) for f, k in zip(fields, inner, strict=True)))
            return tuple(out)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_scalar(p, item, key) for p in parts)
        raise ValueError(f"--set {key}: fields of type {annotation} cannot be set")
    return _scalar(text.strip(), annotation, key)


def override(preset: Any, assignments: Sequence[str]) -> Any:
    """``preset`` with the fields named in ``assignments`` (``"KEY=VALUE"`` strings) replaced.

    Raises:
        ValueError: for an assignment without ``=``, an unknown field (the message lists the
            known ones) or a value its field's type cannot take.
    """
    hints = typing.get_type_hints(type(preset))
    names = [f.name for f in dataclasses.fields(preset)]
    changes: dict[str, Any] = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"--set {item!r} must read KEY=VALUE")
        if key not in names:
            raise ValueError(f"--set {key}: no such field; this preset has {', '.join(names)}")
        changes[key] = parse_value(text, hints[key], key)
    return dataclasses.replace(preset, **changes)


def choose_preset(
    presets: Mapping[str, Any], quick: bool, name: str | None, assignments: Sequence[str] = ()
) -> tuple[str, Any]:
    """The preset ``name`` (else ``quick`` or ``full``) with ``assignments`` applied, and its label
    for the result (``"cpu"``, or ``"cpu, steps=100"`` when fields were changed).

    Raises:
        ValueError: for an unknown preset name or a bad assignment (:func:`override`).
    """
    base = name if name is not None else ("quick" if quick else "full")
    if base not in presets:
        raise ValueError(f"no preset {base!r}; choose one of {', '.join(presets)}")
    preset = override(presets[base], assignments)
    changed = [f"{k.strip()}={v.strip()}" for k, _, v in (a.partition("=") for a in assignments)]
    label = ", ".join([base, *changed])
    return label, preset


def run_preset(
    run: Callable[..., dict[str, Any]],
    presets: Mapping[str, Any],
    quick: bool,
    name: str | None,
    assignments: Sequence[str] = (),
    **kwargs: Any,
) -> dict[str, Any]:
    """``run(quick=quick, preset=..., **kwargs)`` with the preset :func:`choose_preset` picks
    (checked before ``run`` starts), the result's ``preset`` set to its label."""
    label, preset = choose_preset(presets, quick, name, assignments)
    return {**run(quick=quick, preset=preset, **kwargs), "preset": label}
