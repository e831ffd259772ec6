"""The typed result every editing and inversion method returns (here, so that both
:mod:`nidiff.editing` and :mod:`nidiff.inversion` import it without importing each other)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

__all__ = ["EditResult"]


@dataclass(frozen=True, eq=False)
class EditResult:
    """An edited image and how it was made.

    Attributes:
        x0: the edited image(s) ``(B, *dims)``, same space as the input (pixels or latents).
        nfe: network evaluations spent (a guided evaluation counts once: one batched call).
        lam: NGDM's per-pixel noise level λ ``(B, 1, *spatial)`` in [0, 1], if the method used one.
        start_times: per-pixel start times :math:`T_k` (paper time), if the method used them.
        info: the method's parameters, for provenance records (JSON-serialisable values).
        painting: the stroke painting the edit started from ``(B, C, *spatial)``, in the input's
            space (stroke-guided editing, :func:`nidiff.editing.strokes.stroke_edit`).
    """

    x0: Tensor
    nfe: int
    lam: Tensor | None = None
    start_times: Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)
    painting: Tensor | None = None
