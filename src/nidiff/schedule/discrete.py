r"""Discrete DDPM schedules: :math:`\bar\alpha_t = \prod_{s=1}^t (1-\beta_s)` on ``t = 0..T``.

Between integer steps :math:`\log\bar\alpha` is interpolated linearly, so :math:`\bar\alpha(t)` is
defined for float ``t`` of any shape (needed by NGDM's per-pixel times) and is exactly the table at
integers. Paper time ``t`` corresponds to diffusers' integer timestep ``t - 1``: the table here is
``[1, *alphas_cumprod]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .._checks import check_finite
from .alpha_bar import AlphaBarSchedule

__all__ = ["DiscreteSchedule"]


class DiscreteSchedule(AlphaBarSchedule):
    r"""A DDPM schedule of ``T`` steps given by its betas :math:`\beta_1..\beta_T`.

    Build it with :meth:`linear` (Ho et al., 1e-4 → 0.02), :meth:`scaled_linear` (Stable
    Diffusion, 0.00085 → 0.012 in sqrt space), :meth:`cosine` (Nichol & Dhariwal), from given
    ``betas``, from a table of ``alphas_cumprod`` or from a diffusers scheduler.

    Attributes:
        betas: float64 tensor ``(T,)``.
        log_alpha_bar_table: float64 tensor ``(T + 1,)``, :math:`\log\bar\alpha_t` for ``t = 0..T``
            (entry 0 is 0: clean data).
    """

    def __init__(self, betas: Sequence[float] | np.ndarray | Tensor):
        b = torch.as_tensor(
            np.asarray(betas, dtype=np.float64)
            if not isinstance(betas, Tensor)
            else betas.detach().to(torch.float64).cpu()
        )
        if b.ndim != 1 or b.numel() == 0:
            raise ValueError(f"betas must be a non-empty 1-d sequence, got shape {tuple(b.shape)}")
        _check_T(int(b.numel()))
        check_finite(b, "betas")
        if bool((b <= 0).any()) or bool((b >= 1).any()):
            raise ValueError("betas must lie in the open interval (0, 1)")
        self.betas = b.clone()
        self.T = int(b.numel())
        self.t_max = float(self.T)
        self.log_alpha_bar_table = torch.cat([b.new_zeros(1), torch.cumsum(torch.log1p(-b), 0)])
        #: How it was built, for :meth:`to_spec` (a named constructor, or the betas).
        self._spec: dict | None = None
        # -log ᾱ is strictly increasing; its table is what time_of_log_alpha_bar searches.
        self._neg_table = -self.log_alpha_bar_table

    # ----------------------------------------------------------------------- constructors
    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        """Ho et al. (2020): betas linear from ``beta_start`` to ``beta_end``."""
        s = cls(np.linspace(beta_start, beta_end, _check_T(T), dtype=np.float64))
        return s._named("linear", T=int(T), beta_start=beta_start, beta_end=beta_end)

    @classmethod
    def scaled_linear(cls, T: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012):
        """Stable Diffusion: ``sqrt(beta)`` linear from ``sqrt(beta_start)`` to ``sqrt(beta_end)``.

        Computed in float64 here; diffusers computes it in float32 — build with
        :meth:`from_diffusers` to reproduce a pipeline's table bit for bit.
        """
        root = np.linspace(beta_start**0.5, beta_end**0.5, _check_T(T), dtype=np.float64)
        s = cls(root**2)
        return s._named("scaled_linear", T=int(T), beta_start=beta_start, beta_end=beta_end)

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999):
        r"""Nichol & Dhariwal (2021), diffusers' ``squaredcos_cap_v2``:
        :math:`\bar\alpha(t) \propto \cos^2(\frac{t/T+s}{1+s}\frac\pi2)`, betas clipped at
        ``max_beta``."""
        T = _check_T(T)

        def f(u: float) -> float:
            return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

        betas = [min(1 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)]
        return cls(betas)._named("cosine", T=T, s=s, max_beta=max_beta)

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod: Sequence[float] | np.ndarray | Tensor):
        r"""From a table :math:`\bar\alpha_1..\bar\alpha_T` (diffusers' ``alphas_cumprod``)."""
        ac = torch.as_tensor(
            np.asarray(alphas_cumprod, dtype=np.float64)
            if not isinstance(alphas_cumprod, Tensor)
            else alphas_cumprod.detach().to(torch.float64).cpu()
        )
        if ac.ndim != 1 or ac.numel() == 0:
            raise ValueError("alphas_cumprod must be a non-empty 1-d sequence")
        check_finite(ac, "alphas_cumprod")
        prev = torch.cat([ac.new_ones(1), ac[:-1]])
        if bool((ac >= prev).any()) or bool((ac <= 0).any()):
            raise ValueError("alphas_cumprod must be strictly decreasing and positive")
        return cls(1 - ac / prev)

    @classmethod
    def from_diffusers(cls, scheduler) -> DiscreteSchedule:
        """From any diffusers scheduler exposing ``alphas_cumprod`` (DDPM, DDIM, ...)."""
        ac = getattr(scheduler, "alphas_cumprod", None)
        if ac is None:
            raise ValueError(f"{type(scheduler).__name__} has no alphas_cumprod table")
        return cls.from_alphas_cumprod(torch.as_tensor(ac))

    def _named(self, kind: str, **args) -> DiscreteSchedule:
        self._spec = {"kind": kind, **{k: v for k, v in args.items()}}
        return self

    def to_spec(self) -> dict:
        """``{"kind": "linear" | "scaled_linear" | "cosine", ...}`` for the named constructors,
        else ``{"kind": "betas", "betas": [...]}`` (exact float64 values)."""
        return dict(self._spec) if self._spec else {"kind": "betas", "betas": self.betas.tolist()}

    # -------------------------------------------------------------------------- the map
    def _log_alpha_bar(self, t: Tensor) -> Tensor:
        table = self.log_alpha_bar_table.to(t.device)
        lo = t.floor().clamp(0, self.T - 1).long()
        frac = t - lo
        return table[lo] + frac * (table[lo + 1] - table[lo])

    def _time_of_log_alpha_bar(self, log_ab: Tensor) -> Tensor:
        neg = self._neg_table.to(log_ab.device)
        y = (-log_ab).clamp(0, float(neg[-1]))
        hi = torch.searchsorted(neg, y.contiguous(), right=False).clamp(1, self.T)
        lo = hi - 1
        frac = (y - neg[lo]) / (neg[hi] - neg[lo])
        return lo.to(log_ab.dtype) + frac

    def __repr__(self) -> str:
        return (
            f"DiscreteSchedule(T={self.T}, beta_1={float(self.betas[0]):.3g}, "
            f"beta_T={float(self.betas[-1]):.3g})"
        )


#: The largest number of training steps a schedule may have (its tables are 8 bytes a step).
MAX_T = 1_000_000


def _check_T(T: int) -> int:
    if isinstance(T, bool) or not isinstance(T, int | float) or int(T) != T or T < 1:
        raise ValueError(f"T={T!r} must be a positive integer")
    if T > MAX_T:
        raise ValueError(f"T={T:,} exceeds the {MAX_T:,} training steps a schedule may have")
    return int(T)
