r"""DDIM inversion and deterministic regeneration (the "DDIM inversion" baseline of EF Table 1).

DDIM with :math:`\eta = 0` (Song et al., 2021, eq. 12; NI-DDIM of Voleti et al., 2022) is the
deterministic map, with :math:`\varepsilon_\Sigma = \Sigma^{1/2}\hat\varepsilon(x_t, t)`,

.. math::
    \hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\varepsilon_\Sigma}{\sqrt{\bar\alpha_t}}, \qquad
    x_{t_{prev}} = \sqrt{\bar\alpha_{t_{prev}}}\,\hat x_0
                 + \sqrt{1-\bar\alpha_{t_{prev}}}\,\varepsilon_\Sigma .

Inversion walks the grid backwards (clean → noisy). The unknown :math:`\hat\varepsilon(x_t, t)` is
replaced by :math:`\hat\varepsilon(x_{t_{prev}}, t)`: the model sees the current state at the
*target* time, as in diffusers' ``DDIMInverseScheduler`` and null-text inversion (Mokady et al.,
2023). This never evaluates the model at ``t = 0``, which networks are not trained on:

.. math::
    \hat x_0 = \frac{x_{t_{prev}} - \sqrt{1-\bar\alpha_{t_{prev}}}\,\varepsilon_\Sigma}
                    {\sqrt{\bar\alpha_{t_{prev}}}}, \qquad
    x_t = \sqrt{\bar\alpha_t}\,\hat x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon_\Sigma .

The approximation error shrinks with the step size, so many steps reconstruct well and few steps
poorly. Only fixed-covariance processes (isotropic, diagonal, GFF) have a deterministic reverse
step; the edge-preserving posterior (EP eq. 12–14) is stochastic and is rejected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._checks import check_fixed_noise, check_image, check_skip
from ..models.contract import Denoiser, model_time, with_guidance
from ..process import Process
from ..result import EditResult
from ..samplers import coefficients_like, sample
from ..schedule import TimeGrid

__all__ = ["DDIMInversion", "ddim_edit", "ddim_invert"]


@dataclass(frozen=True, eq=False)
class DDIMInversion:
    """The outcome of :func:`ddim_invert`.

    Attributes:
        x_T: the inverted state at ``grid.t[0]``, shape of ``x0``.
        grid: the grid that was inverted (regeneration walks it forward).
        cond: the condition used for inversion.
        guidance: the guidance scale used for inversion.
        trajectory: the ``N + 1`` states at ``grid.times`` (noisiest first): ``trajectory[0]`` is
            ``x_T``, ``trajectory[-1]`` the input ``x0``.
        nfe: model calls spent.
    """

    x_T: Tensor  # noqa: N815 (the paper's symbol)
    grid: TimeGrid
    cond: Any
    guidance: float
    trajectory: list[Tensor]
    nfe: int


@torch.no_grad()
def ddim_invert(
    model: Denoiser,
    x0: Tensor,
    process: Process,
    grid: TimeGrid,
    *,
    cond: Any = None,
    guidance: float = 1.0,
    null_cond: Any = None,
    regularize: Callable[[Tensor], Tensor] | None = None,
) -> DDIMInversion:
    r"""Deterministic DDIM inversion of ``x0`` along ``grid`` (see the module for the math).

    Args:
        model: ``out = model(x_t, t, cond)``, white :math:`\hat\varepsilon`.
        x0: the image(s) ``(B, *dims)``, taken as the state at the grid's last time (usually 0).
        process: an isotropic, diagonal or GFF process (edge-preserving raises).
        grid: the time grid, noisiest first; inversion walks it from the end.
        cond: the (source) condition. guidance, null_cond: classifier-free guidance.
        regularize: ``regularize(eps) -> eps`` applied to every (guided) white prediction
            before the inverse step, e.g. pix2pix-zero's
            :class:`~.noise_reg.NoiseRegularizer`; the inversion is then no longer exact.

    Returns:
        :class:`DDIMInversion` (``nfe = len(grid)``); runs under ``no_grad``.
    """
    check_fixed_noise(process, "ddim_invert")
    check_image(x0)
    net = with_guidance(model, guidance, null_cond)
    x, states = x0, [x0]
    for t, t_prev in zip(grid.t.flip(0), grid.t_prev.flip(0), strict=True):
        eps = net(x, model_time(t, x), cond)
        eps_sigma = process.noise.color(eps if regularize is None else regularize(eps))
        a_s, b_s = coefficients_like(process.schedule, t_prev, x)
        a_t, b_t = coefficients_like(process.schedule, t, x)
        x = a_t * (x - b_s * eps_sigma) / a_s + b_t * eps_sigma
        states.append(x)
    states.reverse()
    return DDIMInversion(states[0], grid, cond, float(guidance), states, len(grid))


@torch.no_grad()
def ddim_edit(
    model: Denoiser,
    inversion: DDIMInversion,
    process: Process,
    *,
    cond: Any = None,
    guidance: float = 1.0,
    null_cond: Any = None,
    skip: int = 0,
) -> EditResult:
    r"""Regenerate from a :class:`DDIMInversion` with DDIM :math:`\eta = 0` and a new condition.

    Starts from ``inversion.trajectory[skip]`` at ``grid.t[skip]`` and runs ``grid[skip:]``
    (``skip`` counts the noisiest steps left out, as in EF). With the inversion's condition and
    guidance this reconstructs ``x0`` up to the inversion's approximation error.

    Args:
        model, process: as for :func:`ddim_invert`.
        inversion: the result of :func:`ddim_invert`.
        cond: the target condition. guidance, null_cond: classifier-free guidance.
        skip: integer in ``[0, len(grid) - 1]``.
    """
    check_fixed_noise(process, "ddim_edit")
    n = len(inversion.grid)
    skip = check_skip(skip, n)
    net = with_guidance(model, guidance, null_cond)
    x_start = inversion.trajectory[skip]
    res = sample(net, x_start, inversion.grid[skip:], process.rule(0.0), cond=cond)
    info = {
        "method": "ddim_inversion",
        "skip": skip,
        "steps": n,
        "t_start": float(inversion.grid.t[skip]),
        "guidance": float(guidance),
        "inversion_guidance": inversion.guidance,
    }
    return EditResult(x0=res.x0, nfe=res.nfe, info=info)
