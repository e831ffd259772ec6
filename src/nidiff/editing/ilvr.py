r"""ILVR: iterative latent variable refinement (Choi et al., 2021), a baseline of NGDM Table 1.

Sampling starts from the prior :math:`x_{t_0} = \Sigma^{1/2} z` and, after every reverse step
:math:`x_t \to x'_{t_{prev}}` with ``t >= t_stop``, swaps the low frequencies of the sample for
those of the source noised to :math:`t_{prev}` with fresh white :math:`z'` (ILVR eq. 8):

.. math::
    y_{t_{prev}} = \sqrt{\bar\alpha_{t_{prev}}}\,x_0 + \sqrt{1-\bar\alpha_{t_{prev}}}\,
                   \Sigma^{1/2} z', \qquad
    x_{t_{prev}} = x'_{t_{prev}} - \phi_N(x'_{t_{prev}}) + \phi_N(y_{t_{prev}}),

where :math:`\phi_N` (:func:`lowpass`) resizes by :math:`1/N` and back. The authors use a bicubic
resizer with antialiasing; here the down path is ``interpolate(mode="bicubic", antialias=True)``
and the up path plain bicubic, both with ``align_corners=False``. :math:`\phi_N` is not an exact
projection, so the output's low-pass matches the source's only approximately.
Edge-preserving processes noise the source with EP eq. 11 (:meth:`Process.q_sample`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_image, check_in_range
from ..models.contract import Denoiser, with_guidance
from ..noise.base import white_noise
from ..process import Process
from ..result import EditResult
from ..samplers import StepInfo, sample
from ..samplers.loop import StepRule
from ..samplers.registry import rule_spec
from ..schedule import TimeGrid

__all__ = ["ilvr", "lowpass"]


def lowpass(x: Tensor, factor: int) -> Tensor:
    r""":math:`\phi_N(x)`: bicubic downsampling by ``factor`` (antialiased), then bicubic
    upsampling back, over the last two dims of ``x`` ``(..., H, W)``; ``factor`` divides H, W."""
    H, W = x.shape[-2:]
    flat = x.reshape(-1, 1, H, W)
    small = F.interpolate(
        flat, size=(H // factor, W // factor), mode="bicubic", antialias=True, align_corners=False
    )
    return F.interpolate(small, size=(H, W), mode="bicubic", align_corners=False).reshape(x.shape)


def ilvr(
    model: Denoiser,
    x0: Tensor,
    process: Process,
    grid: TimeGrid,
    *,
    factor: int = 4,
    cond: Any = None,
    guidance: float = 1.0,
    null_cond: Any = None,
    eta: float = 1.0,
    t_stop: float = 0.0,
    clip_x0: tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
    rule: StepRule | None = None,
) -> EditResult:
    r"""ILVR guided by the low frequencies of ``x0`` (see the module for the math).

    Args:
        model: ``out = model(x_t, t, cond)``.
        x0: the reference image(s) ``(B, *lead, H, W)`` (``H, W`` divisible by ``factor``).
        process: schedule + noise (isotropic, diagonal, GFF or edge-preserving).
        grid: the sampling grid, noisiest first; sampling starts from the prior at ``grid.t[0]``.
        factor: the downsampling factor :math:`N \ge 1` (larger keeps less of ``x0``).
        cond: the target condition. guidance, null_cond: classifier-free guidance.
        eta: :math:`\eta \in [0, 1]` of the reverse steps (edge-preserving: 1 only).
        t_stop: refine after the steps whose start time ``t >= t_stop`` (``0``: every step),
            in ``[0, t_max]``.
        clip_x0: optional ``(low, high)`` clipping of :math:`\hat x_0` (pixel models).
        generator: required; draws, in order, the prior noise and per step the reverse step's
            noise (if stochastic) and then :math:`z'`.
        rule: any step rule of ``process`` instead (``process.sampler(name)``).

    Returns:
        :class:`EditResult` with ``nfe = len(grid)`` and the parameters in ``info``.
    """
    check_image(x0)
    if x0.ndim < 3:
        raise ValueError(f"x0 of shape {tuple(x0.shape)} must be an image (B, *lead, H, W)")
    H, W = x0.shape[-2:]
    if isinstance(factor, bool) or int(factor) != factor or factor < 1:
        raise ValueError(f"factor={factor} must be a positive integer")
    factor = int(factor)
    if H % factor or W % factor:
        raise ValueError(f"factor={factor} must divide the image size {H}x{W}")
    check_in_range(t_stop, "t_stop", 0.0, process.schedule.t_max)
    if generator is None:
        raise ValueError("ilvr needs generator= (prior noise and the per-step source noise)")
    net = with_guidance(model, guidance, null_cond)
    rule = process.step_rule(rule, eta, clip_x0)

    def refine(step: StepInfo) -> Tensor | None:
        if float(step.t) < t_stop:
            return None
        z = white_noise(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        y = process.q_sample(x0, step.t_prev, z)
        return step.x_prev - lowpass(step.x_prev, factor) + lowpass(y, factor)

    z_T = white_noise(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    res = sample(net, process.prior(z_T), grid, rule, cond=cond, noise=generator, callback=refine)
    info = {
        "method": "ilvr",
        "factor": factor,
        "t_stop": float(t_stop),
        "steps": len(grid),
        "eta": float(eta),
        "sampler": rule_spec(rule),
        "guidance": float(guidance),
    }
    return EditResult(x0=res.x0, nfe=res.nfe, info=info)
