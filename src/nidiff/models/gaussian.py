r"""The exact denoiser of Gaussian data: a closed-form model for tests and sanity checks.

Data :math:`x_0 \sim \mathcal N(\mu, C)` (flattened to ``D = prod(dims)``) diffused by
:math:`x_t = A x_0 + B\,\Sigma^{1/2}\varepsilon` with :math:`A = \sqrt{\bar\alpha_t}`,
:math:`B = \sqrt{1-\bar\alpha_t}` and the noise model's :math:`\Sigma`. For a per-element time
map (NGDM's per-pixel times) :math:`A = \mathrm{diag}(a)` and :math:`B = \mathrm{diag}(b)` are
diagonal; for a scalar or per-sample time they are multiples of :math:`I`. Then

.. math::
    M = \mathrm{Cov}(x_t) = A C A + B \Sigma B, \qquad y = M^{-1}(x_t - A\mu),

    \hat x_0 = E[x_0 \mid x_t] = \mu + C A y, \qquad
    \nabla\log p_t(x_t) = -y, \qquad
    \mathrm{Cov}(x_0 \mid x_t) = C - C A M^{-1} A C.

The model output is the white noise estimate of the contract,
:math:`\hat\varepsilon = \Sigma^{-1/2} B^{-1}(x_t - A\hat x_0)`. Because
:math:`x_t - A\hat x_0 = (M - ACA)y = B\Sigma B y`, this equals

.. math:: \hat\varepsilon = \Sigma^{1/2}(b \odot y)
          \quad(\text{scalar } t:\ \hat\varepsilon = -B\,\Sigma^{1/2}\nabla\log p_t(x_t)),

which needs no division by :math:`b` and is the continuous limit where :math:`b \to 0`.
At :math:`t = 0` (:math:`B = 0`) :math:`\varepsilon` is undefined: the model returns zeros and
:math:`\hat x_0 = x_t` (exact, since :math:`x_t = x_0`).

Edge-preserving noise has no closed form here (its noise std depends on :math:`x_0`, so
:math:`x_t` is not Gaussian); use :class:`~nidiff.models.EmpiricalDenoiser` for it.
All linear algebra is float64 with Cholesky solves; outputs have ``x_t``'s dtype.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._checks import as_time, check_finite, expand_like
from ..noise.base import NoiseModel, dense_covariance
from ..noise.isotropic import IsotropicNoise
from ..schedule.base import Schedule

__all__ = ["GaussianDenoiser"]


def check_sample_shape(x_t: Tensor, dims: tuple[int, ...], name: str = "x_t") -> None:
    """Raise ``ValueError`` unless ``x_t`` is a floating ``(B, *dims)`` tensor."""
    if not isinstance(x_t, Tensor) or not x_t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor")
    if x_t.ndim != len(dims) + 1 or tuple(x_t.shape[1:]) != dims:
        want = ", ".join(map(str, dims))
        raise ValueError(f"{name} of shape {tuple(x_t.shape)} must be (B, {want})")


def time_rows(t: float | Tensor, x_t: Tensor) -> Tensor:
    """The time as float64 rows ``(1, D)`` (one time for all) or ``(B, D)`` (per sample/element)."""
    B = x_t.shape[0]
    tt = expand_like(as_time(t, device=x_t.device), x_t)
    if tt.ndim == 0:
        return tt.reshape(1, 1).expand(1, x_t[0].numel())
    return tt.expand(x_t.shape).reshape(B, -1)


class GaussianDenoiser:
    r"""Exact :math:`E[\varepsilon \mid x_t]` for Gaussian data :math:`\mathcal N(\mu, C)`.

    Callable per the model contract, ``out = model(x_t, t, cond)`` (``cond`` is ignored); the
    formulas are in the module docstring.

    Args:
        mean: :math:`\mu`, shape ``dims`` (one sample, no batch), e.g. ``(C, H, W)`` or ``(D,)``.
        cov: :math:`C`, symmetric positive semi-definite ``(D, D)``, ``D = prod(dims)``, in the
            row-major flattening of ``dims``.
        schedule: gives :math:`(A, B)` through ``schedule.coefficients(t)``.
        noise: the noise model (default :class:`~nidiff.noise.IsotropicNoise`); its dense
            :math:`\Sigma` is built once on ``dims`` (small ``D`` only).

    Raises:
        ValueError: for edge-preserving noise, or a ``cov`` of the wrong shape, not symmetric or
            not positive semi-definite.
    """

    def __init__(
        self, mean: Tensor, cov: Tensor, schedule: Schedule, noise: NoiseModel | None = None
    ):
        noise = IsotropicNoise() if noise is None else noise
        if getattr(noise, "data_conditioned", False):
            raise ValueError(
                "edge-preserving noise has no closed-form Gaussian posterior (its std depends on "
                "x0, so x_t is not Gaussian); use EmpiricalDenoiser(samples, schedule, noise)"
            )
        mean = check_finite(torch.as_tensor(mean, dtype=torch.float64), "mean")
        self.dims = tuple(mean.shape)
        D = mean.numel()
        cov = check_finite(torch.as_tensor(cov, dtype=torch.float64), "cov")
        if tuple(cov.shape) != (D, D):
            raise ValueError(f"cov of shape {tuple(cov.shape)} must be (D, D) = ({D}, {D})")
        scale = max(float(cov.abs().max()), 1e-300)
        if float((cov - cov.T).abs().max()) > 1e-10 * scale:
            raise ValueError("cov must be symmetric")
        if float(torch.linalg.eigvalsh(cov).min()) < -1e-10 * scale:
            raise ValueError("cov must be positive semi-definite")
        self.mean = mean
        self.cov = 0.5 * (cov + cov.T)
        self.schedule = schedule
        self.noise = noise
        self.Sigma = dense_covariance(noise, self.dims)

    # ----------------------------------------------------------------------------- core
    def _solve(self, x_t: Tensor, t: float | Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Return ``x`` ``(B, D)``, ``y = M⁻¹(x − aμ)`` ``(B, D)`` and ``a, b`` ``(B|1, D)``."""
        check_sample_shape(x_t, self.dims)
        B, dev = x_t.shape[0], x_t.device
        x = x_t.reshape(B, -1).to(torch.float64)
        rows = time_rows(t, x_t)
        if rows.shape[0] > 1 and bool((rows == rows[:1]).all()):
            rows = rows[:1]  # one time for the whole batch: factor once
        if rows.shape[0] == 1:
            uniq, idx = rows, torch.zeros(B, dtype=torch.long, device=dev)
        else:
            uniq, idx = torch.unique(rows, dim=0, return_inverse=True)
        a, b = self.schedule.coefficients(uniq)  # (U, D) float64
        C, S, mu = (m.to(dev) for m in (self.cov, self.Sigma, self.mean.reshape(-1)))
        M = a[:, :, None] * C * a[:, None, :] + b[:, :, None] * S * b[:, None, :]
        clean = (b == 0).all(dim=1)  # t = 0 rows: x̂0 = x_t, ε̂ = 0 (set by the caller)
        if bool(clean.any()):  # any factor will do there; use the identity
            eye = torch.eye(M.shape[-1], dtype=M.dtype, device=dev)
            M = torch.where(clean[:, None, None], eye, M)
        L, info = torch.linalg.cholesky_ex(M)
        if bool((info != 0).any()):
            raise ValueError(
                "Cov(x_t) = A C A + B Σ B is singular at this t: C must be positive definite "
                "where the noise (B Σ B) vanishes"
            )
        a, b, clean = a[idx], b[idx], clean[idx]
        r = x - a * mu
        if L.shape[0] == 1:  # y L Lᵀ = r, two triangular solves from the right
            u = torch.linalg.solve_triangular(L[0].T, r, upper=True, left=False)
            y = torch.linalg.solve_triangular(L[0], u, upper=False, left=False)
        else:
            y = torch.cholesky_solve(r[:, :, None], L[idx])[:, :, 0]
        if bool(clean.any()):
            y = torch.where(clean[:, None], torch.zeros_like(y), y)
        return x, y, a, b

    def _x0(self, x: Tensor, y: Tensor, a: Tensor, b: Tensor) -> Tensor:
        x0 = self.mean.reshape(-1).to(x.device) + (a * y) @ self.cov.to(x.device)
        clean = (b == 0).all(dim=1, keepdim=True)
        return torch.where(clean, x, x0) if bool(clean.any()) else x0

    # ----------------------------------------------------------------------------- API
    def __call__(self, x_t: Tensor, t: float | Tensor, cond: Any = None) -> Tensor:
        r"""White :math:`\hat\varepsilon = \Sigma^{1/2}(b\odot y)`, shape and dtype of ``x_t``."""
        _, y, _, b = self._solve(x_t, t)
        eps = self.noise.color((b * y).reshape(x_t.shape))
        return eps.to(x_t.dtype)

    def x0_hat(self, x_t: Tensor, t: float | Tensor) -> Tensor:
        r""":math:`E[x_0 \mid x_t] = \mu + C A M^{-1}(x_t - A\mu)`, shape and dtype of ``x_t``."""
        x, y, a, b = self._solve(x_t, t)
        return self._x0(x, y, a, b).reshape(x_t.shape).to(x_t.dtype)

    def score(self, x_t: Tensor, t: float | Tensor) -> Tensor:
        r""":math:`\nabla\log p_t(x_t) = -M^{-1}(x_t - A\mu)`, shape and dtype of ``x_t``
        (zero at :math:`t = 0`, where it is undefined)."""
        y = self._solve(x_t, t)[1]
        return (-y).reshape(x_t.shape).to(x_t.dtype)

    def posterior_cov(self, t: float | Tensor) -> Tensor:
        r""":math:`\mathrm{Cov}(x_0 \mid x_t) = C - C A M^{-1} A C` for a scalar ``t``; float64
        ``(D, D)`` (zero at :math:`t = 0`)."""
        tt = as_time(t)
        if tt.ndim != 0:
            raise ValueError(f"posterior_cov takes a scalar t, got shape {tuple(tt.shape)}")
        a, b = self.schedule.coefficients(tt)
        if float(b) == 0.0:
            return torch.zeros_like(self.cov)
        L = torch.linalg.cholesky(a * a * self.cov + b * b * self.Sigma)
        W = torch.linalg.solve_triangular(L, a * self.cov, upper=False)
        P = self.cov - W.T @ W
        return 0.5 * (P + P.T)

    def __repr__(self) -> str:
        return f"GaussianDenoiser(dims={self.dims}, noise={self.noise!r})"
