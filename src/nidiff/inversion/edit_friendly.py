r"""Edit-friendly DDPM inversion (Huberman-Spiegelglas, Kulikov & Michaeli, CVPR 2024: "EF").

**Inversion** (EF Alg. 1). Every noisy state is drawn *independently* from the forward marginal,
:math:`x_{t_i} = \alpha_{t_i}x_0 + \sigma_{t_i}\Sigma^{1/2}\tilde\varepsilon_i` (EF eq. 6; EP
eq. 11 for edge-preserving noise) with a fresh :math:`\tilde\varepsilon_i` per grid time. Then,
noisiest step first, with the step's Gaussian :math:`\mathcal N(\hat\mu_i(x_{t_i}),
\sigma_i^2\Sigma)` (DDPM by default, :meth:`Process.rule`, :math:`\sigma_i^2 = \eta^2\tilde\beta_i`;
any *stochastic* rule of :mod:`nidiff.samplers` with ``rule=``, e.g. SDE-DPM-Solver++ as in
LEDITS++):

.. math::
    z_i = \Sigma^{-1/2}\bigl(x_{t_{prev,i}} - \hat\mu_i(x_{t_i})\bigr)/\sigma_i
    \quad\text{(EF eq. 5, whitened)}, \qquad
    x_{t_{prev,i}} \leftarrow \hat\mu_i(x_{t_i}) + \sigma_i\Sigma^{1/2}z_i ,

the overwrite guarding against drift (last line of Alg. 1). Regenerating with the same model,
condition and guidance replays exactly these states, so :math:`x_0` comes back to float precision.
The maps have variance > 1 and are negatively correlated across steps (EF Sec. 5, Fig. 5).

**Multistep rules.** A rule's history (:attr:`Transition.state`) is a function of the visited
states, which regeneration replays exactly, so reconstruction stays exact. The inversion keeps the
state entering every step (:attr:`Inversion.states`), so an edit that starts after ``skip`` steps
continues with the source chain's history, as the uninterrupted chain would.

**The last step.** A grid ends at ``t = 0`` where :math:`\sigma_0 = 0`, so every rule's last step
is deterministic and has no noise to extract. For such a step we use Ho et al.'s other DDPM
variance, the forward step's :math:`\sigma^2_{t|s} = \sigma_t^2 - (\alpha_t/\alpha_s)^2\sigma_s^2`
(:math:`1 - \bar\alpha_t/\bar\alpha_{t_{prev}}` on VP, :math:`= \beta_t` for consecutive steps):
the last map is :math:`z_N = \Sigma^{-1/2}(x_0 - \hat\mu_N)/\sigma_{t_N|0}` and regeneration
adds it back, so reconstruction stays exact and the map carries the finest detail into edits.
``zero_last=True``
zeroes it as the authors' code does: the last step is then the plain deterministic one and the
reconstruction is off by :math:`x_0 - \hat x_0(x_{t_N})`.

**Edits** fix the maps, change ``cond``/``guidance`` and start after ``skip`` steps (EF's
:math:`T_{skip}`, a *count* of skipped noisiest steps) from the inverted :math:`x_{t_{skip}}`.
:attr:`Inversion.xs` keeps every inverted state (``N`` extra maps in memory), so skipping is free;
an inversion loaded without them recomputes :math:`x_{t_{skip}}` by replaying its first ``skip``
steps with the source condition (``skip`` extra model calls, the identical state).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from .._checks import check_image, check_in_range, check_skip, deferred_finite_checks
from ..models.contract import Denoiser, with_guidance
from ..noise.base import white_noise
from ..process import Process
from ..result import EditResult
from ..samplers.loop import CountedModel, StepRule
from ..samplers.registry import SAMPLERS, build_rule, rule_spec
from ..samplers.transition import Transition, all_zero
from ..schedule import Schedule, TimeGrid
from .io import Inversion, check_process, describe_process

__all__ = [
    "Inversion",
    "edit_friendly_invert",
    "edit_friendly_regenerate",
    "edit_friendly_step",
    "record_maps",
]

#: ``z_hook(i, transition, z) -> z``: replaces step ``i``'s map during regeneration (EF eq. 7).
ZHook = Callable[[int, Transition, Tensor], Tensor]
#: ``land(i, x, t, t_prev) -> x_prev``: the state step ``i`` of an inversion must reach.
Land = Callable[[int, Tensor, Tensor, Tensor], Tensor]


@torch.no_grad()
def edit_friendly_invert(
    model: Denoiser,
    x0: Tensor,
    process: Process,
    grid: TimeGrid,
    *,
    cond: Any = None,
    guidance: float = 1.0,
    null_cond: Any = None,
    eta: float = 1.0,
    rule: StepRule | None = None,
    generator: torch.Generator | None = None,
    noise: Sequence[Tensor] | None = None,
    zero_last: bool = False,
) -> Inversion:
    r"""Extract the edit-friendly maps :math:`\{x_T, z_T, \dots, z_1\}` of ``x0`` (EF Alg. 1).

    Args:
        model: ``out = model(x_t, t, cond)`` for ``process``.
        x0: the image(s) ``(B, *dims)``, finite, floating; not modified.
        process: the diffusion process (schedule + noise) of ``model``.
        grid: the ``N`` steps, noisiest first; must end at ``t = 0``.
        cond: the source condition, batched like ``x0`` (or ``None``).
        guidance: classifier-free guidance scale ``w >= 0``; ``w != 1`` needs ``null_cond``.
        null_cond: the unconditional condition for guidance (one sample).
        eta: :math:`\eta \in (0, 1]` of the default DDIM-family rule (``0`` has no noise to
            extract); EP processes take ``1``.
        rule: a stochastic step rule for ``process`` instead (``process.sampler(name)``, e.g.
            ``"dpm++2m-sde"``); regeneration rebuilds the same rule from the record.
        generator: source of the ``N`` independent :math:`\tilde\varepsilon` (drawn noisiest
            first, ``x0``'s dtype); or give them as ``noise``.
        noise: ``N`` white tensors of ``x0``'s shape, ``noise[i]`` for time ``grid.t[i]``.
        zero_last: zero the last map (the authors' convention; reconstruction then not exact).

    Returns:
        An :class:`Inversion` with ``N`` white maps; runs ``N`` model calls under ``no_grad``.
    """
    eps: Iterator[Tensor] = iter(())

    def start() -> Tensor:  # checks the noise arguments after record_maps' own checks
        nonlocal eps
        eps = _forward_noise(generator, noise, len(grid), x0)
        return next(eps).to(x0.device)

    def land(i: int, x: Tensor, t: Tensor, t_prev: Tensor) -> Tensor:
        return process.q_sample(x0, t_prev, next(eps).to(x0.device))  # independent (EF eq. 6)

    return record_maps(
        model, x0, process, grid, start=start, land=land, cond=cond, guidance=guidance,
        null_cond=null_cond, eta=eta, rule=rule, zero_last=zero_last,
    )  # fmt: skip


def inversion_rule(process: Process, eta: float, rule: StepRule | None) -> StepRule:
    """The step rule an edit-friendly inversion records: ``rule``, or the process's own with
    ``eta``. Raises ``ValueError`` (before any model call) for a deterministic rule, an ``eta``
    outside ``(0, 1]``, or both ``eta`` and ``rule``."""
    check_in_range(eta, "eta", 0.0, 1.0, low_open=True)
    if rule is None:
        return process.rule(eta)
    if eta != 1.0:
        raise ValueError(f"give eta to the rule itself, not eta={eta:g} beside rule=")
    if not rule.stochastic:
        raise ValueError(
            f"edit-friendly inversion records the noise of a stochastic step rule; "
            f"{type(rule).__name__} is deterministic (use ddpm, dpm++2m-sde, euler-ancestral, "
            "sde-euler or ddim with eta > 0)"
        )
    return rule


@torch.no_grad()
def record_maps(
    model: Denoiser,
    x0: Tensor,
    process: Process,
    grid: TimeGrid,
    *,
    start: Callable[[], Tensor],
    land: Land,
    cond: Any = None,
    guidance: float = 1.0,
    null_cond: Any = None,
    eta: float = 1.0,
    rule: StepRule | None = None,
    zero_last: bool = False,
) -> Inversion:
    r"""The recording loop of EF Alg. 1, for any way of choosing the states the chain must visit.

    From :math:`x_{t_0} = ` ``process.q_sample(x0, grid.t[0], start())``, each step ``i`` takes
    the model's step :math:`\mathcal N(\hat\mu_i, \sigma_i^2\Sigma)` (:func:`edit_friendly_step`),
    the state it must reach, ``land(i, x, t, t_prev)`` (``x0`` itself for the last step), the
    map :math:`z_i` that reaches it (``Transition.noise_of``), and moves to
    :math:`\hat\mu_i + \sigma_i\Sigma^{1/2}z_i`. :func:`edit_friendly_invert` lands on
    independent forward draws, :func:`~.cycle.cycle_invert` on the forward posterior chain.

    Args:
        model, x0, process, grid, cond, guidance, null_cond, eta, rule, zero_last: as for
            :func:`edit_friendly_invert`.
        start: returns the white noise of :math:`x_{t_0}` (called once, before any ``land``).
        land: ``land(i, x, t, t_prev) -> x_prev``, the target state of step ``i`` from the
            current state ``x`` at ``t`` (called for ``i = 0 .. N-2`` in order).

    Returns:
        The :class:`Inversion`, with the visited states as ``xs``; ``N`` model calls.
    """
    check_image(x0)
    rule = inversion_rule(process, eta, rule)
    if float(grid.t_prev[-1]) != 0.0:
        raise ValueError(f"the grid must end at t = 0 (x0), not {float(grid.t_prev[-1]):g}")
    _check_cond(cond, int(x0.shape[0]))
    net, n = CountedModel(with_guidance(model, guidance, null_cond), cond, x0.dtype), len(grid)
    x = process.q_sample(x0, grid.t[0], start())
    xs, zs, states, state = [], [], [], None
    with deferred_finite_checks() as checks:  # one device read for all steps, at the end
        for i, (t, t_prev) in enumerate(grid):
            checks.step = i
            tr = edit_friendly_step(net, rule, process.schedule, x, t, t_prev, state)
            z = tr.noise_of(x0 if i == n - 1 else land(i, x, t, t_prev))
            z = torch.zeros_like(z) if zero_last and i == n - 1 else z
            xs.append(x)
            zs.append(z)
            states.append(state)
            x, state = tr.sample(z), tr.state
    return Inversion(
        x_T=xs[0],
        zs=zs,
        grid=grid,
        cond=cond.detach().clone() if isinstance(cond, Tensor) else cond,
        guidance=float(guidance),
        eta=float(eta),
        x0=x0.detach().clone(),
        xs=xs,
        process_info=describe_process(process),
        zero_last=bool(zero_last),
        sampler=rule_spec(rule),
        states=states if any(v is not None for v in states) else None,
    )


@torch.no_grad()
def edit_friendly_regenerate(
    model: Denoiser,
    inversion: Inversion,
    process: Process,
    *,
    cond: Any = None,
    guidance: float | None = None,
    null_cond: Any = None,
    skip: int = 0,
    zs: Sequence[Tensor] | None = None,
    x_T: Tensor | None = None,
    z_hook: ZHook | None = None,
) -> EditResult:
    r"""Run the reverse process with the inversion's maps: :math:`x_{prev} = \hat\mu +
    \sigma\Sigma^{1/2}z_i` from :math:`x_{t_{skip}}`; same ``cond``/``guidance`` reproduce ``x0``.

    Args:
        model: the model the inversion was made with (or an edited/conditioned variant).
        inversion: from :func:`edit_friendly_invert` or :func:`~.io.load_inversion`.
        process: must match the inversion's process (``ValueError`` otherwise).
        cond: the target condition (default: the inversion's).
        guidance: the target guidance scale (default: the inversion's); ``!= 1`` needs
            ``null_cond``, which also serves to recompute the start state when needed.
        skip: number of noisiest steps skipped, ``0 <= skip < N``; the run starts from the
            inverted state at ``grid.t[skip]``.
        zs: replacement maps (``N`` tensors of ``x_T``'s shape, e.g. shifted or flipped).
        x_T: replacement start state (``skip = 0`` only), e.g. shifted with the maps.
        z_hook: ``z_hook(i, transition, z) -> z`` replaces the map of step ``i`` (grid index)
            using that step's :class:`~nidiff.samplers.Transition` (``x0_hat``, ``mean``,
            ``std``); used by :func:`~.manipulate.color_edit`.

    Returns:
        :class:`~nidiff.result.EditResult` with ``x0`` ``(B, *dims)`` and ``nfe``.
    """
    check_process(inversion.process_info, process)
    n = inversion.steps
    skip = check_skip(skip, n)
    if isinstance(zs, Tensor):
        raise ValueError("zs must be a list of N maps; for a stacked tensor pass list(zs)")
    if x_T is not None and skip != 0:
        raise ValueError(f"x_T can only be replaced when skip=0 (got skip={skip})")
    edited = replace(
        inversion,
        zs=list(inversion.zs if zs is None else zs),
        x_T=inversion.x_T if x_T is None else x_T,
    )  # re-validates the shapes of the replacements
    cond = inversion.cond if cond is None else cond
    guidance = inversion.guidance if guidance is None else guidance
    _check_cond(cond, inversion.x_T.shape[0])
    rule = regeneration_rule(inversion, process)
    dtype = inversion.x_T.dtype
    net = CountedModel(with_guidance(model, guidance, null_cond), cond, dtype)
    src = CountedModel(with_guidance(model, inversion.guidance, null_cond), inversion.cond, dtype)
    if skip == 0:
        x, state = edited.x_T, None
    elif inversion.xs is not None and (inversion.states is not None or not _multistep(inversion)):
        x, state = inversion.xs[skip], None if inversion.states is None else inversion.states[skip]
    else:  # replay the source chain: the inverted state (and history), bit for bit
        x, state = _replay(src, rule, process.schedule, inversion.x_T, None, inversion, 0, skip)
    x, _ = _replay(net, rule, process.schedule, x, state, edited, skip, n, z_hook)
    info = {"method": "edit_friendly", "steps": n, "skip": skip, "eta": inversion.eta}
    info |= {"sampler": dict(inversion.sampler), "guidance": float(guidance)}
    return EditResult(x0=x, nfe=net.calls + src.calls, info=info)


def regeneration_rule(inversion: Inversion, process: Process) -> StepRule:
    """The step rule an inversion was recorded with, rebuilt for ``process`` from its record."""
    spec = dict(inversion.sampler)
    return build_rule(spec.pop("sampler"), process, **spec)


def _multistep(inversion: Inversion) -> bool:
    return SAMPLERS[inversion.sampler["sampler"]].multistep


def _replay(
    net: CountedModel,
    rule: StepRule,
    schedule: Schedule,
    x: Tensor,
    state: Any,
    inv: Inversion,
    start: int,
    stop: int,
    z_hook: ZHook | None = None,
) -> tuple[Tensor, Any]:
    """Steps ``start .. stop-1`` of ``inv.grid`` with ``inv.zs`` from ``x`` (the state at
    ``inv.grid.t[start]``) and the rule's ``state`` entering step ``start``; returns the final
    state and history."""
    with deferred_finite_checks() as checks:  # one device read for all steps, at the end
        for i in range(start, stop):
            checks.step = i
            t, t_prev = inv.grid.t[i], inv.grid.t_prev[i]
            tr = edit_friendly_step(net, rule, schedule, x, t, t_prev, state)
            z = inv.zs[i].to(device=x.device, dtype=x.dtype)
            x, state = tr.sample(z if z_hook is None else z_hook(i, tr, z)), tr.state
    return x, state


def edit_friendly_step(
    evaluate: CountedModel,
    rule: StepRule,
    schedule: Schedule,
    x: Tensor,
    t: Tensor,
    t_prev: Tensor,
    state: Any = None,
) -> Transition:
    r"""One step :math:`\mathcal N(\hat\mu, \sigma^2\Sigma)` from ``x`` at ``t`` to ``t_prev``
    that edit-friendly inversion and regeneration share.

    It is ``rule.step``, except that a deterministic step (the last one, to :math:`\sigma = 0`)
    gets :math:`\sigma^2 = \sigma^2_{t|t_{prev}}` (:math:`1-\bar\alpha_t/\bar\alpha_{t_{prev}}` on
    VP) so that it has a map to carry (module docstring).

    Args:
        evaluate: ``evaluate(x, t)``, the (guided) model with its condition
            (:class:`~nidiff.samplers.loop.CountedModel`).
        rule: a step rule of the process. schedule: ``process.schedule``.
        x: the state ``(B, *dims)`` at ``t``. t, t_prev: one grid step.
        state: the rule's history entering this step (``None`` for the first).
    """
    tr = rule.step(evaluate, x, t, t_prev, state)
    if tr.is_deterministic:
        var = schedule.transition_var(t, t_prev)
        std = var.sqrt().to(x.dtype)  # decided before the move: a CPU read for grid times
        tr = replace(tr, std=std.to(x.device), deterministic=all_zero(std))
    return tr


def _check_cond(cond: Any, B: int) -> None:
    for c in cond.values() if isinstance(cond, dict) else [cond]:
        if isinstance(c, Tensor) and c.ndim > 0 and c.shape[0] != B:
            raise ValueError(f"cond has batch {c.shape[0]} but x0 has batch {B}")


def _forward_noise(
    generator: torch.Generator | None, noise: Sequence[Tensor] | None, n: int, x0: Tensor
) -> Iterator[Tensor]:
    r"""The ``n`` independent white :math:`\tilde\varepsilon` (EF eq. 6), checked up front."""
    if (generator is None) == (noise is None):
        raise ValueError("pass exactly one of generator= and noise= (the forward white noise)")
    if noise is None:
        return (white_noise(x0.shape, generator=generator, dtype=x0.dtype) for _ in range(n))
    if isinstance(noise, Tensor) or len(noise) != n:
        raise ValueError(f"noise must be a list of {n} tensors (one per grid time)")
    for i, e in enumerate(noise):
        if not isinstance(e, Tensor) or e.shape != x0.shape:
            raise ValueError(f"noise[{i}] must have x0's shape {tuple(x0.shape)}")
    return iter(list(noise))
