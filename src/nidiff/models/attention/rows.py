"""The rows of an attention-controlled batch and the time windows of its controls.

A controlled batch pairs rows through a per-row *source offset* in the condition
(:mod:`.control`): :func:`pair_cond` builds ``[source rows; target rows]``, :func:`plain_cond`
free rows (offset 0) of the same layout; :func:`window_threshold` turns a fraction of the steps
run into the time threshold of a control's window.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..._checks import check_skip
from ...schedule import TimeGrid

__all__ = ["OFFSET_KEY", "pair_cond", "plain_cond", "window_threshold"]

#: The ``cross_attention_kwargs`` entry of a condition that holds the per-row source offsets.
OFFSET_KEY = "p2p_source_offset"


def window_threshold(grid: TimeGrid, fraction: float, skip: int = 0) -> float:
    r"""The time threshold that makes a window of the first ``fraction`` of the steps run.

    The run takes grid steps ``skip .. N-1``; the window is its first
    ``k = round(fraction · (N - skip))`` steps, and the threshold lies halfway through step
    ``skip + k - 1``, so ``t > threshold`` holds exactly at those steps' model times (robust to
    float rounding of the times). ``k = 0`` gives ``inf`` (no step).

    Raises:
        ValueError: for ``fraction`` outside ``[0, 1]`` or ``skip`` outside ``[0, N)``.
    """
    n = len(grid)
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"fraction={fraction!r} must lie in [0, 1]")
    skip = check_skip(skip, n)
    k = round(float(fraction) * (n - skip))
    if k == 0:
        return math.inf
    j = skip + k - 1
    return 0.5 * (float(grid.t[j]) + float(grid.t_prev[j]))


def pair_cond(source: Tensor, target: Tensor) -> dict[str, Any]:
    """The condition of a controlled batch ``[source rows; target rows]``: embeddings
    ``(2B, L, D)`` and offsets ``-B`` on the target rows (row ``B + i`` is row ``i``'s target).

    Args:
        source, target: text embeddings ``(B, L, D)`` of the same shape.
    """
    if source.shape != target.shape or source.ndim != 3:
        raise ValueError(
            f"source and target embeddings must both be (B, L, D), got {tuple(source.shape)} "
            f"and {tuple(target.shape)}"
        )
    B = source.shape[0]
    offsets = torch.cat([torch.zeros(B, dtype=torch.long), torch.full((B,), -B)])
    return {
        "encoder_hidden_states": torch.cat([source, target]),
        "cross_attention_kwargs": {OFFSET_KEY: offsets.to(source.device)},
    }


def plain_cond(states: Tensor) -> dict[str, Any]:
    """An uncontrolled condition (offsets 0) with :func:`pair_cond`'s layout, e.g. the null
    prompt of guidance, so that it concatenates with a controlled one."""
    B = states.shape[0]
    offsets = torch.zeros(B, dtype=torch.long, device=states.device)
    return {"encoder_hidden_states": states, "cross_attention_kwargs": {OFFSET_KEY: offsets}}
