r"""NGDM with edit-friendly noise maps: a per-pixel ``skip`` (beyond the papers).

EF edits regenerate an inverted image from its recorded maps :math:`z_i` with a new condition,
starting after ``skip`` steps for the *whole* image. Combined with NGDM, each pixel :math:`k`
starts at its own time :math:`T_k = \tau_k(T)` (NGDM eq. 8 on the inversion's grid, :math:`T` =
``grid.t[0]``): before that it follows the *inverted trajectory* :math:`s_t` (the source chain:
the source condition and guidance with the same maps, which replays the inversion exactly), and
from then on the target chain. With the target state :math:`y`, at every visited time
:math:`t_{prev}` (NGDM Algorithm 1 with :math:`x(t)` replaced by :math:`s_t`):

.. math::
    y \leftarrow H_Q(y, t; z_i), \qquad M = \mathbb 1(t_{prev} \ge T_k), \qquad
    y \leftarrow M\odot s_{t_{prev}} + (1-M)\odot y .

The replacement is made through the step's map: :math:`z_i` is swapped for the map that lands
the step on the mixed state, :math:`\Sigma^{-1/2}(y - \hat\mu)/\sigma`
(``Transition.noise_of``, the ``z_hook`` of :func:`~nidiff.inversion.edit_friendly_regenerate`),
so the step math stays the EF regeneration's own; this is exact up to float rounding (exact
where :math:`M = 0` throughout). The last visited time is ``0``, where :math:`s_0 = x_0`: pixels
with :math:`\lambda = 0` come back as the inverted image bit for bit.

Limits: :math:`\lambda \equiv 1` is EF regeneration with ``skip = 0``; a constant
:math:`\lambda` whose start rounds to ``grid.t[j]`` is EF with ``skip = j``. Cost: ``N`` model
calls when the inversion keeps its trajectory (``Inversion.xs``), ``2N`` otherwise (the source
chain is replayed once to recover it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..inversion.edit_friendly import edit_friendly_regenerate
from ..inversion.io import Inversion
from ..models.contract import Denoiser
from ..process import Process
from ..result import EditResult
from ..samplers.transition import Transition
from .ngdm import check_lam

__all__ = ["ngdm_edit_friendly"]


def ngdm_edit_friendly(
    model: Denoiser,
    inversion: Inversion,
    process: Process,
    lam: Tensor,
    *,
    cond: Any,
    guidance: float = 1.0,
    null_cond: Any = None,
    preserve: bool = False,
) -> EditResult:
    r"""Regenerate an edit-friendly inversion towards ``cond`` with per-pixel start times.

    Args:
        model: the model the inversion was made with.
        inversion: from :func:`~nidiff.inversion.edit_friendly_invert` (or loaded).
        process: the inversion's process (checked).
        lam: :math:`\lambda` ``(B|1, 1|C, *spatial)`` in ``[0, 1]`` (a weighting map or mask).
        cond: the target condition.
        guidance: target guidance scale (``!= 1`` needs ``null_cond``, which the source chain
            also uses when the inversion was guided).
        null_cond: the unconditional condition for guidance.
        preserve: paste the inverted image back where the start time is below the last model
            time ``grid.t[-1]`` (as in :func:`~nidiff.editing.ngdm`).

    Returns:
        :class:`EditResult` with ``lam`` and ``start_times`` expanded to the batch.
    """
    x0, grid = inversion.x0, inversion.grid
    lam64 = check_lam(lam, x0)
    if not isinstance(preserve, bool):
        raise ValueError(f"preserve={preserve!r} must be a bool")
    T_k = process.schedule.rectified_time(grid.t[0].to(x0.device), lam64)
    n, nfe = len(grid), 0
    if inversion.xs is not None:
        source = [*inversion.xs[1:], x0]  # the state each step lands on
    else:
        source, nfe = _replay_source(model, inversion, process, null_cond), n
    source[-1] = x0
    first_start = float(T_k.min())  # read once: no pixel on the source chain below it

    def mix(i: int, tr: Transition, z: Tensor) -> Tensor:
        if float(grid.t_prev[i]) < first_start:
            return z
        M = grid.t_prev[i].to(T_k.device) >= T_k
        target = torch.where(M, source[i].to(tr.mean.device, tr.mean.dtype), tr.sample(z))
        return tr.noise_of(target)

    out = edit_friendly_regenerate(
        model,
        inversion,
        process,
        cond=cond,
        guidance=guidance,
        null_cond=null_cond,
        z_hook=mix,
    )
    keep = T_k < float(grid.t[-1]) if preserve else T_k <= 0  # T_k = 0: s_0 = x0 exactly
    x = torch.where(keep, x0, out.x0)
    batch_shape = (x0.shape[0], *lam64.shape[1:])
    info = {
        "method": "ngdm_edit_friendly",
        "steps": n,
        "eta": inversion.eta,
        "sampler": dict(inversion.sampler),
        "guidance": float(guidance),
        "preserve": preserve,
        "source_replayed": inversion.xs is None,
    }
    return EditResult(
        x0=x,
        nfe=nfe + out.nfe,
        lam=lam64.to(x0.dtype).expand(batch_shape),
        start_times=T_k.expand(batch_shape),
        info=info,
    )


def _replay_source(
    model: Denoiser, inversion: Inversion, process: Process, null_cond: Any
) -> list[Tensor]:
    """The inverted trajectory (the state after each step) by one source-condition replay."""
    states: list[Tensor] = []

    def record(i: int, tr: Transition, z: Tensor) -> Tensor:
        states.append(tr.sample(z))
        return z

    edit_friendly_regenerate(model, inversion, process, null_cond=null_cond, z_hook=record)
    return states
