r"""One reverse step as a Gaussian: :math:`p(x_{t_{prev}} \mid x_t) = \mathcal N(\mu, s^2\Sigma)`.

Every sampler step in nidiff (DDPM, DDIM, their non-isotropic forms, the edge-preserving
posterior) returns a :class:`Transition`. Sampling draws ``x_prev = mean + std · Σ^{1/2} z`` with
injected white ``z``; edit-friendly inversion solves the same equation for ``z``
(:meth:`Transition.noise_of`), so sampling and inversion can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..noise.base import NoiseModel

__all__ = ["Transition", "all_zero"]


def all_zero(std: Tensor | float) -> bool:
    """Whether ``std`` is ``0`` everywhere. A host read: free for a std still on the CPU, where
    the step rules decide it (from the grid's times, before moving the std to the data's
    device)."""
    return bool((torch.as_tensor(std) == 0).all())


@dataclass(frozen=True)
class Transition:
    r"""The Gaussian reverse step :math:`\mathcal N(\text{mean}, \text{std}^2\,\Sigma)`.

    Attributes:
        mean: :math:`\hat\mu_t(x_t)`, shape of ``x_t``.
        std: :math:`\sigma_t`, a scalar tensor or a map broadcastable to ``mean`` (per pixel for
            the edge-preserving posterior); ``0`` for a deterministic step.
        noise: the noise model whose :math:`\Sigma^{1/2}` colours the white noise.
        x0_hat: the model's estimate of :math:`x_0`.
        eps_hat: the model output (white :math:`\hat\varepsilon`, or
            :math:`\sigma_t\odot\varepsilon`
            for edge-preserving models).
        deterministic: whether ``std`` is ``0`` everywhere. The step rules set it from what they
            know on the host (the times, :math:`\eta`), because reading ``std`` back from an
            accelerator would stall every step; ``None`` (a hand-built step) reads ``std``.
        state: what the next step of the same rule needs from this one (a multistep solver's
            history, :mod:`nidiff.samplers.rule`); ``None`` for one-step rules.
    """

    mean: Tensor
    std: Tensor
    noise: NoiseModel
    x0_hat: Tensor
    eps_hat: Tensor
    deterministic: bool | None = None
    state: Any = None

    @property
    def is_deterministic(self) -> bool:
        """``std == 0`` everywhere: :attr:`deterministic`, or read from ``std`` if unset."""
        if self.deterministic is not None:
            return self.deterministic
        return all_zero(self.std)

    def sample(self, z: Tensor | None) -> Tensor:
        r""":math:`x_{t_{prev}} = \mu + s\,\Sigma^{1/2} z`; no ``z`` for deterministic steps."""
        if z is None:
            if not self.is_deterministic:
                raise ValueError("this step is stochastic (std > 0): pass its white noise z")
            return self.mean
        if z.shape != self.mean.shape:
            raise ValueError(f"z of shape {tuple(z.shape)} != x of shape {tuple(self.mean.shape)}")
        return self.mean + self.std * self.noise.color(z)

    def noise_of(self, x_prev: Tensor) -> Tensor:
        r"""The white noise that :meth:`sample` maps to ``x_prev``:
        :math:`z = \Sigma^{-1/2}(x_{t_{prev}} - \mu)/s` (EF Alg. 1, eq. 5)."""
        if self.is_deterministic:
            raise ValueError("a deterministic step (std = 0) has no noise to extract")
        return self.noise.whiten((x_prev - self.mean) / self.std)
