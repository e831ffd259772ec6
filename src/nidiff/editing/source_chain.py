r"""The source chain that Plug-and-Play and Zero-Shot I2I run beside the target.

Both methods read the source image's features at every step of the edit: PnP injects them,
Zero-Shot compares cross-attention maps with them. A :class:`SourceChain` holds what the target
needs from the inversion: the states :math:`x^{src}_{t_i}` the source visits at every step run,
the target's start state, and how the target steps:

* **from edit-friendly maps** (:func:`ef_source`): the source states are the inverted states
  themselves (:attr:`Inversion.xs`, which EF regeneration with the source condition replays
  exactly), and the target steps :math:`x_{prev} = \hat\mu(x) + \sigma_i z_i` with the recorded
  maps (:func:`~nidiff.inversion.edit_friendly.edit_friendly_step`);
* **from DDIM inversion** (:func:`ddim_source`): given states (PnP: the inversion trajectory,
  as the authors' code loads its saved latents; Zero-Shot: the reconstruction pass) and the
  deterministic DDIM step (:math:`\eta = 0`).

The source states are fixed before the edit starts, so each step of the target is one batched
call of ``[source rows; target rows]`` at the step's time (:meth:`SourceChain.paired`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._checks import check_skip
from ..inversion.edit_friendly import edit_friendly_step, regeneration_rule
from ..inversion.io import Inversion
from ..models.contract import Denoiser, with_guidance
from ..samplers.loop import CountedModel, StepRule
from ..schedule import TimeGrid

__all__ = ["SourceChain", "ddim_source", "ef_source", "run_target"]


@dataclass(frozen=True, eq=False)
class SourceChain:
    """The source side of a paired edit (module docstring).

    Attributes:
        grid: the steps run (the inversion's grid after ``skip``).
        start: the target's state at ``grid.t[0]`` (the source's state there).
        states: the source's state at every ``grid.t[i]``, ``(B, *dims)`` each.
        zs: the edit-friendly maps of the steps run, or ``None`` (DDIM: deterministic).
        rule: the step rule of the target (the inversion's, or DDIM with :math:`\\eta = 0`).
        history: the rule's history entering the first step run (multistep EF rules).
        cond: the source condition; guidance: the source's guidance scale.
        nfe: model calls spent on the source side (an inversion's replay).
    """

    grid: TimeGrid
    start: Tensor
    states: list[Tensor]
    zs: list[Tensor] | None
    rule: StepRule
    history: Any
    cond: Any
    guidance: float
    nfe: int = 0

    def step(
        self, evaluate: CountedModel, i: int, x: Tensor, state: Any, schedule: Any
    ) -> tuple[Tensor, Any]:
        """Step ``i`` of the target from ``x``: the next state and the rule's history."""
        t, t_prev = self.grid.t[i], self.grid.t_prev[i]
        if self.zs is None:
            tr = self.rule.step(evaluate, x, t, t_prev, state)
            return tr.sample(None), tr.state
        tr = edit_friendly_step(evaluate, self.rule, schedule, x, t, t_prev, state)
        return tr.sample(self.zs[i].to(device=x.device, dtype=x.dtype)), tr.state

    def paired(self, model: Denoiser, i: int, cond: Any, B: int) -> Denoiser:
        """The target's model at step ``i``: ``model`` called on ``[source state; x]`` with the
        paired ``cond`` (``2B`` rows), returning the target rows. It refuses another time than
        the step's (a rule that evaluates between grid times has no source state there)."""
        t_i = float(self.grid.t[i])

        def target(x: Tensor, t: Tensor, _cond: Any = None) -> Tensor:
            if abs(float(t) - t_i) > 1e-3 * max(1.0, abs(t_i)):
                raise ValueError(f"the source chain has no state at t={float(t):g}")
            src = self.states[i].to(device=x.device, dtype=x.dtype)
            return model(torch.cat([src, x]), t, cond)[B:]

        return target


def _states_of(model: Denoiser, inv: Inversion, process: Any, null_cond: Any):
    """The states (and histories) an inversion without ``xs`` visits, by replaying it."""
    net = CountedModel(with_guidance(model, inv.guidance, null_cond), inv.cond, inv.x_T.dtype)
    rule = regeneration_rule(inv, process)
    x, state, xs, hs = inv.x_T, None, [], []
    for i, (t, t_prev) in enumerate(inv.grid):
        xs.append(x)
        hs.append(state)
        tr = edit_friendly_step(net, rule, process.schedule, x, t, t_prev, state)
        x, state = tr.sample(inv.zs[i].to(x)), tr.state
    return xs, hs, net.calls


def ef_source(
    model: Denoiser, inv: Inversion, process: Any, skip: int, null_cond: Any
) -> SourceChain:
    """The source chain of an edit-friendly inversion after ``skip`` steps (its ``xs``, or a
    replay of it with the source condition when it has none: ``N`` model calls)."""
    n = inv.steps
    skip = check_skip(skip, n)
    xs, hs, nfe = inv.xs, inv.states, 0
    if xs is None:
        xs, hs, nfe = _states_of(model, inv, process, null_cond)
    return SourceChain(
        grid=inv.grid[skip:], start=xs[skip], states=list(xs[skip:]), zs=list(inv.zs[skip:]),
        rule=regeneration_rule(inv, process), history=None if hs is None else hs[skip],
        cond=inv.cond, guidance=inv.guidance, nfe=nfe,
    )  # fmt: skip


def ddim_source(
    grid: TimeGrid, states: list[Tensor], process: Any, skip: int, cond: Any, guidance: float,
    nfe: int = 0,
) -> SourceChain:  # fmt: skip
    """The source chain of DDIM inversion: ``states[i]`` at ``grid.t[i]`` (``N`` of them)."""
    skip = check_skip(skip, len(grid))
    if len(states) != len(grid):
        raise ValueError(f"{len(states)} source states for a grid of {len(grid)} steps")
    return SourceChain(
        grid=grid[skip:], start=states[skip], states=list(states[skip:]), zs=None,
        rule=process.rule(0.0), history=None, cond=cond, guidance=float(guidance), nfe=nfe,
    )  # fmt: skip


def run_target(
    chain: SourceChain,
    process: Any,
    model_at: Callable[[int], Denoiser],
    *,
    before: Callable[[int, Tensor], Tensor] | None = None,
) -> tuple[Tensor, int]:
    """Run the target along ``chain``: at step ``i`` optionally move the state
    (``before(i, x)``: Zero-Shot's guidance), then step with ``model_at(i)`` (a model
    ``out = model(x, t)``, its condition inside). Returns the final state and the model calls."""
    x, state, calls = chain.start, chain.history, 0
    for i in range(len(chain.grid)):
        if before is not None:
            x = before(i, x)
        net = CountedModel(model_at(i), None, x.dtype)
        x, state = chain.step(net, i, x, state, process.schedule)
        calls += net.calls
    return x, calls
