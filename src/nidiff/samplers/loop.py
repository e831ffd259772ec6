r"""The one driver loop every sampler shares.

For each step ``i`` of an explicit :class:`~nidiff.schedule.TimeGrid` (noisiest first)::

    tr      = rule.step(evaluate, x, t_i, t_prev_i, state)  # model calls; N(mean, std² Σ)
    x_prev  = tr.sample(z_i)                                # mean + std · Σ^{1/2} z_i
    x_prev  = callback(StepInfo(...)) or x_prev             # optional replacement (NGDM)
    state   = tr.state                                      # a multistep solver's history

``evaluate(x, t) = model(x, t, cond)`` is one function evaluation; most rules call it once per
step (Heun twice).

The white noise ``z_i`` comes from the caller (a generator or recorded tensors) and is returned in
:class:`SampleResult`, so every run can be replayed bit for bit. The loop keeps no state between
calls, never modifies ``x_T``, and does not switch off autograd: wrap the call in
``torch.no_grad()`` (or ``torch.inference_mode()``) for plain sampling, or leave it on to
differentiate through the chain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from .._checks import deferred_finite_checks
from ..models.contract import Denoiser
from ..noise.base import white_noise
from ..schedule.grid import TimeGrid
from .rule import Evaluate
from .transition import Transition

__all__ = [
    "CountedModel",
    "Replaced",
    "SampleResult",
    "StepInfo",
    "StepRule",
    "forget_history",
    "sample",
]


@runtime_checkable
class StepRule(Protocol):
    """A sampler step: ``step(evaluate, x_t, t, t_prev, state) -> Transition`` (positional; see
    :mod:`nidiff.samplers.rule`), and whether its steps draw noise (``stochastic``).

    ``t`` and ``t_prev`` are float64 times; ``state`` is the previous step's
    ``Transition.state`` (``None`` first). Implementations: :class:`~.ddim.DDIM`,
    :class:`~.ddim.DDPM`, :class:`~.edge.EdgePosterior`, the solvers of :mod:`nidiff.samplers`
    (the registry :data:`~nidiff.samplers.registry.SAMPLERS` names them all).
    """

    @property
    def stochastic(self) -> bool: ...

    def step(
        self, evaluate: Evaluate, x_t: Tensor, t: Tensor, t_prev: Tensor, state: Any, /
    ) -> Transition: ...


@dataclass(frozen=True, eq=False)
class StepInfo:
    """What a callback sees after step ``i`` (all tensors are the loop's own; do not modify them).

    Attributes:
        i: step index, ``0`` for the noisiest step.
        t: float64 0-d time the model was evaluated at.
        t_prev: float64 0-d time the step lands on.
        x_t: the state before the step, ``(B, *dims)``.
        transition: the step's :class:`Transition` (mean, std, x0_hat, ...).
        x_prev: the sampled next state ``(B, *dims)``.
        z: the white noise used, or ``None`` for a deterministic step.
    """

    i: int
    t: Tensor
    t_prev: Tensor
    x_t: Tensor
    transition: Transition
    x_prev: Tensor
    z: Tensor | None


@dataclass(frozen=True, eq=False)
class SampleResult:
    """The outcome of :func:`sample`.

    Attributes:
        x0: the final state ``(B, *dims)`` at the grid's last ``t_prev`` (clean data when it is 0).
        zs: one entry per step, noisiest first: the white noise used (shape of ``x0``, dtype of
            ``x_T``), or ``None`` for a deterministic step. Pass it back as ``noise=`` to replay.
        nfe: number of model calls.
    """

    x0: Tensor
    zs: list[Tensor | None]
    nfe: int


NoiseSource = torch.Generator | Sequence[Tensor | None] | None


def sample(
    model: Denoiser,
    x_T: Tensor,
    grid: TimeGrid,
    rule: StepRule,
    *,
    cond: Any = None,
    noise: NoiseSource = None,
    callback: Callable[[StepInfo], Tensor | Replaced | None] | None = None,
) -> SampleResult:
    r"""Run ``rule`` along ``grid`` from ``x_T``: :math:`x_{t_{prev}} = \mu + s\,\Sigma^{1/2}z`.

    Args:
        model: ``out = model(x_t, t, cond)``. ``t`` is passed as a 0-d tensor on ``x_T``'s device
            in ``x_T``'s dtype, promoted to at least float32 (so integer times stay exact for
            half-precision models); the rule receives the grid's exact float64 times.
        x_T: the starting state ``(B, *dims)`` at ``grid.t[0]``; never modified.
        grid: the ``N`` step pairs ``(t, t_prev)``, noisiest first.
        rule: the step rule (:class:`~.ddim.DDIM`, :class:`~.ddim.DDPM`, ...).
        cond: passed unchanged to every model call.
        noise: the white noise for stochastic steps:

            * ``None``: every step must be deterministic (e.g. DDIM with ``eta=0``);
            * a ``torch.Generator``: ``torch.randn`` of ``x_T``'s shape and dtype drawn on the
              generator's device, only for stochastic steps;
            * a sequence of ``N`` tensors (``None`` allowed for deterministic steps), replayed
              exactly, e.g. ``SampleResult.zs`` of an earlier run or edit-friendly noise maps
              (cast to ``x_T``'s dtype and device; a map given for a deterministic step is unused
              and recorded as ``None``).

        callback: called after each step with a :class:`StepInfo`. If it returns a tensor, that
            tensor replaces ``x_prev`` as the next state (NGDM masking, ILVR, inpainting); a
            :class:`Replaced` also says where, and there a multistep rule's history is
            forgotten (those elements did not come from the chain); return ``None`` to keep
            ``x_prev``. The recorded ``z`` is unchanged by a replacement, so a replay reproduces
            the run only with the same callback.

    Returns:
        :class:`SampleResult` with the final state, the white noise per step and the model calls.

    Raises:
        ValueError: a stochastic step without noise, a noise sequence of the wrong length, a
            callback result of the wrong shape, or a non-finite state or model output that the
            rule checks (decided after the last step, naming the first bad step, so that the
            loop never waits for the device).
    """
    if not isinstance(x_T, Tensor) or not x_T.is_floating_point():
        raise ValueError("x_T must be a floating-point tensor of shape (B, *dims)")
    replay = _replay_list(noise, len(grid))
    evaluate = CountedModel(model, cond, x_T.dtype)
    x, zs, state = x_T, [], None
    with deferred_finite_checks() as checks:  # one device read for all steps, at the end
        for i, (t, t_prev) in enumerate(grid):
            checks.step = i
            tr = rule.step(evaluate, x, t, t_prev, state)
            state = tr.state
            z = None if tr.is_deterministic else _white(i, noise, replay, x)
            x_prev = tr.sample(z)
            if callback is not None:
                replaced = callback(StepInfo(i, t, t_prev, x, tr, x_prev, z))
                if isinstance(replaced, Replaced):
                    state = forget_history(state, replaced.where)
                    replaced = replaced.x
                if replaced is not None:
                    if not isinstance(replaced, Tensor) or replaced.shape != x_prev.shape:
                        raise ValueError(
                            f"callback at step {i} must return None or a tensor of "
                            f"shape {tuple(x_prev.shape)}"
                        )
                    x_prev = replaced
            zs.append(z)
            x = x_prev
    return SampleResult(x0=x, zs=zs, nfe=evaluate.calls)


@dataclass(frozen=True, eq=False)
class Replaced:
    """A callback's replacement of the next state: ``x`` (``x_prev``'s shape), which differs
    from the sampled state only ``where`` (boolean, broadcastable to ``x``)."""

    x: Tensor
    where: Tensor


def forget_history(state: Any, where: Tensor) -> Any:
    """A rule's history with the elements ``where`` forgotten: states that keep history per
    element implement ``forget(where)`` (:class:`~.dpm_solver.DPMState`); one-step rules have
    none (``None``)."""
    forget = getattr(state, "forget", None)
    return state if forget is None else forget(where)


class CountedModel:
    """``evaluate(x, t) = model(x, t, cond)`` for step rules, counting the calls.

    The model sees ``t`` as a 0-d tensor on ``x``'s device in ``dtype`` promoted to at least
    float32 (integer times stay exact for half-precision models); the rule keeps the exact
    float64 grid time.
    """

    def __init__(self, model: Denoiser, cond: Any, dtype: torch.dtype):
        self.model, self.cond, self.calls = model, cond, 0
        self.t_dtype = torch.promote_types(dtype, torch.float32)

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        self.calls += 1
        return self.model(x, t.to(device=x.device, dtype=self.t_dtype), self.cond)


def _replay_list(noise: NoiseSource, n: int) -> list[Tensor | None] | None:
    if noise is None or isinstance(noise, torch.Generator):
        return None
    if isinstance(noise, Tensor) or not isinstance(noise, Sequence):
        raise TypeError(
            "noise must be None, a torch.Generator or a sequence of per-step tensors "
            f"(got {type(noise).__name__}); for a stacked tensor pass list(noise)"
        )
    if len(noise) != n:
        raise ValueError(f"noise has {len(noise)} maps but the grid has {n} steps")
    return list(noise)


def _white(i: int, noise: NoiseSource, replay: list[Tensor | None] | None, x: Tensor) -> Tensor:
    if isinstance(noise, torch.Generator):
        return white_noise(x.shape, generator=noise, dtype=x.dtype).to(x.device)
    if replay is None:
        raise ValueError(
            f"step {i} is stochastic (std > 0) but noise=None: pass a "
            "torch.Generator or recorded white-noise tensors"
        )
    z = replay[i]
    if z is None:
        raise ValueError(f"step {i} is stochastic (std > 0) but noise[{i}] is None")
    if z.shape != x.shape:
        raise ValueError(f"noise[{i}] of shape {tuple(z.shape)} != x of shape {tuple(x.shape)}")
    return z.to(device=x.device, dtype=x.dtype)
