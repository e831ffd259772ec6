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


def pair_cond(source: Any, target: Any) -> dict[str, Any]:
    """The condition of a controlled batch ``[source rows; target rows]``: the rows of both
    conditions and offsets ``-B`` on the target rows (row ``B + i`` is row ``i``'s target).

    Args:
        source, target: text embeddings ``(B, L, D)`` of the same shape (SD 1.x/2.x), or
            conditions given as dicts with the same keys: ``encoder_hidden_states`` ``(B, L, D)``
            and the rest per row (SDXL: ``text_embeds`` ``(B, P)``, the pooled embedding, and
            optionally ``time_ids`` ``(B, 6)``); every entry is concatenated along the batch,
            so each row keeps its own prompt's pooled embedding and time ids.
    """
    src, tgt = _entries(source, "source"), _entries(target, "target")
    if src.keys() != tgt.keys():
        raise ValueError(
            f"source and target conditions must hold the same entries, got {sorted(src)} and "
            f"{sorted(tgt)}"
        )
    for key in src:
        if src[key].shape != tgt[key].shape:
            what = "embeddings must both be (B, L, D)" if key == "encoder_hidden_states" else key
            raise ValueError(
                f"source and target {what} of the same shape, got {tuple(src[key].shape)} and "
                f"{tuple(tgt[key].shape)}"
            )
    states = src["encoder_hidden_states"]
    B = states.shape[0]
    offsets = torch.cat([torch.zeros(B, dtype=torch.long), torch.full((B,), -B)])
    return {
        **{key: torch.cat([src[key], tgt[key]]) for key in src},
        "cross_attention_kwargs": {OFFSET_KEY: offsets.to(states.device)},
    }


def plain_cond(states: Any) -> dict[str, Any]:
    """An uncontrolled condition (offsets 0) with :func:`pair_cond`'s layout, e.g. the null
    prompt of guidance, so that it concatenates with a controlled one; ``states`` is an
    embedding ``(B, L, D)`` or a dict condition as :func:`pair_cond` takes."""
    entries = _entries(states, "condition")
    hidden = entries["encoder_hidden_states"]
    offsets = torch.zeros(hidden.shape[0], dtype=torch.long, device=hidden.device)
    return {**entries, "cross_attention_kwargs": {OFFSET_KEY: offsets}}


def _entries(cond: Any, what: str) -> dict[str, Tensor]:
    """``cond`` as a dict of per-row tensors holding ``encoder_hidden_states`` ``(B, L, D)``
    (an embedding tensor is ``{"encoder_hidden_states": cond}``), each of batch ``B``."""
    entries = dict(cond) if isinstance(cond, dict) else {"encoder_hidden_states": cond}
    states = entries.get("encoder_hidden_states")
    if not isinstance(states, Tensor) or states.ndim != 3:
        shape = tuple(states.shape) if isinstance(states, Tensor) else type(states).__name__
        raise ValueError(
            f"the {what} embeddings must be (B, L, D) (or a dict holding them as "
            f"encoder_hidden_states), got {shape}"
        )
    if "cross_attention_kwargs" in entries:
        raise ValueError(f"the {what} condition is already controlled (it has offsets)")
    B = states.shape[0]
    for key, v in entries.items():
        if not isinstance(v, Tensor) or v.ndim == 0 or v.shape[0] != B:
            raise ValueError(f"the {what} condition's {key} is not a batch of {B} rows")
    return entries
