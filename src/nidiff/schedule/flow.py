r"""Rectified flow (Liu et al., 2023; Esser et al., 2024 — SD3; FLUX): :math:`\alpha_t = 1 - t`,
:math:`\sigma_t = t` on ``t ∈ [0, 1]``.

The path :math:`x_t = (1-t)\,x_0 + t\,\Sigma^{1/2}\varepsilon` has velocity
:math:`\dot x_t = \Sigma^{1/2}\varepsilon - x_0`, which flow models predict. Time here is
diffusers' ``sigma`` (the flow schedulers' ``timestep`` is ``sigma * num_train_timesteps``).

SD3 and FLUX sample on *shifted* grids, which spend more steps at high noise. The shift is a map
of the grid, not of the schedule (the network is trained on :math:`\sigma` itself):

* static (SD3, ``shift`` :math:`s`): :math:`\sigma \mapsto s\sigma/(1 + (s-1)\sigma)`;
* dynamic (FLUX, resolution dependent): :math:`\sigma \mapsto e^\mu/(e^\mu + 1/\sigma - 1)` with
  :math:`\mu` linear in the number of image tokens (:func:`flux_mu`).

:func:`flow_grid` builds the grid exactly as diffusers' ``FlowMatchEulerDiscreteScheduler``
does (including its quirk of shifting the training table's smallest sigma once more).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .base import Schedule
from .grid import TimeGrid, custom_grid

__all__ = ["RectifiedFlow", "dynamic_shift", "flow_grid", "flux_mu", "static_shift"]


class RectifiedFlow(Schedule):
    r""":math:`\alpha_t = 1 - t`, :math:`\sigma_t = t`, ``t_max = 1`` (SNR 0 at ``t = 1``)."""

    t_max = 1.0

    def _log_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.log1p(-t), torch.log(t)

    def _time_of_log_snr(self, log_snr: Tensor) -> Tensor:
        # ℓ = 2 log((1 - t)/t)  ⇔  t = sigmoid(-ℓ/2)
        return torch.sigmoid(-0.5 * log_snr)

    def coefficients(self, t: float | Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`(1 - t, t)` in float64 (exactly, as flow schedulers compute them)."""
        tt = self.check_time(t)
        return 1.0 - tt, tt.clone()

    def sigma2(self, t: float | Tensor) -> Tensor:
        return self.check_time(t).square()

    def velocity_coefficients(self, t: float | Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`(\dot\alpha, \dot\sigma) = (-1, 1)`: the velocity is
        :math:`\Sigma^{1/2}\varepsilon - x_0`."""
        tt = self.check_time(t)
        return -torch.ones_like(tt), torch.ones_like(tt)

    def drift_diffusion(self, t: float | Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`f = -1/(1-t)`, :math:`g^2 = 2t/(1-t)` (both singular at ``t = 1``)."""
        tt = self.check_time(t)
        return -1.0 / (1.0 - tt), 2.0 * tt / (1.0 - tt)

    def to_spec(self) -> dict:
        return {"kind": "flow"}

    def __repr__(self) -> str:
        return "RectifiedFlow()"


def static_shift(sigma: Tensor | np.ndarray | float, shift: float):
    r"""SD3's timestep shift :math:`s\sigma/(1 + (s-1)\sigma)`, ``shift`` :math:`s > 0`."""
    _check_positive(shift, "shift")
    return shift * sigma / (1 + (shift - 1) * sigma)


def dynamic_shift(sigma: Tensor | np.ndarray | float, mu: float):
    r"""FLUX's resolution-dependent shift :math:`e^\mu/(e^\mu + (1/\sigma - 1))` (diffusers'
    exponential ``time_shift`` with power 1); ``sigma`` in ``(0, 1]``."""
    if not math.isfinite(mu):
        raise ValueError(f"mu={mu!r} must be finite")
    return math.exp(mu) / (math.exp(mu) + (1 / sigma - 1))


def flux_mu(
    image_seq_len: int,
    base_seq_len: int = 256,
    max_seq_len: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    r""":math:`\mu` of the dynamic shift, linear in the number of image tokens (FLUX pipelines'
    ``calculate_shift``): ``base_shift`` at ``base_seq_len`` tokens, ``max_shift`` at
    ``max_seq_len`` (a 1024² FLUX image has 4096 packed tokens)."""
    if int(image_seq_len) != image_seq_len or image_seq_len < 1:
        raise ValueError(f"image_seq_len={image_seq_len!r} must be a positive integer")
    if max_seq_len <= base_seq_len:
        raise ValueError(f"need max_seq_len > base_seq_len, got {max_seq_len} <= {base_seq_len}")
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return image_seq_len * m + (base_shift - m * base_seq_len)


def flow_grid(
    steps: int, *, shift: float = 1.0, mu: float | None = None, train_steps: int = 1000
) -> TimeGrid:
    r"""The grid of diffusers' ``FlowMatchEulerDiscreteScheduler.set_timesteps(steps)``.

    Sigmas ``linspace(1, sigma_min, steps)`` are shifted (statically by ``shift``, or dynamically
    by ``mu`` when given: ``use_dynamic_shifting``) and a final ``0`` is appended. As in diffusers,
    ``sigma_min`` is the training table's smallest sigma ``1/train_steps``, itself already shifted
    when the shift is static.

    Args:
        steps: number of steps ``N >= 1``.
        shift: static shift (SD3: 3.0); ignored when ``mu`` is given.
        mu: dynamic shift (FLUX: :func:`flux_mu` of the token count).
        train_steps: the scheduler's ``num_train_timesteps``.
    """
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive integer")
    if int(train_steps) != train_steps or train_steps < 1:
        raise ValueError(f"train_steps={train_steps!r} must be a positive integer")
    _check_positive(shift, "shift")
    sigma_min = 1.0 / train_steps
    if mu is None:
        sigma_min = static_shift(sigma_min, shift)
    sigmas = np.linspace(float(train_steps), sigma_min * train_steps, int(steps)) / train_steps
    sigmas = static_shift(sigmas, shift) if mu is None else dynamic_shift(sigmas, mu)
    return custom_grid(np.asarray(sigmas, dtype=np.float64))


def _check_positive(v: float, name: str) -> None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name}={v!r} must be a finite number > 0")
