r"""A diffusion process at run time: a schedule and a noise, with the three things methods need.

Editing and inversion methods work for every noise process through this one object:

* :meth:`Process.q_sample` — the forward marginal :math:`x_t \sim q(x_t \mid x_0)` from white
  noise ``z`` (isotropic, diagonal and GFF: :math:`\sqrt{\bar\alpha_t}x_0 +
  \sqrt{1-\bar\alpha_t}\Sigma^{1/2}z`; edge-preserving: EP eq. 11 with :math:`\sigma_t(x_0)`);
* :meth:`Process.rule` — the reverse step (NI-)DDIM with η, or the EP posterior;
* :meth:`Process.prior` — :math:`x_T` from white noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from .noise import EdgePreservingNoise, IsotropicNoise, NoiseModel
from .samplers import DDIM, EdgePosterior
from .samplers.forward import q_sample
from .schedule import Schedule

__all__ = ["Process"]


@dataclass(frozen=True)
class Process:
    """``schedule`` + ``noise`` (a :class:`NoiseModel` or an :class:`EdgePreservingNoise`)."""

    schedule: Schedule
    noise: NoiseModel | EdgePreservingNoise = field(default_factory=IsotropicNoise)

    @property
    def is_edge(self) -> bool:
        return isinstance(self.noise, EdgePreservingNoise)

    def q_sample(self, x0: Tensor, t: float | Tensor, z: Tensor) -> Tensor:
        """:math:`x_t` from clean ``x0`` and white ``z`` (same shape); ``t`` scalar/(B,)/map."""
        if self.is_edge:
            return self.noise.forward(x0, t, z)[0]
        return q_sample(self.schedule, self.noise, x0, t, z)

    def rule(self, eta: float = 1.0, clip_x0: tuple[float, float] | None = None):
        """The reverse step: (NI-)DDIM with ``eta``; the EP posterior (stochastic, η = 1 only)."""
        if self.is_edge:
            if eta != 1.0 or clip_x0 is not None:
                raise ValueError("the edge-preserving posterior takes eta=1 and no clipping")
            return EdgePosterior(self.noise)
        return DDIM(self.schedule, self.noise, eta, clip_x0=clip_x0)

    def prior(self, z: Tensor) -> Tensor:
        r""":math:`x_T = \Sigma^{1/2}z` (isotropic for EP: :math:`\tau(T) = 1`)."""
        return z if self.is_edge else self.noise.color(z)
