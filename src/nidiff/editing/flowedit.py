r"""FlowEdit (Kulikov, Kleiner, Huberman-Spiegelglas and Michaeli, ICCV 2025): inversion-free
editing of a rectified-flow model by the difference of two velocities.

On rectified flow (:math:`x_t = (1-t)\,x_0 + t\,\varepsilon`, SD3 and FLUX) the edit follows an
ODE from the source :math:`X^{src}` directly, never through noise. With the grid
:math:`t_0 > t_1 > \dots` and the first ``skip`` steps skipped (FlowEdit's
:math:`n_{max} = N - \text{skip}`), :math:`Z^{FE} = X^{src}` and for every remaining step
(FlowEdit Alg. 1):

.. math::
    Z^{src}_{t_i} = (1 - t_i)\,X^{src} + t_i\,\varepsilon_i, \qquad
    Z^{tar}_{t_i} = Z^{FE} + Z^{src}_{t_i} - X^{src}, \\
    V_\Delta = \tfrac{1}{n_{avg}}\textstyle\sum \bigl[v(Z^{tar}_{t_i}, t_i; c_{tar}, w_{tar})
               - v(Z^{src}_{t_i}, t_i; c_{src}, w_{src})\bigr], \qquad
    Z^{FE} \leftarrow Z^{FE} + (t_{i+1} - t_i)\,V_\Delta ,

with fresh white noise :math:`\varepsilon_i` (``n_avg`` draws averaged) and each velocity under
its own guidance (classifier-free, or FLUX.1-dev's distilled guidance through
:func:`~nidiff.models.contract.with_guidance`). The result is :math:`Z^{FE}` at ``t = 0``. With
the same condition and guidance on both sides :math:`V_\Delta = 0`: the source comes back
exactly. The paper's settings: SD3, 50 steps, :math:`n_{max} = 33` (skip 17), guidance 3.5 / 13.5;
FLUX, 28 steps, :math:`n_{max} = 24` (skip 4), guidance 1.5 / 5.5; :math:`n_{avg} = 1`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._checks import check_image, check_skip
from ..models.contract import Denoiser, model_time, with_guidance
from ..noise.base import white_noise
from ..process import Process
from ..result import EditResult
from ..schedule import RectifiedFlow, TimeGrid

__all__ = ["flowedit"]


def flowedit(
    model: Denoiser,
    x0: Tensor,
    process: Process,
    grid: TimeGrid,
    *,
    source_cond: Any,
    target_cond: Any,
    source_guidance: float = 1.0,
    guidance: float = 1.0,
    null_cond: Any = None,
    skip: int = 0,
    n_avg: int = 1,
    generator: torch.Generator | None = None,
) -> EditResult:
    r"""Edit ``x0`` from ``source_cond`` to ``target_cond`` by FlowEdit (module docstring).

    Args:
        model: a velocity model of ``process`` (rectified flow, ``FlowVelocity``).
        x0: the source :math:`X^{src}` ``(B, *dims)`` in the model's space; not modified.
        grid: the model's grid, noisiest first; the first ``skip`` steps are skipped.
        source_cond, target_cond: the two conditions. source_guidance, guidance: their guidance
            scales (``!= 1`` needs ``null_cond``; FLUX.1-dev: its distilled guidance).
        n_avg: noise draws averaged per step (FlowEdit's :math:`n_{avg}`).
        generator: source of the white noise, ``n_avg`` draws per step in order.

    Raises:
        ValueError: a process that is not rectified flow with a velocity model, a bad ``skip``
            or ``n_avg``.
    """
    check_image(x0)
    if not isinstance(process.schedule, RectifiedFlow) or process.prediction.name != "flow":
        raise ValueError(
            "FlowEdit follows a rectified-flow velocity field: it needs a flow model (SD3, FLUX; "
            f"Process(RectifiedFlow(), prediction=FlowVelocity())), not {process.schedule!r}"
        )
    if process.noise.data_conditioned:
        raise ValueError("FlowEdit needs a fixed noise model (not edge-preserving noise)")
    skip = check_skip(skip, len(grid))
    if isinstance(n_avg, bool) or int(n_avg) != n_avg or n_avg < 1:
        raise ValueError(f"n_avg={n_avg!r} must be a positive integer")
    src = with_guidance(model, source_guidance, null_cond)
    tgt = with_guidance(model, guidance, null_cond)
    z = x0.clone()
    steps = grid[skip:]
    for t, t_prev in steps:
        tt = model_time(t, x0)
        v = torch.zeros_like(x0)
        for _ in range(int(n_avg)):
            eps = white_noise(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
            z_src = process.q_sample(x0, t, eps)
            z_tar = z_src + (z - x0)  # = Z^FE + Z^src - X^src, exactly Z^src while Z^FE = X^src
            v = v + (tgt(z_tar, tt, target_cond) - src(z_src, tt, source_cond)) / int(n_avg)
        z = z + float(t_prev - t) * v
    info = {
        "method": "flowedit",
        "steps": len(steps),
        "skip": skip,
        "n_max": len(steps),
        "n_avg": int(n_avg),
        "t_start": float(steps.t[0]),
        "source_guidance": float(source_guidance),
        "guidance": float(guidance),
    }
    return EditResult(x0=z, nfe=2 * len(steps) * int(n_avg), info=info)
