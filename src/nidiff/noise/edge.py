r"""Edge-preserving noise (Vandersanden et al., *Edge-preserving noise for diffusion models*, EP).

The forward process keeps the DDPM signal coefficient but gives every pixel its own noise std,
smaller on the edges of the clean image (EP eq. 11):

.. math::
    x_t = \sqrt{\bar\alpha_t}\,x_0 + \sigma_t \odot \varepsilon, \qquad
    \sigma_t = \frac{\sqrt{1-\bar\alpha_t}}
                    {(1-\tau(t))\sqrt{1 + G(x_0)/\lambda(t)} + \tau(t)},

with :math:`G(x_0) \in [0, 1]` a normalised gradient magnitude of :math:`x_0`
(:class:`SobelEdges`), :math:`\lambda(t)` the edge sensitivity, linear in :math:`u = t/t_{max}`
from :math:`\lambda_{min} = 10^{-4}` to :math:`\lambda_{max} = 10^{-1}` (pixel space; a smaller
:math:`10^{-5}` in latent space), and :math:`\tau(u) \in [0, 1]` the transition function:
:math:`\tau = 0` is pure edge-preserving noise, :math:`\tau = 1` is plain DDPM. The paper's
default reaches :math:`\tau = 1` at the transition point :math:`t_\Phi = 0.5`, so the second half
of the process is isotropic and :math:`x_{t_{max}}` is the usual :math:`\mathcal N(0, I)` prior.

Since the bracket is :math:`\ge 1`, :math:`\sigma_t \le \sqrt{1-\bar\alpha_t}` everywhere, with
equality where :math:`G = 0` or :math:`\tau = 1`. The network is trained to predict the
*scaled* noise :math:`\sigma_t\odot\varepsilon` (EP eq. 15; :meth:`EdgePreservingNoise.forward`).
:class:`EdgePreservingNoise` is a *data-conditioned* :class:`~nidiff.noise.base.NoiseModel`:
:math:`\Sigma` depends on :math:`x_0`, so it has no fixed ``color``/``whiten`` (its
:meth:`~EdgePreservingNoise.at` gives the diagonal model of one :math:`x_0` and ``t``), its
process is sampled only by its own posterior (:class:`~nidiff.samplers.edge.EdgePosterior`), and
its networks predict the scaled noise (:class:`~nidiff.models.prediction.ScaledNoise`).

Paper settings: pixel space, T = 500 (AFHQ-Cat 750), linear τ with :math:`t_\Phi = 0.5`; FID at
128² (CelebA / Church / Cat): DDPM 28.17 / 31.00 / 17.60, EP 26.15 / 23.17 / 13.06.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import as_time, broadcast_shape, check_all, check_finite, check_in_range, expand_like
from ..schedule.alpha_bar import AlphaBarSchedule
from .base import NoiseModel
from .diagonal import DiagonalNoise

__all__ = ["CosineTau", "EdgePreservingNoise", "LinearTau", "SigmoidTau", "SobelEdges"]

#: A transition function :math:`\tau(u)` of normalised time :math:`u \in [0, 1]`, elementwise.
TauFn = Callable[[Tensor], Tensor]
#: An edge map :math:`G(x_0)`: ``(B, *dims)`` -> a map in ``[0, 1]`` broadcastable to ``x0``.
EdgeFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class _PhiTau:
    r"""Base of the transition functions: ``t_phi`` in ``(0, 1]``, :math:`v = \min(u/t_\Phi, 1)`."""

    t_phi: float = 0.5

    def __post_init__(self) -> None:
        if not (isinstance(self.t_phi, (int, float)) and 0.0 < self.t_phi <= 1.0):
            raise ValueError(f"t_phi={self.t_phi!r} must lie in (0, 1] (a fraction of t_max)")

    def _v(self, u: Tensor) -> Tensor:
        return (u / self.t_phi).clamp(0.0, 1.0)


@dataclass(frozen=True)
class LinearTau(_PhiTau):
    r""":math:`\tau(u) = \min(u / t_\Phi, 1)`: continuous, reaching 1 at the transition point.

    The EP authors' code instead uses :math:`\tau = u` below :math:`t_\Phi` and then jumps to 1,
    which makes :math:`\sigma_t` discontinuous in ``t``; we do not copy that variant.
    """

    def __call__(self, u: Tensor) -> Tensor:
        return self._v(u)


@dataclass(frozen=True)
class CosineTau(_PhiTau):
    r""":math:`\tau(u) = \tfrac12\bigl(1 - \cos(\pi\min(u/t_\Phi, 1))\bigr)`: smooth 0 → 1."""

    def __call__(self, u: Tensor) -> Tensor:
        return 0.5 * (1.0 - torch.cos(math.pi * self._v(u)))


@dataclass(frozen=True)
class SigmoidTau(_PhiTau):
    r"""A logistic step centred at :math:`u = t_\Phi/2`, rescaled to hit 0 at 0 and 1 at
    :math:`t_\Phi` (and held at 1 after): with :math:`v = \min(u/t_\Phi, 1)` and
    :math:`s(v) = \mathrm{sigmoid}(k(v - \tfrac12))`,
    :math:`\tau = (s(v) - s(0)) / (s(1) - s(0))`. ``k > 0`` is the steepness in units of
    :math:`v`."""

    k: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.k, (int, float)) and math.isfinite(self.k) and self.k > 0):
            raise ValueError(f"k={self.k!r} must be a finite positive steepness")

    def __call__(self, u: Tensor) -> Tensor:
        s0, s1 = 1.0 / (1.0 + math.exp(self.k / 2)), 1.0 / (1.0 + math.exp(-self.k / 2))
        return ((torch.sigmoid(self.k * (self._v(u) - 0.5)) - s0) / (s1 - s0)).clamp(0.0, 1.0)


@dataclass(frozen=True)
class SobelEdges:
    r"""Normalised gradient magnitude :math:`G(x_0) \in [0, 1]` from a 3×3 Sobel filter.

    Per channel ``c`` the Sobel responses :math:`g_x^c, g_y^c` are taken on the last two dims;
    the magnitude is :math:`\|\nabla x_0\| = \sqrt{\sum_c (g_x^c)^2 + (g_y^c)^2}` (squared
    responses summed over channels, so opposite-sign edges in different channels do not cancel),
    or its square with ``squared=True`` (what the EP authors' code uses; the paper writes the
    norm). With ``channel_sum=True`` the responses are taken of the channel *sum*
    :math:`\sum_c x_0^c` instead, as the authors' code does for RGB (edges of opposite sign in
    two channels then cancel; identical for one channel). The map is divided by its maximum over
    each image (``per_image=True``, default) or over
    the whole batch (``per_image=False``, the authors' variant: an image's noise then depends on
    the other images in its batch). A flat map (maximum 0) gives :math:`G = 0`.

    Args:
        squared: keep the squared magnitude.
        per_image: normalise by each image's maximum rather than the batch maximum.
        padding: ``"replicate"`` (default: a constant image has no edges, including at its
            border) or ``"zeros"`` (the authors' choice: the image frame reads as an edge
            wherever border pixels are non-zero).
        channel_sum: take the Sobel responses of the channel sum (the authors' code).

    Shapes: ``(B, H, W)`` -> ``(B, H, W)``; ``(B, C, H, W)`` -> ``(B, 1, H, W)``. Output dtype is
    the input's (float16/bfloat16 are computed in float32).
    """

    squared: bool = False
    per_image: bool = True
    padding: str = "replicate"
    channel_sum: bool = False

    def __post_init__(self) -> None:
        if self.padding not in ("replicate", "zeros"):
            raise ValueError(f"padding={self.padding!r} must be 'replicate' or 'zeros'")

    def __call__(self, x0: Tensor) -> Tensor:
        if not x0.is_floating_point() or x0.ndim not in (3, 4):
            raise ValueError(
                f"SobelEdges expects a floating (B, H, W) or (B, C, H, W) image, got "
                f"{x0.dtype} of shape {tuple(x0.shape)}"
            )
        x = x0.unsqueeze(1) if x0.ndim == 3 else x0
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        if self.channel_sum and x.shape[1] != 1:
            x = x.sum(dim=1, keepdim=True)
        x = F.pad(x, (1, 1, 1, 1), mode="replicate" if self.padding == "replicate" else "constant")
        # Separable Sobel: a central difference along one axis, (1, 2, 1) smoothing along the
        # other. Differencing first makes a flat region exactly 0 (no rounding residue that the
        # max-normalisation would blow up to 1). Written with fused ops (add with alpha, addcmul)
        # to keep the kernel count low: on a GPU these small maps are launch-bound.
        dx = x[..., :, 2:] - x[..., :, :-2]  # (B, C, H + 2, W)
        dy = x[..., 2:, :] - x[..., :-2, :]  # (B, C, H, W + 2)
        gx = torch.add(dx[..., :-2, :] + dx[..., 2:, :], dx[..., 1:-1, :], alpha=2)
        gy = torch.add(dy[..., :, :-2] + dy[..., :, 2:], dy[..., :, 1:-1], alpha=2)
        mag = torch.addcmul(gx * gx, gy, gy)  # (B, C, H, W)
        if mag.shape[1] != 1:
            mag = mag.sum(dim=1, keepdim=True)  # (B, 1, H, W)
        if not self.squared:
            if torch.is_grad_enabled() and mag.requires_grad:
                # sqrt guarded so that gradients stay finite where mag = 0
                nz = mag > 0
                mag = torch.where(nz, torch.where(nz, mag, torch.ones_like(mag)).sqrt(), 0.0)
            else:
                mag = mag.sqrt()
        peak = mag.amax(dim=(1, 2, 3), keepdim=True) if self.per_image else mag.amax()
        # A flat map (peak 0) stays 0: 0 / tiny = 0. (A peak below the smallest normal number,
        # i.e. an image flat to working precision, is not stretched to 1.)
        out = (mag / peak.clamp_min(torch.finfo(mag.dtype).tiny)).to(x0.dtype)
        return out.squeeze(1) if x0.ndim == 3 else out


_DEFAULT_TAU = LinearTau(0.5)
_DEFAULT_EDGES = SobelEdges()


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype of the per-pixel EP arithmetic: ``x``'s, promoted to at least float32."""
    return torch.promote_types(x.dtype, torch.float32)


def time_coef(v: Tensor, like: Tensor) -> float | Tensor:
    """A float64 time coefficient made ready for per-pixel arithmetic with ``like``.

    A 0-d CPU value becomes a Python float (passed to the kernel as an argument: no copy, no
    host-device synchronisation); anything else is cast to ``like``'s dtype on ``like``'s device
    (a non-blocking copy for CPU values). Time coefficients are computed in float64 once; only
    their final value is rounded to the working dtype.
    """
    if v.ndim == 0 and v.device.type == "cpu":
        return v.item()
    return v.to(device=like.device, dtype=like.dtype, non_blocking=True)


def all_cpu(v: Tensor, value: float) -> bool:
    """``v == value`` everywhere, decided only for CPU tensors (``False`` on other devices, where
    the answer would cost a host-device synchronisation)."""
    return v.device.type == "cpu" and bool((v == value).all())


class EdgePreservingNoise(NoiseModel):
    r"""The EP forward process (EP eq. 11) on a variance-preserving schedule
    (:class:`~nidiff.schedule.AlphaBarSchedule`).

    Args:
        schedule: gives :math:`\bar\alpha_t` and ``t_max``.
        lambda_min: edge sensitivity :math:`\lambda` at ``t = 0`` (``> 0``).
        lambda_max: :math:`\lambda` at ``u = lambda_end`` (``>= lambda_min``).
        lambda_end: the fraction of ``t_max`` at which :math:`\lambda` reaches ``lambda_max``:
            ``1`` (default; the paper's "linear from λ_min to λ_max" over the process) or, as the
            EP authors' code does, the transition point :math:`t_\Phi` (then :math:`\lambda`
            keeps growing linearly after it, where :math:`\tau = 1` makes it irrelevant for the
            linear :math:`\tau`).
        tau: transition function of :math:`u = t/t_{max}` (any callable returning values in
            ``[0, 1]``); default :class:`LinearTau` with :math:`t_\Phi = 0.5`.
        edges: edge map :math:`G`; default :class:`SobelEdges` (per-image normalisation).

    Times ``t`` are a scalar, ``(B,)`` or a per-element tensor (see
    :func:`nidiff._checks.expand_like`). Time-only terms (:math:`\bar\alpha_t`,
    :math:`\lambda(t)`, :math:`\tau(t)`) are computed in float64 on the times' own device (CPU
    times are checked without touching the GPU); the per-pixel maps are computed in ``x0``'s
    dtype, promoted to at least float32 (:func:`compute_dtype`), and returned in ``x0``'s dtype.

    The edge map of a given ``x0`` can be computed once (:meth:`edge_map`) and reused for any
    number of times (:meth:`sigma_from_edges`, :meth:`relative_std_from_edges`), as the reverse
    step (:class:`~nidiff.samplers.edge.EdgePosterior`) does for :math:`\sigma_t` and
    :math:`\sigma_s`.
    """

    def __init__(
        self,
        schedule: AlphaBarSchedule,
        lambda_min: float = 1e-4,
        lambda_max: float = 1e-1,
        tau: TauFn = _DEFAULT_TAU,
        edges: EdgeFn = _DEFAULT_EDGES,
        lambda_end: float = 1.0,
    ):
        if not isinstance(schedule, AlphaBarSchedule):
            raise ValueError(
                "edge-preserving noise (EP eq. 11) needs a variance-preserving schedule "
                f"(DiscreteSchedule or VPSchedule), got {type(schedule).__name__}"
            )
        lo, hi = float(lambda_min), float(lambda_max)
        if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 < lo <= hi):
            raise ValueError(f"need 0 < lambda_min <= lambda_max, got {lambda_min=}, {lambda_max=}")
        if not callable(tau) or not callable(edges):
            raise ValueError("tau and edges must be callables")
        end = float(lambda_end)
        if not (math.isfinite(end) and 0.0 < end <= 1.0):
            raise ValueError(f"lambda_end={lambda_end!r} must lie in (0, 1] (a fraction of t_max)")
        self.lambda_end = end
        self.schedule, self.lambda_min, self.lambda_max = schedule, lo, hi
        self.tau_fn, self.edges = tau, edges

    # ------------------------------------------------------------------ time-only terms
    def _u(self, t: float | Tensor, device=None) -> Tensor:
        return self.schedule.check_time(as_time(t, device=device)) / self.schedule.t_max

    def lam(self, t: float | Tensor) -> Tensor:
        r"""Float64 :math:`\lambda(t) = \lambda_{min} + (\lambda_{max}-\lambda_{min})\,u/u_e`,
        :math:`u = t/t_{max}`, :math:`u_e` = ``lambda_end``."""
        return self._lam_of_u(self._u(t))

    def tau(self, t: float | Tensor) -> Tensor:
        r""":math:`\tau(t/t_{max})` in float64, checked to lie in ``[0, 1]``."""
        return self._tau_of_u(self._u(t))

    def _lam_of_u(self, u: Tensor) -> Tensor:
        if self.lambda_end != 1.0:
            u = u / self.lambda_end
        return self.lambda_min + (self.lambda_max - self.lambda_min) * u

    def _tau_of_u(self, u: Tensor) -> Tensor:
        tau = torch.as_tensor(self.tau_fn(u)).to(torch.float64)  # any callable is accepted
        # The built-in transition functions lie in [0, 1] by construction; only check them where
        # it is free (CPU), so that device times cost no synchronisation. Others: always.
        if not isinstance(self.tau_fn, _PhiTau) or tau.device.type == "cpu":
            check_in_range(tau, "tau(u)", 0.0, 1.0)
        return tau

    def checked_time(self, t: float | Tensor, like: Tensor, name: str = "t") -> Tensor:
        """``t`` as a checked float64 tensor on its own device, viewed to broadcast against
        ``like`` (:func:`~nidiff._checks.expand_like`). A CPU ``t`` costs no device sync."""
        return expand_like(self.schedule.check_time(as_time(t, name=name), name), like, name)

    def time_terms(self, tt: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        r"""``(log ᾱ_t, λ(t), τ(t))`` in float64 for a time from :meth:`checked_time`."""
        u = tt / self.schedule.t_max
        # tt is already checked: the schedule's unchecked map avoids re-validating it (which
        # would synchronise once more for device times).
        return self.schedule._log_alpha_bar(tt), self._lam_of_u(u), self._tau_of_u(u)

    # ------------------------------------------------------------------ per-pixel maps
    def edge_map(self, x0: Tensor) -> Tensor:
        r"""The edge map :math:`G(x_0) \ge 0`, checked, in :func:`compute_dtype` of ``x0``.

        The built-in :class:`SobelEdges` lies in ``[0, 1]`` by construction and is only
        shape-checked (no host-device synchronisation; a non-finite ``x0`` gives a non-finite map
        and propagates). The values of any other edge callable are checked as well.
        """
        if not isinstance(x0, Tensor) or not x0.is_floating_point() or x0.ndim < 2:
            raise ValueError("x0 must be a floating tensor of shape (B, *dims)")
        G = torch.as_tensor(self.edges(x0))
        if G.ndim != x0.ndim or broadcast_shape(G, x0, "edge map", "x0") != x0.shape:
            raise ValueError(f"edge map {tuple(G.shape)} does not fit x0 {tuple(x0.shape)}")
        G = G.to(compute_dtype(x0))
        if not isinstance(self.edges, SobelEdges):
            check_finite(G, "edge map")
            check_all(G >= 0, "edge map must be >= 0")
        return G

    @staticmethod
    def bracket(G: Tensor, lam: Tensor, tau: Tensor, one: Tensor | None = None) -> Tensor:
        r"""The bracket :math:`B = (1-\tau)\sqrt{1 + G/\lambda} + \tau \ge 1` of EP eq. 11.

        ``G`` is an edge map (its dtype is the working dtype), ``lam`` and ``tau`` float64 time
        terms broadcastable to it. Three kernels: :math:`y = \sqrt{1 + G/\lambda}`, then
        :math:`B = \mathrm{lerp}(y, 1, \tau)`; ``B`` is exactly 1 where ``G = 0`` or ``τ = 1``.
        ``one``: optionally, a 0-d 1 of ``G``'s dtype and device to reuse (saves a fill).
        """
        one = G.new_ones(()) if one is None else one
        lam_c = time_coef(lam, G)
        if isinstance(lam_c, float):
            y = torch.add(one, G, alpha=1.0 / lam_c)
        else:
            y = torch.addcdiv(one, G, lam_c)
        return torch.lerp(y.sqrt(), one, time_coef(tau, G))

    def _relative_std(self, G: Tensor, tt: Tensor) -> Tensor:
        _, lam, tau = self.time_terms(tt)
        return torch.reciprocal(self.bracket(G, lam, tau))

    def _sigma(self, G: Tensor, tt: Tensor) -> Tensor:
        log_ab, lam, tau = self.time_terms(tt)
        full = time_coef((-torch.expm1(log_ab)).clamp_min(0).sqrt(), G)
        return torch.reciprocal(self.bracket(G, lam, tau)) * full

    def relative_std_from_edges(self, G: Tensor, t: float | Tensor) -> Tensor:
        r""":meth:`relative_std` from an edge map ``G`` (e.g. :meth:`edge_map`), in ``G``'s
        dtype; ``t`` must fit ``G`` (:func:`~nidiff._checks.expand_like`)."""
        return self._relative_std(G, self.checked_time(t, G))

    def sigma_from_edges(self, G: Tensor, t: float | Tensor) -> Tensor:
        r""":meth:`sigma` from an edge map ``G`` (e.g. :meth:`edge_map`), in ``G``'s dtype; ``t``
        must fit ``G``. Compute ``G`` once and call this for every time needed."""
        return self._sigma(G, self.checked_time(t, G))

    def relative_std(self, x0: Tensor, t: float | Tensor) -> Tensor:
        r""":math:`\sigma_t / \sqrt{1-\bar\alpha_t} = 1 / [(1-\tau)\sqrt{1+G(x_0)/\lambda} + \tau]`.

        In ``(0, 1]`` and finite for every ``t``, ``t = 0`` included. Shape: the edge map's
        (``(B, 1, H, W)`` for ``(B, C, H, W)`` images) broadcast with the expanded ``t``.
        """
        tt = self._checked_for(x0, t)
        return self._relative_std(self.edge_map(x0), tt).to(x0.dtype)

    def _checked_for(self, x0: Tensor, t: float | Tensor) -> Tensor:
        if not isinstance(x0, Tensor) or not x0.is_floating_point() or x0.ndim < 2:
            raise ValueError("x0 must be a floating tensor of shape (B, *dims)")
        return self.checked_time(t, x0)

    def sigma(self, x0: Tensor, t: float | Tensor) -> Tensor:
        r"""The per-pixel noise std :math:`\sigma_t(x_0)` of EP eq. 11 (shape as
        :meth:`relative_std`, dtype ``x0``'s)."""
        tt = self._checked_for(x0, t)
        return self._sigma(self.edge_map(x0), tt).to(x0.dtype)

    def at(self, x0: Tensor, t: float | Tensor) -> DiagonalNoise:
        r""":math:`\Sigma^{1/2} = \mathrm{diag}(\sigma_t/\sqrt{1-\bar\alpha_t})`, so that
        :math:`x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\,\Sigma^{1/2}\varepsilon`."""
        return DiagonalNoise(self.relative_std(x0, t))

    def forward(self, x0: Tensor, t: float | Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        r"""Noise ``x0`` to time ``t`` with white ``eps`` (same shape as ``x0``).

        Returns:
            ``(x_t, target)`` with :math:`x_t = \sqrt{\bar\alpha_t}x_0 + \sigma_t\odot\varepsilon`
            and ``target`` :math:`= \sigma_t\odot\varepsilon`, the regression target of EP eq. 15.
            Both have ``x0``'s shape and dtype.
        """
        tt = self._checked_for(x0, t)
        if not isinstance(eps, Tensor) or eps.shape != x0.shape:
            raise ValueError(f"eps must have x0's shape {tuple(x0.shape)}")
        G = self.edge_map(x0)
        cd = G.dtype
        target = self._sigma(G, tt) * eps.to(cd)
        log_ab = self.schedule._log_alpha_bar(tt)  # tt checked above
        a = time_coef((0.5 * log_ab).exp(), G)
        x_t = (
            torch.add(target, x0.to(cd), alpha=a)
            if isinstance(a, float)
            else a * x0.to(cd) + target
        )
        return x_t.to(x0.dtype), target.to(x0.dtype)

    # ------------------------------------------------------------------ as a noise model
    data_conditioned = True

    def _no_fixed_sigma(self, op: str) -> Tensor:
        raise ValueError(
            f"edge-preserving noise has no fixed covariance to {op} (it depends on x0): use "
            ".at(x0, t) for the diagonal model of one image and time"
        )

    def color(self, z: Tensor) -> Tensor:
        return self._no_fixed_sigma("color with")

    def whiten(self, x: Tensor) -> Tensor:
        return self._no_fixed_sigma("whiten with")

    def apply(self, x: Tensor) -> Tensor:
        return self._no_fixed_sigma("apply")

    def q_sample(self, schedule, x0: Tensor, t: float | Tensor, z: Tensor) -> Tensor:
        r"""EP eq. 11, :math:`\sqrt{\bar\alpha_t}x_0 + \sigma_t(x_0)\odot z`, on this noise's own
        schedule (a :class:`~nidiff.process.Process` checks once that ``schedule`` is it)."""
        return self.forward(x0, t, z)[0]

    def prior(self, z: Tensor) -> Tensor:
        r""":math:`x_T = z`: the process is isotropic at ``t_max`` (:math:`\tau(1) = 1`)."""
        return z

    def native_prediction(self):
        r"""EP networks predict :math:`\sigma_t\odot\varepsilon` (EP eq. 15)."""
        from ..models.prediction import ScaledNoise

        return ScaledNoise()

    def to_spec(self) -> dict:
        """``lambda_min/max``, the transition function and the edge operator, as plain values
        (:mod:`nidiff.spec`); a custom ``tau`` or ``edges`` callable cannot be serialised."""
        kinds = {LinearTau: "linear", CosineTau: "cosine", SigmoidTau: "sigmoid"}
        if type(self.tau_fn) not in kinds or not isinstance(self.edges, SobelEdges):
            raise ValueError(f"cannot serialise a custom tau or edge map: {self!r}")
        spec = {"kind": "edge", "lambda_min": self.lambda_min, "lambda_max": self.lambda_max}
        if self.lambda_end != 1.0:
            spec["lambda_end"] = self.lambda_end
        spec |= {"tau": kinds[type(self.tau_fn)], "t_phi": self.tau_fn.t_phi}
        if isinstance(self.tau_fn, SigmoidTau):
            spec["k"] = self.tau_fn.k
        e = self.edges
        spec |= {"squared": e.squared, "per_image": e.per_image, "padding": e.padding}
        return spec | ({"channel_sum": True} if e.channel_sum else {})

    def __repr__(self) -> str:
        return (
            f"EdgePreservingNoise({self.schedule!r}, lambda_min={self.lambda_min:g}, "
            f"lambda_max={self.lambda_max:g}, tau={self.tau_fn!r}, edges={self.edges!r})"
        )
