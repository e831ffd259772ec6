r"""What every step rule shares: the step protocol, input checks and model conversions.

A step rule maps the state :math:`x_t` to a Gaussian :math:`\mathcal N(\mu, s^2\Sigma)` over
:math:`x_{t_{prev}}` (a :class:`~.transition.Transition`). Its one entry point is

    ``rule.step(evaluate, x_t, t, t_prev, state) -> Transition``

where ``evaluate(x, t)`` is one model call (the driver counts them: Heun's rule calls it twice),
``t, t_prev`` are float64 times of one grid step and ``state`` is what the previous step left in
its :attr:`Transition.state` (``None`` on the first step). Multistep solvers (DPM-Solver++) keep
their history there, explicitly: nothing survives a call inside the rule, and a driver can replay,
skip or restart a chain by choosing what ``state`` to pass.

Rules with one model call and no history implement only ``transition(x_t, out, t, t_prev)``
(:class:`OneEvaluation` supplies ``step``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from .._checks import as_time, check_finite, expand_like
from ..models.prediction import Coefficients, Prediction
from ..schedule.base import Schedule
from .forward import coefficients_at
from .transition import Transition

__all__ = ["Evaluate", "OneEvaluation", "check_step", "describe_times", "model_coefficients"]

#: ``evaluate(x, t) -> out``: one model call at state ``x`` and float64 0-d time ``t``.
Evaluate = Callable[[Tensor, Tensor], Tensor]


class OneEvaluation:
    """Mixin for rules with one model call per step and no history: ``step`` evaluates the model
    at ``(x_t, t)`` and returns ``self.transition(x_t, out, t, t_prev)``."""

    def step(
        self, evaluate: Evaluate, x_t: Tensor, t: Tensor, t_prev: Tensor, state: Any = None
    ) -> Transition:
        return self.transition(x_t, evaluate(x_t, t), t, t_prev)  # type: ignore[attr-defined]


def check_step(
    schedule: Schedule,
    x_t: Tensor,
    out: Tensor,
    t: float | Tensor,
    t_prev: float | Tensor,
    out_name: str = "out",
) -> tuple[Tensor, Tensor]:
    """Validate one step's inputs; return ``(t, t_prev)`` as checked float64 tensors viewed to
    broadcast against ``x_t`` (``t_prev`` on ``t``'s device).

    Raises:
        ValueError: on a shape mismatch, a non-floating ``x_t``, non-finite values (deferred
            inside :func:`~nidiff._checks.deferred_finite_checks`), times outside
            ``[0, t_max]`` or ``t_prev >= t``.
    """
    if out.shape != x_t.shape:
        raise ValueError(
            f"{out_name} of shape {tuple(out.shape)} != x_t of shape {tuple(x_t.shape)}"
        )
    if not x_t.is_floating_point():
        raise ValueError(f"x_t must be a floating tensor, got {x_t.dtype}")
    check_finite(x_t, "x_t")
    check_finite(out, out_name)
    tt = schedule.check_time(expand_like(as_time(t), x_t, "t"), "t")
    tp = schedule.check_time(expand_like(as_time(t_prev), x_t, "t_prev"), "t_prev")
    if not bool((tp < tt.to(tp.device)).all()):
        raise ValueError(
            "a step must go back in time (t_prev < t); got "
            f"t={describe_times(tt)}, t_prev={describe_times(tp)}"
        )
    return tt, tp.to(tt.device)


def model_coefficients(
    schedule: Schedule, prediction: Prediction, t: Tensor, x: Tensor
) -> Coefficients:
    """The coefficients :meth:`Prediction.split` needs at ``t`` for data ``x``."""
    return coefficients_at(schedule, t, x, velocity=prediction.needs_velocity)


def describe_times(v: Tensor) -> str:
    """A time for an error message: its value, or the shape of a time map."""
    return f"{float(v):g}" if v.numel() == 1 else f"<{tuple(v.shape)} map>"
