r"""What a network predicts, converted in one place: :math:`\varepsilon`, :math:`x_0`, ``v``,
flow velocity, or edge-preserving scaled noise.

Every process writes :math:`x_t = \alpha_t x_0 + \sigma_t\Sigma^{1/2}\varepsilon`. Given
:math:`x_t`, any one of the following determines both :math:`\hat x_0` and the coloured noise
:math:`\hat\varepsilon_\Sigma = \Sigma^{1/2}\hat\varepsilon = (x_t - \alpha_t\hat x_0)/\sigma_t`:

* :class:`Epsilon`: white :math:`\hat\varepsilon`, :math:`\Sigma^{1/2}` applied outside the
  network (DDPM, NI-DDPM, Stable Diffusion 1/2);
* :class:`Data`: :math:`\hat x_0`;
* :class:`VPrediction`: :math:`v = \alpha_t\varepsilon_\Sigma - \sigma_t x_0` (Salimans & Ho,
  2022; SD 2.x-v);
* :class:`FlowVelocity`: :math:`u = \dot\alpha_t x_0 + \dot\sigma_t\varepsilon_\Sigma`, i.e.
  :math:`\varepsilon_\Sigma - x_0` on rectified flow (SD3, FLUX);
* :class:`ScaledNoise`: :math:`x_t - \alpha_t x_0 = \sigma_t\odot\varepsilon`
  (edge-preserving models, EP eq. 15).

Step rules call :meth:`Prediction.split` and never look at the network's parametrisation;
guidance is linear in the output for all of them (the conversions are affine in ``out`` with
coefficients that depend only on :math:`x_t` and ``t``), so guiding in any parametrisation
gives the same step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

from torch import Tensor

from ..noise.base import NoiseModel

__all__ = [
    "PREDICTIONS",
    "Coefficients",
    "Data",
    "Epsilon",
    "FlowVelocity",
    "Prediction",
    "ScaledNoise",
    "VPrediction",
]


class Coefficients(NamedTuple):
    r""":math:`\alpha_t, \sigma_t` (and, for velocity models, :math:`\dot\alpha_t, \dot\sigma_t`),
    each broadcastable to the data, in its dtype and on its device."""

    alpha: Tensor
    sigma: Tensor
    d_alpha: Tensor | None = None
    d_sigma: Tensor | None = None


class Prediction(ABC):
    """A network parametrisation: :meth:`split` an output into :math:`(\\hat x_0,
    \\hat\\varepsilon_\\Sigma)`, :meth:`compose` the output from them (training targets, implied
    outputs)."""

    #: Whether :meth:`split`/:meth:`compose` need the time derivatives of the schedule.
    needs_velocity: bool = False
    #: The name in a process description (:mod:`nidiff.spec`).
    name: str = ""

    @abstractmethod
    def split(
        self, x_t: Tensor, out: Tensor, c: Coefficients, noise: NoiseModel
    ) -> tuple[Tensor, Tensor]:
        r"""``(x0_hat, eps_sigma)`` of ``x_t``'s shape from the network output ``out``."""

    @abstractmethod
    def compose(self, x0: Tensor, eps_sigma: Tensor, c: Coefficients, noise: NoiseModel) -> Tensor:
        r"""The output a perfect network gives for clean ``x0`` and coloured noise ``eps_sigma``."""

    def target(self, x0: Tensor, eps: Tensor, c: Coefficients, noise: NoiseModel) -> Tensor:
        r"""The regression target for white noise ``eps``: :meth:`compose` of
        :math:`(x_0, \Sigma^{1/2}\varepsilon)`."""
        return self.compose(x0, noise.color(eps), c, noise)

    def implied(self, x_t: Tensor, x0: Tensor, c: Coefficients, noise: NoiseModel) -> Tensor:
        r"""The output that makes :math:`\hat x_0 = x_0` at ``x_t`` (CycleDiffusion's encoder)."""
        return self.compose(x0, (x_t - c.alpha * x0) / c.sigma, c, noise)

    def eps_sigma(self, x_t: Tensor, out: Tensor, c: Coefficients, noise: NoiseModel) -> Tensor:
        r""":math:`\hat\varepsilon_\Sigma` alone (NGDM's weighting map compares these)."""
        return self.split(x_t, out, c, noise)[1]

    def velocity(self, x_t: Tensor, out: Tensor, c: Coefficients, noise: NoiseModel) -> Tensor:
        r"""The path velocity :math:`\dot\alpha_t\hat x_0 + \dot\sigma_t\hat\varepsilon_\Sigma`
        (the probability-flow ODE's :math:`dx/dt`); needs ``c.d_alpha, c.d_sigma``."""
        x0_hat, eps_sigma = self.split(x_t, out, c, noise)
        return c.d_alpha * x0_hat + c.d_sigma * eps_sigma

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


class Epsilon(Prediction):
    r"""White :math:`\hat\varepsilon`:
    :math:`\hat x_0 = (x_t - \sigma_t\Sigma^{1/2}\hat\varepsilon)/\alpha_t` (DDIM eq. 9;
    NI-DDPM)."""

    name = "epsilon"

    def split(self, x_t, out, c, noise):
        eps_sigma = noise.color(out)
        return (x_t - c.sigma * eps_sigma) / c.alpha, eps_sigma

    def compose(self, x0, eps_sigma, c, noise):
        return noise.whiten(eps_sigma)

    def implied(self, x_t, x0, c, noise):
        return noise.whiten((x_t - c.alpha * x0) / c.sigma)

    def eps_sigma(self, x_t, out, c, noise):
        return noise.color(out)


class Data(Prediction):
    r""":math:`\hat x_0` itself;
    :math:`\hat\varepsilon_\Sigma = (x_t - \alpha_t\hat x_0)/\sigma_t`."""

    name = "x0"

    def split(self, x_t, out, c, noise):
        return out, (x_t - c.alpha * out) / c.sigma

    def compose(self, x0, eps_sigma, c, noise):
        return x0


class VPrediction(Prediction):
    r""":math:`v = \alpha_t\varepsilon_\Sigma - \sigma_t x_0` (Salimans & Ho, 2022; diffusers'
    ``v_prediction``). With :math:`r^2 = \alpha_t^2 + \sigma_t^2` (``1`` on VP schedules):
    :math:`x_0 = (\alpha_t x_t - \sigma_t v)/r^2`, :math:`\varepsilon_\Sigma = (\sigma_t x_t +
    \alpha_t v)/r^2`."""

    name = "v"

    def split(self, x_t, out, c, noise):
        r2 = c.alpha * c.alpha + c.sigma * c.sigma
        return (c.alpha * x_t - c.sigma * out) / r2, (c.sigma * x_t + c.alpha * out) / r2

    def compose(self, x0, eps_sigma, c, noise):
        return c.alpha * eps_sigma - c.sigma * x0


class FlowVelocity(Prediction):
    r"""The path velocity :math:`u = \dot x_t = \dot\alpha_t x_0 + \dot\sigma_t\varepsilon_\Sigma`
    (flow matching; :math:`u = \varepsilon_\Sigma - x_0` on rectified flow, SD3 and FLUX). With
    :math:`d = \alpha_t\dot\sigma_t - \sigma_t\dot\alpha_t` (``1`` on rectified flow):
    :math:`x_0 = (\dot\sigma_t x_t - \sigma_t u)/d`,
    :math:`\varepsilon_\Sigma = (\alpha_t u - \dot\alpha_t x_t)/d`. Needs a schedule with a time
    derivative (not a discrete DDPM table)."""

    name = "flow"

    needs_velocity = True

    def split(self, x_t, out, c, noise):
        d = c.alpha * c.d_sigma - c.sigma * c.d_alpha
        return (c.d_sigma * x_t - c.sigma * out) / d, (c.alpha * out - c.d_alpha * x_t) / d

    def compose(self, x0, eps_sigma, c, noise):
        return c.d_alpha * x0 + c.d_sigma * eps_sigma

    def velocity(self, x_t, out, c, noise):
        return out


class ScaledNoise(Prediction):
    r"""The noise as it enters :math:`x_t`: :math:`f = x_t - \alpha_t x_0 = \sigma_t\odot
    \varepsilon` (edge-preserving models, EP eq. 15, whose per-pixel :math:`\sigma_t` depends on
    :math:`x_0`); :math:`\hat x_0 = (x_t - f)/\alpha_t`, :math:`\hat\varepsilon_\Sigma =
    f/\sigma_t` in units of the schedule's :math:`\sigma_t`."""

    name = "scaled-noise"

    def split(self, x_t, out, c, noise):
        return (x_t - out) / c.alpha, out / c.sigma

    def compose(self, x0, eps_sigma, c, noise):
        return c.sigma * eps_sigma

    def implied(self, x_t, x0, c, noise):
        return x_t - c.alpha * x0


#: Every prediction by its name (``"epsilon"``, ``"x0"``, ``"v"``, ``"flow"``, ``"scaled-noise"``).
PREDICTIONS: dict[str, type[Prediction]] = {
    p.name: p for p in (Epsilon, Data, VPrediction, FlowVelocity, ScaledNoise)
}
