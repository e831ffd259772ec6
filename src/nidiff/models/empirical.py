r"""The optimal denoiser of a finite dataset (the "empirical optimal denoiser").

For data :math:`\{x_i\}_{i=1}^N` with equal prior weights, :math:`p(x_t \mid x_i)` is Gaussian and

.. math::
    w_i(x_t) = \operatorname{softmax}_i\big(\log p(x_t \mid x_i)\big), \qquad
    \hat x_0 = E[x_0 \mid x_t] = \textstyle\sum_i w_i x_i .

* Fixed noise :math:`\Sigma` (isotropic, diagonal, GFF): :math:`x_t = a\odot x_0 + b\odot
  \Sigma^{1/2}\varepsilon` with :math:`a = \sqrt{\bar\alpha_t}`, :math:`b = \sqrt{1-\bar\alpha_t}`
  (per element for a per-element time), so
  :math:`\log p(x_t \mid x_i) = -\tfrac12\|\Sigma^{-1/2}(b^{-1}\odot(x_t - a\odot x_i))\|^2 +`
  const, and the output is the white :math:`\hat\varepsilon = \Sigma^{-1/2}(b^{-1}\odot(x_t -
  a\odot\hat x_0))`.
* Edge-preserving noise (EP eq. 11): :math:`x_t \mid x_i \sim \mathcal N(a x_i,
  \mathrm{diag}\,\sigma_t(x_i)^2)`; the std depends on :math:`x_i`, so the log-likelihood keeps its
  log-determinant, :math:`-\tfrac12\|(x_t - a x_i)/\sigma_t(x_i)\|^2 - \sum\log\sigma_t(x_i)`, and
  the output is the EP parametrisation :math:`E[\sigma_t\odot\varepsilon \mid x_t] = x_t - a\hat
  x_0` (EP eq. 15).

Where the noise vanishes (:math:`t = 0`, or pixels with zero std) the likelihood becomes a hard
constraint: the weights go to the data points that match :math:`x_t` there exactly (the nearest
one), the softer pixels breaking ties; the white output is 0 on those elements (pseudo-inverse).
Weights are computed in float64 with a softmax, in chunks of at most ``chunk`` numbers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._checks import check_finite
from ..noise.base import NoiseModel
from ..noise.diagonal import DiagonalNoise
from ..noise.isotropic import IsotropicNoise
from ..schedule.base import Schedule
from .gaussian import check_sample_shape, time_rows

__all__ = ["EmpiricalDenoiser"]


class EmpiricalDenoiser:
    r"""Exact :math:`E[x_0 \mid x_t]` (and the model output) for the empirical distribution.

    Args:
        data: the dataset ``(N, *dims)``.
        schedule: gives :math:`(a, b)` through ``schedule.coefficients(t)``.
        noise: the noise model (default isotropic); an edge-preserving one (anything with
            ``.sigma(x0, t)`` and ``.at``) switches to the EP likelihood and output.
        chunk: bound on the temporaries, in float64 numbers.

    Times: scalar, per-sample ``(B,)`` or per-element (for non-diagonal noise such as GFF, a
    per-element time must be > 0 everywhere). Edge-preserving noise evaluates
    :math:`\sigma_t(x_i)` on the whole dataset once per distinct time map in the batch.
    """

    def __init__(
        self,
        data: Tensor,
        schedule: Schedule,
        noise: NoiseModel | None = None,
        *,
        chunk: int = 2**22,
    ):
        data = torch.as_tensor(data)
        if not data.is_floating_point() or data.ndim < 2 or data.shape[0] < 1:
            raise ValueError(f"data must be a floating (N, *dims) tensor, got {tuple(data.shape)}")
        check_finite(data, "data")
        self.noise = IsotropicNoise() if noise is None else noise
        self.schedule, self.chunk, self.dims = schedule, int(chunk), tuple(data.shape[1:])
        self.edge = getattr(self.noise, "data_conditioned", False)
        self.data = data.to(torch.float64)  # (N, *dims)
        self.X = self.data.reshape(data.shape[0], -1)  # (N, D)
        self.std = None  # per-element std (1, D) when Σ is diagonal
        if isinstance(self.noise, IsotropicNoise):
            self.std = torch.ones(1, self.X.shape[1], dtype=torch.float64)
        elif isinstance(self.noise, DiagonalNoise):
            std = self.noise.color(torch.ones_like(self.data[:1]))
            if std.shape != self.data[:1].shape:
                raise ValueError("DiagonalNoise std must be one map for all samples, (1, *dims)")
            self.std = std.reshape(1, -1)
        if not self.edge:
            self.V = self.noise.whiten(self.data).reshape(self.X.shape)  # Σ^{-1/2} x_i
            self.V_sq = self.V.square().sum(1)

    # ------------------------------------------------------------------------- logits
    def _logits_per_sample(self, x: Tensor, a: Tensor, b: Tensor) -> Tensor:
        """Fast path: one (a, b) per row, fixed Σ; a matmul against the whitened data."""
        V, V_sq = self.V.to(x.device), self.V_sq.to(x.device)
        u = self.noise.whiten(x.reshape(-1, *self.dims)).reshape(x.shape)
        d2 = a * a * V_sq - 2 * a * (u @ V.T)  # ‖u − a v_i‖² minus a constant per row
        hard = b == 0
        soft = torch.where(hard, torch.zeros_like(d2), d2 / torch.where(hard, 1.0, b * b))
        return _combine(torch.where(hard, d2, torch.zeros_like(d2)), soft)

    def _logits_explicit(self, x: Tensor, a: Tensor, b: Tensor, sig: Tensor | None) -> Tensor:
        """Per-element (a, b), or EP stds ``sig`` ``(N, D)``: explicit differences in chunks."""
        X = self.X.to(x.device)
        n = max(1, self.chunk // (x.shape[0] * X.shape[1]))
        hard, soft = [], []
        for j in range(0, X.shape[0], n):
            diff = x[:, None] - a[:, None] * X[None, j : j + n]  # (R, n, D)
            if sig is not None:
                g = sig[None, j : j + n].expand_as(diff)
            elif self.std is not None:
                g = (b * self.std.to(x.device))[:, None].expand_as(diff)
            else:
                if bool((b == 0).any()):
                    raise ValueError("per-element t must be > 0 everywhere for non-diagonal noise")
                z = self.noise.whiten((diff / b[:, None]).reshape(-1, *self.dims))
                soft.append(z.reshape(diff.shape).square().sum(-1))
                hard.append(torch.zeros_like(soft[-1]))
                continue
            zero = g == 0
            gs = torch.where(zero, 1.0, g)
            s = torch.where(
                zero, 0.0, (diff / gs).square() + (2 * gs.log() if sig is not None else 0.0)
            )
            soft.append(s.sum(-1))
            hard.append(torch.where(zero, diff.square(), 0.0).sum(-1))
        return _combine(torch.cat(hard, 1), torch.cat(soft, 1))

    def _logits(self, x: Tensor, rows: Tensor) -> Tensor:
        a, b = self.schedule.coefficients(rows)  # (R, D) or (1, D)
        a, b = a.expand(x.shape[0], -1), b.expand(x.shape[0], -1)
        if self.edge:  # σ_t(x_i) for every distinct time row, then the explicit likelihood
            data = self.data.to(x.device)
            out = torch.empty(x.shape[0], self.X.shape[0], dtype=x.dtype, device=x.device)
            uniq, idx = torch.unique(rows, dim=0, return_inverse=True)
            for k, row in enumerate(uniq):
                sig = self.noise.sigma(data, row.reshape(1, *self.dims)).to(torch.float64)
                sig = sig.expand(data.shape).reshape(self.X.shape)
                sel = idx == k
                out[sel] = self._logits_explicit(x[sel], a[sel], b[sel], sig)
            return out
        if bool((rows == rows[:, :1]).all()):  # one time per sample
            return self._logits_per_sample(x, a[:, :1], b[:, :1])
        return self._logits_explicit(x, a, b, None)

    # ----------------------------------------------------------------------------- API
    def weights(self, x_t: Tensor, t: float | Tensor) -> Tensor:
        r"""Posterior weights :math:`w_i(x_t)`, float64 ``(B, N)``, rows summing to 1."""
        check_sample_shape(x_t, self.dims)
        x = x_t.reshape(x_t.shape[0], -1).to(torch.float64)
        rows = time_rows(t, x_t)
        step = max(1, self.chunk // max(1, self.X.shape[0]))
        if rows.shape[0] == 1:
            rows = rows.expand(x.shape[0], -1)
        parts = [
            self._logits(x[i : i + step], rows[i : i + step]).softmax(dim=1)
            for i in range(0, x.shape[0], step)
        ]
        return torch.cat(parts)

    def _x0(self, x_t: Tensor, t: float | Tensor) -> Tensor:
        return self.weights(x_t, t) @ self.X.to(x_t.device)

    def x0_hat(self, x_t: Tensor, t: float | Tensor) -> Tensor:
        r""":math:`\hat x_0 = \sum_i w_i x_i`, shape and dtype of ``x_t``."""
        return self._x0(x_t, t).reshape(x_t.shape).to(x_t.dtype)

    def __call__(self, x_t: Tensor, t: float | Tensor, cond: Any = None) -> Tensor:
        r"""White :math:`\hat\varepsilon` (fixed noise) or
        :math:`\widehat{\sigma_t\odot\varepsilon}` (edge-preserving); shape and dtype of ``x_t``."""
        x0 = self._x0(x_t, t)
        x = x_t.reshape(x0.shape).to(torch.float64)
        a, b = self.schedule.coefficients(time_rows(t, x_t))
        r = x - a * x0
        if self.edge:
            return r.reshape(x_t.shape).to(x_t.dtype)
        r = torch.where(b == 0, 0.0, r / torch.where(b == 0, 1.0, b))
        return self.noise.whiten(r.reshape(x_t.shape)).to(x_t.dtype)

    def __repr__(self) -> str:
        return f"EmpiricalDenoiser(N={self.X.shape[0]}, dims={self.dims}, noise={self.noise!r})"


def _combine(hard: Tensor, soft: Tensor) -> Tensor:
    """Log-weights ``−½ soft`` restricted to the rows' minimisers of the hard-constraint part."""
    keep = hard <= hard.min(dim=1, keepdim=True).values
    return torch.where(keep, -0.5 * soft, float("-inf"))
