r"""The forward marginal and its inverse, shared by samplers, inversion and editing.

With white :math:`z \sim \mathcal N(0, I)` and a noise model :math:`\Sigma` (NI-DDPM, GFF paper
Sec. 3):

.. math::
    x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\Sigma^{1/2} z, \qquad
    \hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\Sigma^{1/2}\hat\varepsilon}{\sqrt{\bar\alpha_t}}.

Coefficients are computed in float64 by the schedule and cast to the data's dtype. Times follow
the nidiff contract: a scalar, one per sample ``(B,)`` or a per-element map (``expand_like``).
"""

from __future__ import annotations

from torch import Tensor

from .._checks import as_time, check_finite, expand_like
from ..models.prediction import Coefficients
from ..noise.base import NoiseModel
from ..schedule.base import Schedule

__all__ = ["coefficients_at", "coefficients_like", "predict_x0", "q_sample"]


def coefficients_like(schedule: Schedule, t: float | Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    r""":math:`(\alpha_t, \sigma_t)` (:math:`(\sqrt{\bar\alpha_t}, \sqrt{1-\bar\alpha_t})` for VP)
    broadcast against ``x`` ``(B, *dims)``.

    Computed in float64, then cast to ``x``'s dtype and device. Shapes: ``()``, ``(B, 1, ..., 1)``
    or the per-element map's shape, each broadcastable to ``x``.
    """
    tt = expand_like(as_time(t), x)
    a, b = schedule.coefficients(tt)
    return a.to(dtype=x.dtype, device=x.device), b.to(dtype=x.dtype, device=x.device)


def coefficients_at(
    schedule: Schedule, t: float | Tensor, x: Tensor, *, velocity: bool = False
) -> Coefficients:
    r""":math:`(\alpha_t, \sigma_t)` and, with ``velocity``, :math:`(\dot\alpha_t, \dot\sigma_t)`
    as :class:`~nidiff.models.prediction.Coefficients` ready for arithmetic with ``x`` (float64
    values cast to ``x``'s dtype and device, broadcastable to it)."""
    tt = expand_like(as_time(t), x)
    a, b = schedule.coefficients(tt)
    cast = {"dtype": x.dtype, "device": x.device}
    if not velocity:
        return Coefficients(a.to(**cast), b.to(**cast))
    da, db = schedule.velocity_coefficients(tt)
    return Coefficients(a.to(**cast), b.to(**cast), da.to(**cast), db.to(**cast))


def q_sample(
    schedule: Schedule, noise: NoiseModel, x0: Tensor, t: float | Tensor, z: Tensor
) -> Tensor:
    r"""Noise ``x0`` to time ``t``: :math:`x_t = \alpha_t x_0 + \sigma_t\Sigma^{1/2}z`
    (:meth:`NoiseModel.q_sample <nidiff.noise.base.NoiseModel.q_sample>`; EP eq. 11 for the
    data-conditioned edge-preserving noise).

    Args:
        schedule: the schedule giving :math:`(\alpha_t, \sigma_t)`.
        noise: the noise model :math:`\Sigma`.
        x0: clean data ``(B, *dims)``.
        t: time(s), scalar, ``(B,)`` or a per-element map.
        z: white noise, shape of ``x0``.

    Returns:
        :math:`x_t`, shape and dtype of ``x0``.
    """
    return noise.q_sample(schedule, x0, t, z)


def predict_x0(
    schedule: Schedule, noise: NoiseModel, x_t: Tensor, eps: Tensor, t: float | Tensor
) -> Tensor:
    r"""The clean-data estimate (DDIM eq. 9 of Song et al.; NI-DDPM, white :math:`\hat\varepsilon`):
    :math:`\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\Sigma^{1/2}\hat\varepsilon)
    /\sqrt{\bar\alpha_t}`.

    Args:
        x_t: noisy data ``(B, *dims)``.
        eps: the model's white noise prediction :math:`\hat\varepsilon`, shape of ``x_t``.
        t: time(s), scalar, ``(B,)`` or a per-element map.

    Returns:
        :math:`\hat x_0`, shape and dtype of ``x_t``.
    """
    if eps.shape != x_t.shape:
        raise ValueError(f"eps of shape {tuple(eps.shape)} != x_t of shape {tuple(x_t.shape)}")
    check_finite(x_t, "x_t")
    check_finite(eps, "eps")
    a, b = coefficients_like(schedule, t, x_t)
    return (x_t - b * noise.color(eps)) / a
