r"""The editing methods of ``nidiff edit``: the library's registry (:data:`nidiff.methods.METHODS`)
run on the CLI's model (:class:`~nidiff.cli.model.LoadedCli`).

Every method maps :math:`(x_0, c_{src}, c_{tgt})` in the model's space to an
:class:`~nidiff.result.EditResult` and the model calls it spent outside that result (weighting
map, inversion). To add a method, add a row to :data:`nidiff.methods.METHODS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..methods import METHODS, EditCall, EditOptions, MethodInfo
from ..models.space import CountedSpace

__all__ = ["METHODS", "EditOptions", "MethodInfo", "check_method", "run_method"]


def check_method(m: Any, method: str, source: str, target: str, **opts: Any) -> None:
    """Raise ``ValueError`` if ``method`` cannot edit ``source`` into ``target`` (no-op for
    methods without a check)."""
    check = METHODS[method].check
    if check is not None:
        check(m.space, source, target, EditOptions(**opts))


def run_method(
    m: Any,
    x0: Tensor,
    method: str,
    src: Any,
    tgt: Any,
    *,
    seed: int,
    names: tuple[str | None, str | None] = (None, None),
    user_map: Tensor | None = None,
    painting: Tensor | None = None,
    tick: Callable[[int], None] | None = None,
    **opts: Any,
) -> tuple[Any, int]:
    """Run ``method`` on ``x0`` with :class:`EditOptions` ``opts``; returns its ``EditResult``
    and the model calls spent outside it. ``names`` are the source and target prompts (what
    ``src``/``tgt`` encode; Prompt-to-Prompt aligns their words); ``user_map`` a change map for
    the NGDM methods (``--map``); ``painting`` a stroke painting for ``strokes``
    (``--painting``). Every random draw comes from one generator seeded with
    ``seed`` on the model's device; the grid is the model's own (shifted by ``grid_shift``).
    ``tick(calls)`` runs after every model call (a progress bar)."""
    from .common import model_grid

    o = EditOptions(**opts)
    g = torch.Generator(device=m.device).manual_seed(seed)
    grid = model_grid(m, o.steps, o.grid_shift)
    space = m.space if tick is None else CountedSpace(m.space, tick)
    call = EditCall(space, x0, src, tgt, grid, g, o, names, user_map, painting)
    return METHODS[method].run(call)
