r"""A diffusion process at run time: schedule, noise and what the network predicts.

Editing, inversion and sampling work for every process through this one object:

* :meth:`Process.q_sample` — the forward marginal :math:`x_t \sim q(x_t \mid x_0)` from white
  noise ``z`` (:math:`\alpha_t x_0 + \sigma_t\Sigma^{1/2}z`; EP eq. 11 for the data-conditioned
  edge-preserving noise);
* :meth:`Process.split` — a model output as :math:`(\hat x_0, \hat\varepsilon_\Sigma)`, whatever
  the network predicts (:mod:`nidiff.models.prediction`);
* :meth:`Process.rule` / :meth:`Process.sampler` — the reverse step: the default rule of the
  process, or any solver of the registry (:mod:`nidiff.samplers.registry`) by name;
* :meth:`Process.prior` — :math:`x_{t_{max}}` from white noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from .models.prediction import Coefficients, Prediction
from .noise import IsotropicNoise, NoiseModel
from .samplers.forward import coefficients_at
from .schedule import Schedule

__all__ = ["Process"]


@dataclass(frozen=True)
class Process:
    """``schedule`` + ``noise`` + ``prediction`` (default: what the noise's networks predict —
    white :math:`\\hat\\varepsilon`, or the scaled noise of edge-preserving models).

    Raises:
        ValueError: for a prediction the schedule cannot serve (a velocity model on a discrete
            table without a time derivative), or a data-conditioned noise built on another
            schedule or paired with a foreign prediction.
    """

    schedule: Schedule
    noise: NoiseModel = field(default_factory=IsotropicNoise)
    prediction: Prediction = None  # type: ignore[assignment]  # resolved in __post_init__

    def __post_init__(self) -> None:
        if not isinstance(self.schedule, Schedule):
            raise ValueError(f"schedule must be a nidiff Schedule, got {type(self.schedule)}")
        if not isinstance(self.noise, NoiseModel):
            raise ValueError(f"noise must be a nidiff NoiseModel, got {type(self.noise)}")
        native = self.noise.native_prediction()
        if self.prediction is None:
            object.__setattr__(self, "prediction", native)
        if not isinstance(self.prediction, Prediction):
            raise ValueError(f"prediction must be a Prediction, got {type(self.prediction)}")
        if self.prediction.needs_velocity and not self.schedule.has_velocity:
            raise ValueError(
                f"a {type(self.prediction).__name__} model cannot run on {self.schedule!r}: its "
                "output is a time derivative, and this schedule has none (use a continuous "
                "schedule: RectifiedFlow, VPSchedule, VESchedule)"
            )
        if self.noise.data_conditioned:
            if self.prediction != native:
                raise ValueError(
                    f"{type(self.noise).__name__} models predict {native!r}, not "
                    f"{self.prediction!r}"
                )
            own = getattr(self.noise, "schedule", self.schedule)
            if own is not self.schedule and not _same_schedule(own, self.schedule):
                raise ValueError(f"the noise was built on {own!r}, not on {self.schedule!r}")

    @property
    def data_conditioned(self) -> bool:
        """Whether :math:`\\Sigma` depends on :math:`x_0` (edge-preserving noise)."""
        return self.noise.data_conditioned

    def q_sample(self, x0: Tensor, t: float | Tensor, z: Tensor) -> Tensor:
        """:math:`x_t` from clean ``x0`` and white ``z`` (same shape); ``t`` scalar/(B,)/map."""
        return self.noise.q_sample(self.schedule, x0, t, z)

    def coefficients(self, t: float | Tensor, x: Tensor) -> Coefficients:
        """The schedule's coefficients at ``t`` in ``x``'s dtype and device, as
        :meth:`split` needs them."""
        return coefficients_at(self.schedule, t, x, velocity=self.prediction.needs_velocity)

    def split(self, x_t: Tensor, out: Tensor, t: float | Tensor) -> tuple[Tensor, Tensor]:
        r"""A model output at ``(x_t, t)`` as :math:`(\hat x_0, \hat\varepsilon_\Sigma)`."""
        return self.prediction.split(x_t, out, self.coefficients(t, x_t), self.noise)

    def eps_sigma(self, x_t: Tensor, out: Tensor, t: float | Tensor) -> Tensor:
        r"""The predicted noise as it enters :math:`x_t` per unit :math:`\sigma_t`,
        :math:`\hat\varepsilon_\Sigma = (x_t - \alpha_t\hat x_0)/\sigma_t`."""
        return self.prediction.eps_sigma(x_t, out, self.coefficients(t, x_t), self.noise)

    def implied_output(self, x_t: Tensor, x0: Tensor, t: float | Tensor) -> Tensor:
        r"""The model output that makes :math:`\hat x_0 = ` ``x0`` at ``(x_t, t)``."""
        return self.prediction.implied(x_t, x0, self.coefficients(t, x_t), self.noise)

    def rule(self, eta: float = 1.0, clip_x0: tuple[float, float] | None = None) -> Any:
        """The process's own reverse step: (NI-)DDIM with ``eta`` (DDPM at 1) for fixed noise,
        the EP posterior (stochastic, η = 1 only) for edge-preserving noise."""
        from .samplers.registry import default_rule

        return default_rule(self, eta=eta, clip_x0=clip_x0)

    def step_rule(
        self,
        rule: Any = None,
        eta: float = 1.0,
        clip_x0: tuple[float, float] | None = None,
        *,
        eta_default: float = 1.0,
    ) -> Any:
        """What an editing method steps with: ``rule`` when given (a rule of this process, e.g.
        ``process.sampler("dpm++2m-sde")``), else :meth:`rule` with ``eta`` and ``clip_x0``.

        Raises:
            ValueError: for ``rule`` together with a non-default ``eta`` or a ``clip_x0`` (they
                belong to the rule), or a ``rule`` built for another schedule or noise.
        """
        if rule is None:
            return self.rule(eta, clip_x0)
        if eta != eta_default or clip_x0 is not None:
            raise ValueError(
                "eta and clip_x0 belong to the rule: build it with them "
                f"(process.sampler(name, ...)) instead of passing eta={eta:g}, clip_x0={clip_x0}"
            )
        own = getattr(rule, "schedule", self.schedule), getattr(rule, "noise", self.noise)
        if own[0] is not self.schedule or own[1] is not self.noise:
            raise ValueError(
                f"the rule {type(rule).__name__} was built for another process ({own[0]!r}); "
                "build it with this process's sampler()"
            )
        return rule

    def sampler(self, name: str, **options: Any) -> Any:
        """The solver ``name`` of :data:`~nidiff.samplers.registry.SAMPLERS` for this process
        (e.g. ``"dpm++2m-sde"``); ``ValueError`` naming both if it cannot serve it."""
        from .samplers.registry import build_rule

        return build_rule(name, self, **options)

    def prior(self, z: Tensor) -> Tensor:
        r""":math:`x_{t_{max}}` from white ``z``: ``prior_std`` :math:`\cdot\,\Sigma^{1/2}z`
        (isotropic for EP: :math:`\tau(T) = 1`)."""
        x = self.noise.prior(z)
        std = self.schedule.prior_std
        return x if std == 1.0 else x * std


def _same_schedule(a: Schedule, b: Schedule) -> bool:
    """Whether two schedules agree to 1e-12 in log-SNR on a fine probe of ``[0, t_max]``."""
    import torch

    if type(a) is not type(b) or a.t_max != b.t_max:
        return False
    t = torch.linspace(0, a.t_max, 257, dtype=torch.float64)[1:]
    return bool(torch.allclose(a.log_snr(t), b.log_snr(t), rtol=0, atol=1e-12))
