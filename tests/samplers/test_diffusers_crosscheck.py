"""Each new solver against diffusers' own scheduler, step by step (issue 12, "Must show").

Both chains start from the same :math:`x_T`, see the same fake model (a fixed function of
``(x, t)``, so its outputs differ per step) and, for stochastic solvers, the same white noise; they
are compared after every step. The schedules here are used by no other test: scaled-linear betas
``0.0009 -> 0.013`` (``T = 1000``) for the VP solvers, rectified flow with SD3's static shift 3.0
and FLUX's dynamic shift for the flow solvers.

Conventions that differ between the two sides (none of them a difference in the method):

* **Time.** nidiff's paper time of a discrete VP schedule is diffusers' integer timestep ``+ 1``
  (``t = 0`` is clean data, which diffusers reaches as "``prev_timestep = -1``" / ``sigma = 0``),
  so the nidiff grid is ``custom_grid(scheduler.timesteps + 1)``. For the flow schedulers nidiff's
  time *is* diffusers' ``sigma`` (their ``timestep`` is ``sigma * 1000``), so the grid is
  ``custom_grid(scheduler.sigmas[:-1])``.
* **State space.** ``EulerAncestralDiscreteScheduler`` and ``HeunDiscreteScheduler`` keep the
  variance-exploding sample :math:`\\tilde x = x/\\alpha_t` (hence their ``init_noise_sigma`` and
  ``scale_model_input``, which hands the network :math:`\\tilde x\\,\\alpha_t = x`); nidiff keeps
  the process's own :math:`x_t`. We start diffusers at :math:`x_T/\\alpha_T` and compare
  :math:`\\alpha_s\\tilde x_s` with nidiff's :math:`x_s`. ``DPMSolverMultistepScheduler``, DDIM
  and the flow schedulers already work in :math:`x_t`.
* **Noise injection.** ``DPMSolverMultistepScheduler`` and ``DDIMScheduler`` take
  ``variance_noise=``; ``EulerAncestralDiscreteScheduler`` draws ``randn_tensor`` itself (also on
  its last step, where ``sigma_up = 0`` makes the draw unused), so its module's ``randn_tensor``
  is replaced by one that hands out our noise. nidiff's last step to clean data is deterministic
  and takes no noise.
* **History.** diffusers keeps the multistep history and the Heun half-step inside the scheduler
  (``model_outputs``, ``prev_derivative``, a step counter); nidiff passes ``Transition.state``
  from step to step and makes Heun's two model calls inside one ``step``. diffusers' Heun
  interleaves its timesteps (two ``step()`` calls per Heun step, one for the last).
* **Precision.** Both sides get float64 states, outputs and noise. diffusers keeps its sigma
  tables in float32 (``alphas_cumprod`` is a float32 cumulative product, which
  ``DiscreteSchedule.from_diffusers`` takes over exactly) and rounds the sample to float32 inside
  ``step`` (DPM-Solver, Euler-ancestral, the flow schedulers); nidiff computes every coefficient
  in float64. The differences are that rounding (~1e-7 relative, printed), asserted below
  ``RTOL`` relative to the largest magnitude of the state: any difference in the method is
  orders of magnitude larger (order 1 instead of 2: ~2e-1; ``solver_type="heun"``: ~2e-2).
  With float32 samples diffusers' flow Heun step loses ~1e-6 more to cancellation in
  ``(sample - denoised) / sigma_next`` on its last second-order step.

diffusers is imported unconditionally: without it this module fails, it is never skipped.
"""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FlowMatchHeunDiscreteScheduler,
    HeunDiscreteScheduler,
)
from diffusers.schedulers import scheduling_euler_ancestral_discrete as ea_module

from nidiff.models.prediction import FlowVelocity
from nidiff.samplers import (
    DDIM,
    DPMSolverPP,
    EulerAncestral,
    FlowEuler,
    FlowHeun,
    Heun,
    SDEDPMSolverPP,
)
from nidiff.schedule import (
    DiscreteSchedule,
    RectifiedFlow,
    VPSchedule,
    custom_grid,
    flow_grid,
    flux_mu,
)

f64 = torch.float64
SHAPE = (2, 3, 4, 4)
RTOL = 1e-5  # float32 rounding of diffusers' tables and samples, relative to max |x|
#: A VP schedule no other test uses (scaled-linear, as Stable Diffusion's, with other ends).
VP_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.0009,
    "beta_end": 0.013,
}
#: FLUX's mu for a 512x512 image (1024 packed tokens).
FLUX_MU = flux_mu(1024)


class FakeModel:
    r"""``out = a(u)\,x + b(u)\,B_1 + c(u)\,B_2`` with fixed random ``B_1, B_2`` and smooth
    ``a, b, c`` of ``u = t / t_max``: deterministic, different at every step, bounded along the
    chain. Evaluated in float64, returned in ``x``'s dtype."""

    def __init__(self, t_max: float, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.b1 = torch.randn(SHAPE, generator=g, dtype=f64)
        self.b2 = torch.randn(SHAPE, generator=g, dtype=f64)
        self.t_max = t_max

    def __call__(self, x: torch.Tensor, t: float) -> torch.Tensor:
        u = float(t) / self.t_max
        out = (0.4 + 0.3 * math.sin(3 * u)) * x.to(f64)
        out = out + math.cos(5 * u) * self.b1 + 0.5 * u * self.b2
        return out.to(x.dtype)


def _rel(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """``max |ours - theirs| / max |ours|`` in float64."""
    a, b = ours.to(f64), theirs.to(f64)
    return float((a - b).abs().max() / a.abs().max())


def _start_and_noise(n: int, seed: int = 1) -> tuple[torch.Tensor, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(SHAPE, generator=g, dtype=f64), [
        torch.randn(SHAPE, generator=g, dtype=f64) for _ in range(n)
    ]


def _vp_grid(scheduler, timesteps: torch.Tensor):
    """nidiff's grid through diffusers' integer timesteps: paper time = timestep + 1."""
    ts = timesteps.to(f64)
    assert torch.equal(ts, ts.round()), f"non-integer diffusers timesteps {ts.tolist()}"
    return custom_grid(ts + 1)


def _report(name: str, errs: list[float]) -> float:
    err = max(errs)
    print(f"{name}: {len(errs)} steps, max |diff| = {err:.2e} (relative to max |x|)")
    return err


# ---------------------------------------------------------------- DPM-Solver++(2M), ODE and SDE
@pytest.mark.parametrize(
    ("algorithm", "rule_cls"),
    [("dpmsolver++", DPMSolverPP), ("sde-dpmsolver++", SDEDPMSolverPP)],
)
@pytest.mark.parametrize("steps", [8, 16])  # 16: lower_order_final only from "zero" (N >= 15)
def test_dpm_solver_pp_matches_diffusers(algorithm, rule_cls, steps):
    sch = DPMSolverMultistepScheduler(
        **VP_CONFIG,
        algorithm_type=algorithm,
        solver_order=2,
        solver_type="midpoint",
        final_sigmas_type="zero",
        lower_order_final=True,
    )
    sch.set_timesteps(steps)
    schedule = DiscreteSchedule.from_diffusers(sch)
    grid = _vp_grid(sch, sch.timesteps)
    rule = rule_cls(schedule)
    model = FakeModel(schedule.t_max)
    x, zs = _start_and_noise(len(grid))
    xd = x.clone()
    state, errs = None, []
    for i, (t, t_prev) in enumerate(grid):
        td = sch.timesteps[i]
        tr = rule.step(model, x, t, t_prev, state)
        state = tr.state
        x = tr.sample(None if tr.is_deterministic else zs[i])
        out = model(xd, float(td) + 1)
        xd = sch.step(out, td, xd, variance_noise=zs[i]).prev_sample
        errs.append(_rel(x, xd))
    assert tr.is_deterministic and float(grid.t_prev[-1]) == 0.0  # the last step lands on x0
    err = _report(f"DPMSolverMultistep {algorithm} N={steps}", errs)
    assert err < RTOL


# ---------------------------------------------------------------- Euler-ancestral
def test_euler_ancestral_matches_diffusers(monkeypatch):
    # linspace spacing with N = 10, T = 1000 gives integer timesteps 0, 111, ..., 999
    sch = EulerAncestralDiscreteScheduler(**VP_CONFIG, timestep_spacing="linspace")
    sch.set_timesteps(10)
    schedule = DiscreteSchedule.from_diffusers(sch)
    grid = _vp_grid(sch, sch.timesteps)
    alpha = schedule.alpha(grid.times)  # α at t_0 .. t_N (α = 1 at the clean end)
    rule = EulerAncestral(schedule)  # eta = 1, as diffusers
    model = FakeModel(schedule.t_max)
    x, zs = _start_and_noise(len(grid))

    draws: list[torch.Tensor] = []

    def injected_randn(shape, generator=None, device=None, dtype=None, layout=None):
        z = zs[len(draws)]
        assert tuple(shape) == tuple(z.shape)
        draws.append(z)
        return z.to(dtype=dtype)

    monkeypatch.setattr(ea_module, "randn_tensor", injected_randn)
    xd = x / alpha[0]  # diffusers' VE-scaled sample x / α_T
    errs = []
    for i, (t, t_prev) in enumerate(grid):
        td = sch.timesteps[i]
        tr = rule.step(model, x, t, t_prev, None)
        x = tr.sample(None if tr.is_deterministic else zs[i])
        inp = sch.scale_model_input(xd, td)  # x̃ α_t = x_t
        xd = sch.step(model(inp, float(td) + 1), td, xd).prev_sample
        errs.append(_rel(x, alpha[i + 1] * xd.to(f64)))
    assert len(draws) == len(grid) and tr.is_deterministic
    err = _report("EulerAncestralDiscrete", errs)
    assert err < RTOL


# ---------------------------------------------------------------- Heun (EDM, no churn)
@pytest.mark.parametrize("spacing", ["trailing", "leading"])  # both integer timesteps
def test_heun_matches_diffusers(spacing):
    sch = HeunDiscreteScheduler(**VP_CONFIG, timestep_spacing=spacing)
    sch.set_timesteps(6)
    # diffusers interleaves: [t0, t1, t1, ..., t_{N-1}, t_{N-1}]; every other entry is the grid
    schedule = DiscreteSchedule.from_diffusers(sch)
    grid = _vp_grid(sch, sch.timesteps[0::2])
    alpha = schedule.alpha(grid.times)
    rule = Heun(schedule)
    model = FakeModel(schedule.t_max)
    x, _ = _start_and_noise(0)
    xd = x / alpha[0]
    k, errs, in_errs = 0, [], []
    for i, (t, t_prev) in enumerate(grid):
        inputs: list[tuple[torch.Tensor, float]] = []

        def evaluate(x_, t_, inputs=inputs):
            inputs.append((x_, float(t_)))
            return model(x_, t_)

        x = rule.step(evaluate, x, t, t_prev, None).mean
        calls = 2 if i < len(grid) - 1 else 1  # the step to clean data is plain Euler
        assert len(inputs) == calls
        for x_in, t_in in inputs:  # diffusers' step() calls for this Heun step
            td = sch.timesteps[k]
            assert float(td) + 1 == t_in  # the same evaluation times, Euler point included
            inp = sch.scale_model_input(xd, td)
            in_errs.append(_rel(x_in, inp))
            xd = sch.step(model(inp, float(td) + 1), td, xd).prev_sample
            k += 1
        errs.append(_rel(x, alpha[i + 1] * xd.to(f64)))
    assert k == len(sch.timesteps)
    err = _report(f"HeunDiscrete ({spacing})", errs)
    _report(f"HeunDiscrete ({spacing}) model inputs", in_errs)
    assert err < RTOL and max(in_errs) < RTOL


# ---------------------------------------------------------------- flow matching
def _flow_euler_scheduler(kind: str, steps: int) -> FlowMatchEulerDiscreteScheduler:
    if kind == "shift3":
        sch = FlowMatchEulerDiscreteScheduler(shift=3.0)
        sch.set_timesteps(steps)
    else:  # FLUX: resolution-dependent shift
        sch = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
        c = sch.config  # flux_mu's defaults are the FLUX scheduler's
        mu = flux_mu(1024, c.base_image_seq_len, c.max_image_seq_len, c.base_shift, c.max_shift)
        assert mu == FLUX_MU
        sch.set_timesteps(steps, mu=FLUX_MU)
    return sch


@pytest.mark.parametrize("kind", ["shift3", "dynamic"])
def test_flow_euler_matches_diffusers(kind):
    sch = _flow_euler_scheduler(kind, 12)
    grid = custom_grid(sch.sigmas[:-1])  # nidiff time = diffusers sigma
    rule = FlowEuler(RectifiedFlow(), prediction=FlowVelocity())
    model = FakeModel(1.0)
    x, _ = _start_and_noise(0)
    xd = x.clone()
    errs = []
    for i, (t, t_prev) in enumerate(grid):
        x = rule.step(model, x, t, t_prev, None).mean
        xd = sch.step(model(xd, float(sch.sigmas[i])), sch.timesteps[i], xd).prev_sample
        errs.append(_rel(x, xd))
    err = _report(f"FlowMatchEulerDiscrete ({kind})", errs)
    assert err < RTOL


def test_flow_heun_matches_diffusers():
    sch = FlowMatchHeunDiscreteScheduler(shift=3.0)
    sch.set_timesteps(6)
    # sigmas interleaved as [s0, s1, s1, ..., s_{N-1}, s_{N-1}, 0]: every other one is the grid
    grid = custom_grid(sch.sigmas[0:-1:2])
    rule = FlowHeun(RectifiedFlow(), prediction=FlowVelocity())
    model = FakeModel(1.0)
    x, _ = _start_and_noise(0)
    xd = x.clone()
    k, errs, in_errs = 0, [], []
    for i, (t, t_prev) in enumerate(grid):
        inputs: list[tuple[torch.Tensor, float]] = []

        def evaluate(x_, t_, inputs=inputs):
            inputs.append((x_, float(t_)))
            return model(x_, t_)

        x = rule.step(evaluate, x, t, t_prev, None).mean
        assert len(inputs) == (2 if i < len(grid) - 1 else 1)
        for x_in, t_in in inputs:
            sigma = float(sch.sigmas[k])  # the sigma diffusers' k-th call evaluates at
            assert sigma == t_in
            in_errs.append(_rel(x_in, xd))
            xd = sch.step(model(xd, sigma), sch.timesteps[k], xd).prev_sample
            k += 1
        errs.append(_rel(x, xd))
    assert k == len(sch.timesteps)
    err = _report("FlowMatchHeunDiscrete (shift 3)", errs)
    assert err < RTOL and max(in_errs) < RTOL


@pytest.mark.parametrize("kind", ["shift3", "dynamic"])
@pytest.mark.parametrize("steps", [1, 7, 28])
def test_flow_grid_is_diffusers_sigmas(kind, steps):
    sch = _flow_euler_scheduler(kind, steps)
    grid = flow_grid(steps, shift=3.0) if kind == "shift3" else flow_grid(steps, mu=FLUX_MU)
    theirs = sch.sigmas.to(f64)  # float32, ending with the appended 0
    assert len(grid) == steps and float(grid.times[-1]) == 0.0
    torch.testing.assert_close(grid.times, theirs, rtol=1e-6, atol=1e-7)
    # the flow Heun scheduler builds the same static-shift grid
    if kind == "shift3":
        heun = FlowMatchHeunDiscreteScheduler(shift=3.0)
        heun.set_timesteps(steps)
        torch.testing.assert_close(grid.t, heun.sigmas[0:-1:2].to(f64), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- DDIM anchor
def test_ddim_eta1_matches_diffusers():
    """The sanity anchor: nidiff DDIM(eta=1) is diffusers' DDIMScheduler(eta=1) with the same
    variance noise ("leading" spacing: diffusers' prev_timestep = t - T//N is the next grid time,
    and -100 at the end reads set_alpha_to_one, nidiff's t = 0)."""
    sch = DDIMScheduler(
        **VP_CONFIG, clip_sample=False, set_alpha_to_one=True, timestep_spacing="leading"
    )
    sch.set_timesteps(10)
    schedule = DiscreteSchedule.from_diffusers(sch)
    grid = _vp_grid(sch, sch.timesteps)
    rule = DDIM(schedule, eta=1.0)
    model = FakeModel(schedule.t_max)
    x, zs = _start_and_noise(len(grid))
    xd, errs = x.clone(), []  # DDIMScheduler keeps float64 samples (float32 ᾱ table)
    for i, (t, t_prev) in enumerate(grid):
        td = sch.timesteps[i]
        tr = rule.step(model, x, t, t_prev, None)
        x = tr.sample(None if tr.is_deterministic else zs[i])
        xd = sch.step(model(xd, float(td) + 1), td, xd, eta=1.0, variance_noise=zs[i]).prev_sample
        errs.append(_rel(x, xd))
    err = _report("DDIMScheduler eta=1", errs)
    assert err < RTOL


# ---------------------------------------------------------------- identities inside nidiff
_PAIRS = {
    "discrete": (
        lambda: DiscreteSchedule.scaled_linear(1000, 0.0009, 0.013),
        [(1000.0, 875.0), (640.5, 333.25), (20.0, 1.0), (57.0, 0.0)],
    ),
    "vp": (VPSchedule, [(1.0, 0.8), (0.41, 0.4), (0.05, 0.0)]),
    "flow": (RectifiedFlow, [(0.999, 0.7), (0.5, 0.125), (0.2, 0.0)]),
}


@pytest.mark.parametrize("name", sorted(_PAIRS))
@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
def test_euler_ancestral_is_ddim_with_the_same_eta(name, eta):
    make, pairs = _PAIRS[name]
    schedule = make()
    ea, ddim = EulerAncestral(schedule, eta=eta), DDIM(schedule, eta=eta)
    g = torch.Generator().manual_seed(3)
    for t, t_prev in pairs:
        x, out = (torch.randn(SHAPE, generator=g, dtype=f64) for _ in range(2))
        a = ea.transition(x, out, t, t_prev)
        b = ddim.transition(x, out, t, t_prev)
        torch.testing.assert_close(a.mean, b.mean, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(a.std, b.std, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(a.x0_hat, b.x0_hat, rtol=1e-12, atol=1e-12)
        assert a.is_deterministic == b.is_deterministic


def test_flow_euler_is_ddim_eta0_on_rectified_flow():
    schedule, pred = RectifiedFlow(), FlowVelocity()
    euler, ddim = FlowEuler(schedule, prediction=pred), DDIM(schedule, eta=0.0, prediction=pred)
    g = torch.Generator().manual_seed(4)
    for t, t_prev in [(1.0, 0.9), (0.9, 0.55), (0.55, 0.1), (0.1, 0.0)]:
        x, u = (torch.randn(SHAPE, generator=g, dtype=f64) for _ in range(2))
        a, b = euler.transition(x, u, t, t_prev), ddim.transition(x, u, t, t_prev)
        torch.testing.assert_close(a.mean, b.mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(a.x0_hat, b.x0_hat, rtol=1e-12, atol=1e-12)
        assert a.is_deterministic and b.is_deterministic
