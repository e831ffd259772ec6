r"""NGDM editing: per-pixel start times with a pretrained model (NGDM Algorithm 1, eq. 11–12).

Pixel :math:`k` with noise level :math:`\lambda_k \in [0, 1]` starts denoising at its rectified
time :math:`T_k = \tau_k(T)`, :math:`\bar\alpha(T_k) = \bar\alpha(T)^{\lambda_k}` (NGDM eq. 8,
power rule on the model's own schedule), with :math:`T` the first grid time. One white :math:`z`
fixes the clean path :math:`x(t) = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\Sigma^{1/2}z`
(``process.q_sample(x0, t, z)``; EP eq. 11 for edge-preserving models). With :math:`y = x(T)`,
for every visited time :math:`t` (descending):

.. math::
    M = \mathbb 1(t \ge T_k), \qquad y \leftarrow M\odot x(t) + (1-M)\odot y, \qquad
    y \leftarrow H(y, t),

:math:`H` one step of ``process.rule(eta)`` (DDPM for η = 1, DDIM for η < 1, EP posterior)
with the *target* condition. Pixels not yet started are thus overwritten by the source's forward
path; started pixels keep the sampler's state.

Rounding rule (coarse grids): pixel :math:`k` starts denoising at the smallest visited time
:math:`\ge T_k` (:func:`rounded_start`), so a larger :math:`\lambda` never starts later. The
grid's last ``t_prev`` (``0``) is Algorithm 1's final iteration ``t = 0``: only the replacement
runs there (nothing is left to denoise), so pixels with :math:`T_k = 0` (:math:`\lambda = 0`)
end as :math:`x(0) = x_0` exactly, while pixels with :math:`0 < T_k \le` ``grid.t[-1]`` get the
last step. For GFF models the replacement mixes coloured noise of the clean path with the
sampler's; the chain stays well defined.

Implementation: the shared driver :func:`~nidiff.samplers.sample` (one step rule, one source of
step math) with a callback that applies the replacement after each step at its ``t_prev``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .._checks import check_finite, check_image
from ..models.contract import Denoiser, with_guidance
from ..noise.base import white_noise
from ..process import Process
from ..result import EditResult
from ..samplers.loop import Replaced, StepInfo, StepRule, sample
from ..samplers.registry import rule_spec
from ..schedule.grid import TimeGrid

__all__ = ["check_lam", "ngdm", "rounded_start", "source_noise"]


def check_lam(lam: Tensor, x0: Tensor) -> Tensor:
    """Validate a weighting map against ``x0`` ``(B, C, *spatial)``; return it as float64.

    ``lam`` must be a real (or boolean mask) tensor with ``x0.ndim`` dims broadcastable to
    ``x0`` (``(B|1, 1|C, *spatial)``), finite, with values in ``[0, 1]``.
    """
    if not isinstance(lam, Tensor) or lam.is_complex():
        raise ValueError("lam must be a real tensor (or a boolean mask) in [0, 1]")
    if lam.ndim != x0.ndim or any(
        s not in (1, d) for s, d in zip(lam.shape, x0.shape, strict=True)
    ):
        raise ValueError(
            f"lam of shape {tuple(lam.shape)} must broadcast to x0 {tuple(x0.shape)} with the "
            f"same number of dims, e.g. ({x0.shape[0]}, 1, {', '.join(map(str, x0.shape[2:]))})"
        )
    lam = check_finite(lam.to(device=x0.device, dtype=torch.float64), "lam")
    if lam.numel() and (float(lam.min()) < 0 or float(lam.max()) > 1):
        raise ValueError(f"lam values must lie in [0, 1], got [{lam.min():g}, {lam.max():g}]")
    return lam


def rounded_start(T_k: Tensor, grid: TimeGrid) -> Tensor:
    """The visited time at which each pixel begins denoising: the smallest of ``grid.times``
    that is ``>= T_k`` (NGDM Algorithm 1 on a grid). A result equal to the grid's last
    ``t_prev`` means the pixel is never denoised. Non-decreasing in ``T_k``; float64."""
    times = grid.times.to(device=T_k.device, dtype=torch.float64)
    count = (times >= T_k.to(torch.float64)[..., None]).sum(-1)
    return times[(count - 1).clamp_min(0)]


def source_noise(
    x0: Tensor, z: Tensor | None, generator: torch.Generator | None, method: str
) -> Tensor:
    """The white noise that noises the source ``x0`` (NGDM's clean path, SDEdit's start state):
    ``z`` checked (``x0``'s shape, finite) and moved to ``x0``'s device and dtype, or, if
    ``None``, the first draw of ``generator``.

    Raises:
        ValueError: for a missing ``z`` without ``generator``, or a ``z`` that does not fit.
    """
    if z is None:
        if generator is None:
            raise ValueError(f"{method} needs the white noise z= or a generator= to draw it from")
        z = white_noise(x0.shape, generator=generator, dtype=x0.dtype)
    elif not isinstance(z, Tensor) or z.shape != x0.shape:
        raise ValueError(f"z must be a white-noise tensor of x0's shape {tuple(x0.shape)}")
    return check_finite(z.to(device=x0.device, dtype=x0.dtype), "z")


def ngdm(
    model: Denoiser,
    x0: Tensor,
    process: Process,
    grid: TimeGrid,
    lam: Tensor,
    *,
    cond: Any,
    guidance: float = 1.0,
    null_cond: Any = None,
    eta: float = 1.0,
    z: Tensor | None = None,
    generator: torch.Generator | None = None,
    step_noise: Sequence[Tensor | None] | None = None,
    preserve: bool = False,
    clip_x0: tuple[float, float] | None = None,
    rule: StepRule | None = None,
) -> EditResult:
    r"""Edit ``x0`` towards ``cond`` with per-pixel start times (NGDM Algorithm 1; module docs).

    Args:
        model: ``out = model(x_t, t, cond)`` of ``process`` (isotropic, GFF or EP).
        x0: source images ``(B, C, *spatial)`` (any ``(B, *dims)``); never modified.
        process: the model's process; its schedule gives :math:`T_k` and ``q_sample`` the path.
        grid: the (t, t_prev) steps; ``grid.t[0]`` is :math:`T` (the start for
            :math:`\lambda = 1`).
        lam: :math:`\lambda` ``(B|1, 1|C, *spatial)`` in ``[0, 1]``: a :class:`WeightMap`'s
            ``lam``, a user map or a (soft or boolean) mask.
        cond: the target condition, passed to every model call.
        guidance: classifier-free guidance (``!= 1`` needs ``null_cond``).
        eta: ``1`` DDPM steps, ``< 1`` DDIM (``0`` deterministic); EP models need ``1``.
        z: the white noise of the clean path (``x0``'s shape); drawn from ``generator`` first
            if omitted.
        generator: source of ``z`` and of the stochastic steps' noise (drawn in that order).
        step_noise: one white map per grid step (``None`` for deterministic steps) to replay a
            run instead of drawing from ``generator``.
        preserve: also keep the pixels whose start time is below the last model time
            ``grid.t[-1]`` (in particular every :math:`\lambda = 0` pixel, also on grids that stop
            early): ``x0`` is pasted back there exactly. Default ``False`` (the paper).
        clip_x0: optional range for :math:`\hat x_0` in each step (see ``DDIM``).
        rule: any step rule :math:`H` of ``process`` instead of DDPM/DDIM
            (``process.sampler(name)``): with ``"sde-euler"`` on a continuous VP schedule this is
            NGDM's rectified reverse SDE (eq. 10) discretised by Euler–Maruyama. With a
            multistep rule each pixel's history starts with its own chain: while a pixel is on
            the source path its history is forgotten, so its first step is first order (a
            constant λ is then SDEdit from the rounded start time, exactly).

    Returns:
        :class:`EditResult` with ``x0`` the edit, ``lam`` and ``start_times`` (:math:`T_k`)
        expanded to ``(B, 1|C, *spatial)``. The noise used is not returned: pass ``z`` and
        ``step_noise`` (or the same seeded ``generator``) to reproduce a run bit for bit.
    """
    check_image(x0)
    lam64 = check_lam(lam, x0)
    if not isinstance(preserve, bool):
        raise ValueError(f"preserve={preserve!r} must be a bool")
    rule = process.step_rule(rule, eta, clip_x0)
    model = with_guidance(model, guidance, null_cond)
    T_k = process.schedule.rectified_time(grid.t[0].to(x0.device), lam64)
    z = source_noise(x0, z, generator, "ngdm")
    # Read once: a step whose t_prev is below every T_k has no pixel left on the path, which
    # each step then knows from its CPU time instead of reading the mask back from the device.
    first_start = float(T_k.min())

    def replace(info: StepInfo) -> Replaced | None:
        if float(info.t_prev) < first_start:
            return None
        M = info.t_prev.to(T_k.device) >= T_k  # not yet started at t_prev: follow the path
        # A pixel's own chain starts at T_k: the multistep history of a pixel that is still on
        # the source path is not its chain's, so it is forgotten (its first step is first order).
        return Replaced(torch.where(M, process.q_sample(x0, info.t_prev, z), info.x_prev), M)

    y = process.q_sample(x0, grid.t[0], z)  # every T_k <= T: all pixels start on the path
    noise = list(step_noise) if step_noise is not None else generator
    out = sample(model, y, grid, rule, cond=cond, noise=noise, callback=replace)
    x = out.x0
    if preserve:
        x = torch.where(T_k < float(grid.t[-1]), x0, x)
    batch_shape = (x0.shape[0], *lam64.shape[1:])
    info = {
        "method": "ngdm",
        "steps": len(grid),
        "t_start": float(grid.t[0]),
        "t_end": float(grid.t_prev[-1]),
        "eta": float(eta),
        "sampler": rule_spec(rule),
        "guidance": float(guidance),
        "preserve": preserve,
        "clip_x0": None if clip_x0 is None else [float(v) for v in clip_x0],
        "rounding": "smallest visited time >= T_k",
    }
    return EditResult(
        x0=x,
        nfe=out.nfe,
        lam=lam64.to(x0.dtype).expand(batch_shape),
        start_times=T_k.expand(batch_shape),
        info=info,
    )
