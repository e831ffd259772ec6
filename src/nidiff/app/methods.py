"""The studio's view of the editing methods: the one adapter between the page and the
library's registry :data:`nidiff.methods.METHODS` (which the CLI reads too).

There is one list of methods. A method appears in the studio as soon as it is in the registry
(text-only ones for text models only), with the registry's label and the options that apply to
it; this module adds the one thing only the page needs, :data:`SEED_FIXED`: the methods whose
result does not change with the seed once their input is fixed (so the seed gallery leaves
them out).

Every edit runs the registry's own function on an :class:`AppCall`, a
:class:`~nidiff.methods.EditCall` whose edit-friendly inversion comes from the session's cache
(so ``ef`` and ``ngdm-ef`` share one inversion per input and settings) and which keeps the
weighting maps it computed (to show the one that drove NGDM). The painted map is the call's
``user_map``, as ``nidiff edit --map`` passes it. The model's space is wrapped in a
:class:`CountedSpace`, so the calls reported are the network evaluations that really ran.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..methods import METHODS, OPTION_NAMES, EditCall, EditOptions
from ..models.space import CountedSpace, CountingDenoiser
from ..samplers.registry import takes_eta
from .fields import option_field
from .per_method import OPTION_OF
from .per_method import runnable as available  # the methods a model can run

__all__ = [
    "SEED_FIXED",
    "AppCall",
    "CountedSpace",
    "CountingDenoiser",
    "available",
    "check",
    "edit_options",
    "label",
    "new_call",
    "run_edit",
    "stochastic",
    "takes_map",
]

#: Methods whose result is fixed once the input is: EF and NGDM+EF regenerate from the cached
#: inversion (its noise is the seed's, drawn once), DDIM inversion draws nothing (nor do
#: Zero-Shot's and PnP's DDIM variants), P2P+EF, Zero-Shot+EF and PnP+EF regenerate from their
#: own EF inversion.
SEED_FIXED = frozenset({"ef", "ngdm-ef", "ddim", "p2p", "zero-shot", "zero-shot-ddim", "pnp",
                        "pnp-ddim"})  # fmt: skip


def label(name: str) -> str:
    """The registry's label of a method (``NGDM``, ``EF``, ...)."""
    return METHODS[name].label


def stochastic(name: str) -> bool:
    """Whether the seed changes the method's result for a fixed input (seed gallery)."""
    return name not in SEED_FIXED


def takes_map(name: str) -> bool:
    """Whether a user's change map can be the method's λ (the NGDM methods)."""
    return bool(getattr(METHODS[name], "takes_user_map", False))


def edit_options(method: str, p: dict[str, Any]) -> dict[str, Any]:
    """The :class:`~nidiff.methods.EditOptions` of ``method`` from validated fields: every
    option the fields carry (the rest keep :class:`EditOptions`' own), each per-method option
    (strength, skip, guidance, factor) from the method's own field where it has one
    (:func:`~nidiff.app.fields.option_field`: the registry's per-method defaults)."""
    opts = {name: p[name] for name in OPTION_NAMES if name in p}
    if not takes_eta(opts.get("sampler")):  # the page always sends η; nidiff edit leaves it
        opts["eta"] = None  # out for such a sampler unless given
    for option in OPTION_OF.values():
        name = option_field(method, option)
        if name in p:
            opts[option] = p[name]
    return opts


def check(space: Any, method: str, source: str, target: str, opts: dict[str, Any]) -> None:
    """The registry's up-front check of a (source, target) pair (P2P: the prompts align)."""
    run_check = METHODS[method].check
    if run_check is not None:
        run_check(space, source, target, EditOptions(**opts))


@dataclass(frozen=True)
class AppCall(EditCall):
    """:class:`~nidiff.methods.EditCall` with the session's inversion (``invert()``, when
    given); ``maps`` collects the weighting maps computed."""

    invert: Callable[[], Any] | None = None
    maps: list[Any] = field(default_factory=list)

    def weighting_map(self):
        wm = super().weighting_map()
        self.maps.append(wm)
        return wm

    def ef_invert(self):
        return super().ef_invert() if self.invert is None else self.invert()


def new_call(
    m: Any,
    space: Any,
    x0: Tensor,
    conds: tuple[Any, Any],
    seed: int,
    opts: dict[str, Any],
    **extra: Any,
) -> AppCall:
    """The :class:`AppCall` of one edit on ``space`` (``m.space`` or a :class:`CountedSpace`
    of it), built as :func:`nidiff.cli.methods.run_method` builds its call: the model's own
    grid of ``steps`` (``m.grid``) and one generator seeded with ``seed``."""
    o = EditOptions(**opts)
    g = torch.Generator(device=m.device).manual_seed(seed)
    return AppCall(space, x0, conds[0], conds[1], m.grid(o.steps), g, o, **extra)


def run_edit(call: AppCall, method: str) -> Any:
    """Run ``method`` (the registry's function) on ``call``; returns its ``EditResult``."""
    res, _ = METHODS[method].run(call)
    return res
