"""Every network parametrisation converts to (x̂0, ε̂_Σ) and back, on every schedule and noise;
a process refuses a prediction its schedule cannot serve."""

from __future__ import annotations

import pytest
import torch

from nidiff.models.prediction import Data, Epsilon, FlowVelocity, ScaledNoise, VPrediction
from nidiff.noise import GFFNoise, IsotropicNoise
from nidiff.process import Process
from nidiff.samplers import coefficients_at
from nidiff.schedule import DiscreteSchedule, RectifiedFlow, VESchedule, VPSchedule

f64 = torch.float64
SCHEDULES = {
    "discrete": (DiscreteSchedule.linear(), 400.0),
    "vp": (VPSchedule(), 0.4),
    "flow": (RectifiedFlow(), 0.4),
    "flow-start": (RectifiedFlow(), 1.0),  # α = 0: no ε → x0 division anywhere
    "ve": (VESchedule(10.0), 2.0),
}
PREDICTIONS = [Epsilon(), Data(), VPrediction(), FlowVelocity(), ScaledNoise()]
# Every pair a process accepts: velocity models need a continuous schedule, and at α_t = 0
# (rectified flow's start) an ε or scaled-noise output says nothing about x0, an x0 output
# nothing about ε; only v and flow velocity determine both there.
PAIRS = [
    (sched, pred)
    for sched, (schedule, _) in SCHEDULES.items()
    for pred in PREDICTIONS
    if (schedule.has_velocity or not pred.needs_velocity)
    and not (sched == "flow-start" and isinstance(pred, (Epsilon, Data, ScaledNoise)))
]


def _case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(3, 2, 8, 8, generator=g, dtype=f64)
    eps = torch.randn(3, 2, 8, 8, generator=g, dtype=f64)
    return x0, eps


@pytest.mark.parametrize(("sched", "pred"), PAIRS, ids=[f"{s}-{p!r}" for s, p in PAIRS])
@pytest.mark.parametrize("noise", [IsotropicNoise(), GFFNoise(1.0)], ids=repr)
def test_split_inverts_compose(sched, pred, noise):
    schedule, t = SCHEDULES[sched]
    x0, eps = _case()
    eps_sigma = noise.color(eps)
    x_t = noise.q_sample(schedule, x0, t, eps)
    c = coefficients_at(schedule, t, x_t, velocity=pred.needs_velocity)
    out = pred.compose(x0, eps_sigma, c, noise)
    x0_hat, eps_hat = pred.split(x_t, out, c, noise)
    torch.testing.assert_close(x0_hat, x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(eps_hat, eps_sigma, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(pred.implied(x_t, x0, c, noise), out, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(pred.target(x0, eps, c, noise), out, rtol=1e-12, atol=1e-12)
    if pred.needs_velocity or schedule.has_velocity:
        cv = coefficients_at(schedule, t, x_t, velocity=True)
        da, ds = schedule.velocity_coefficients(t)
        want = float(da) * x0 + float(ds) * eps_sigma
        torch.testing.assert_close(pred.velocity(x_t, out, cv, noise), want, rtol=1e-9, atol=1e-9)


def test_the_named_forms():
    """ε: white noise; v = α ε − σ x0; flow velocity on rectified flow = ε − x0."""
    x0, eps = _case(1)
    noise, t = IsotropicNoise(), 0.3
    flow = RectifiedFlow()
    c = coefficients_at(flow, t, x0, velocity=True)
    torch.testing.assert_close(FlowVelocity().compose(x0, eps, c, noise), eps - x0)
    vp = VPSchedule()
    c = coefficients_at(vp, t, x0)
    a, s = vp.coefficients(t)
    torch.testing.assert_close(VPrediction().compose(x0, eps, c, noise), a * eps - s * x0)
    x_t = noise.q_sample(flow, x0, t, eps)
    c = coefficients_at(flow, t, x0, velocity=True)
    torch.testing.assert_close(ScaledNoise().compose(x0, eps, c, noise), x_t - (1 - t) * x0)


def test_process_refuses_a_velocity_model_on_a_discrete_table():
    with pytest.raises(ValueError, match=r"FlowVelocity.*DiscreteSchedule"):
        Process(DiscreteSchedule.linear(), prediction=FlowVelocity())
    assert Process(RectifiedFlow(), prediction=FlowVelocity()).prediction == FlowVelocity()
    assert Process(DiscreteSchedule.linear()).prediction == Epsilon()


def test_edge_preserving_processes_predict_scaled_noise():
    from nidiff.noise import EdgePreservingNoise

    s = DiscreteSchedule.linear(100)
    ep = EdgePreservingNoise(s)
    assert Process(s, ep).prediction == ScaledNoise()
    with pytest.raises(ValueError, match="predict ScaledNoise"):
        Process(s, ep, prediction=Epsilon())
    with pytest.raises(ValueError, match="built on"):
        Process(DiscreteSchedule.linear(200), ep)
    with pytest.raises(ValueError, match="variance-preserving"):
        EdgePreservingNoise(RectifiedFlow())
