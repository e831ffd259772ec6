r"""SDEdit (Meng et al., 2022): noise the source part-way, then denoise with the target condition.

With strength :math:`s \in (0, 1]` and a grid :math:`t_0 > t_1 > \dots`, the start index is
:math:`k = \min\{i : t_i \le s\,t_{max}\}` (the largest grid time not above :math:`s\,t_{max}`;
:func:`start_index`), and

.. math::
    x_{t_k} = \sqrt{\bar\alpha_{t_k}}\,x_0 + \sqrt{1-\bar\alpha_{t_k}}\,\Sigma^{1/2} z,
    \qquad z \sim \mathcal N(0, I),

followed by the reverse steps of ``process.rule(eta)`` over ``grid[k:]`` with the target
condition (for edge-preserving processes :meth:`Process.q_sample` uses EP eq. 11 instead).

The white ``z`` is the generator's first draw (or the given ``z``), so with ``strength=1`` and a
grid starting at ``t_max`` this is NGDM's Algorithm 1 with :math:`\lambda \equiv 1` for the same
seed (NGDM, Yu et al., 2023, where SDEdit is the baseline of Table 1).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._checks import check_image, check_in_range
from ..models.contract import Denoiser, with_guidance
from ..process import Process
from ..result import EditResult
from ..samplers import sample
from ..samplers.loop import StepRule
from ..samplers.registry import rule_spec
from ..schedule import TimeGrid
from .ngdm import source_noise

__all__ = ["sdedit", "start_index"]


def start_index(grid: TimeGrid, strength: float, t_max: float) -> int:
    r"""Index of the first grid time :math:`t_i \le` ``strength``·``t_max`` (tolerance
    :math:`10^{-9} t_{max}` against rounding).

    Raises:
        ValueError: if ``strength`` is outside ``(0, 1]`` or below every grid time.
    """
    check_in_range(strength, "strength", 0.0, 1.0, low_open=True)
    target = float(strength) * t_max
    hits = (grid.t <= target + 1e-9 * t_max).nonzero()
    if hits.numel() == 0:
        raise ValueError(
            f"strength={strength:g} starts at t={target:g}, below the grid's smallest time "
            f"{float(grid.t[-1]):g}; use a larger strength or a finer grid"
        )
    return int(hits[0])


def sdedit(
    model: Denoiser,
    x0: Tensor,
    process: Process,
    grid: TimeGrid,
    *,
    strength: float,
    cond: Any = None,
    guidance: float = 1.0,
    null_cond: Any = None,
    eta: float = 1.0,
    clip_x0: tuple[float, float] | None = None,
    rule: StepRule | None = None,
    generator: torch.Generator | None = None,
    z: Tensor | None = None,
) -> EditResult:
    r"""SDEdit of ``x0`` (see the module for the math).

    Args:
        model: ``out = model(x_t, t, cond)``.
        x0: source image(s) ``(B, *dims)``; not modified.
        process: schedule + noise (isotropic, diagonal, GFF or edge-preserving).
        grid: the full sampling grid, noisiest first; SDEdit runs ``grid[k:]``.
        strength: :math:`s \in (0, 1]`; the start time is the first grid time
            :math:`\le s\,t_{max}`.
        cond: the target condition. guidance, null_cond: classifier-free guidance
            (``guidance != 1`` needs ``null_cond``).
        eta: :math:`\eta \in [0, 1]` of the reverse steps (edge-preserving: 1 only).
        clip_x0: optional ``(low, high)`` clipping of :math:`\hat x_0` (pixel models).
        rule: any step rule of ``process`` instead (``process.sampler(name)``).
        generator: source of ``z`` (unless given) and of the reverse steps' noise (for
            ``eta > 0``).
        z: optional white noise for the start state, shape of ``x0``.

    Returns:
        :class:`EditResult` with ``nfe = len(grid) - k`` and ``info`` holding the parameters and
        the start time ``t_start``.
    """
    check_image(x0)
    k = start_index(grid, strength, process.schedule.t_max)
    net = with_guidance(model, guidance, null_cond)
    rule = process.step_rule(rule, eta, clip_x0)
    z = source_noise(x0, z, generator, "sdedit")
    t_start = grid.t[k]
    x_t = process.q_sample(x0, t_start, z)
    res = sample(net, x_t, grid[k:], rule, cond=cond, noise=generator)
    info = {
        "method": "sdedit",
        "strength": float(strength),
        "t_start": float(t_start),
        "start_index": k,
        "steps": len(grid) - k,
        "eta": float(eta),
        "sampler": rule_spec(rule),
        "guidance": float(guidance),
    }
    return EditResult(x0=res.x0, nfe=res.nfe, info=info)
