"""ProcessSpec: JSON round trip, bad input, and the objects it builds."""

from __future__ import annotations

import json

import pytest
import torch

from nidiff.noise import CosineTau, EdgePreservingNoise, GFFNoise, IsotropicNoise, SobelEdges
from nidiff.process import Process
from nidiff.samplers import DDIM, EdgePosterior
from nidiff.schedule import DiscreteSchedule
from nidiff.training.losses import EdgeLoss, EpsilonLoss
from nidiff.training.spec import ProcessSpec

SPECS = [
    ProcessSpec(),
    ProcessSpec({"kind": "cosine", "T": 50}, {"kind": "gff", "power": 1.5}),
    ProcessSpec(
        {"kind": "scaled_linear", "T": 20, "beta_start": 1e-3, "beta_end": 2e-2},
        {"kind": "edge", "lambda_min": 1e-3, "lambda_max": 0.5, "tau": "cosine", "t_phi": 0.7},
    ),
    ProcessSpec({"kind": "betas", "betas": [0.01, 0.02, 0.05]}, {"kind": "isotropic"}),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.schedule['kind']}-{s.kind}")
def test_json_round_trip(spec):
    text = json.dumps(spec.to_dict())
    back = ProcessSpec.from_dict(json.loads(text))
    assert back == spec and back.to_dict() == spec.to_dict()
    s1, s2 = spec.build_schedule(), back.build_schedule()
    torch.testing.assert_close(s1.betas, s2.betas, rtol=0, atol=0)
    # to_dict hands out copies: mutating them cannot change the spec
    d = spec.to_dict()
    d["noise"]["kind"] = "changed"
    assert spec.to_dict() != d


def test_schedule_kinds_build_their_schedules():
    lin = ProcessSpec({"kind": "linear", "T": 30}).build_schedule()
    torch.testing.assert_close(lin.betas, DiscreteSchedule.linear(T=30).betas, rtol=0, atol=0)
    betas = ProcessSpec({"kind": "betas", "betas": [0.1, 0.2]}).build_schedule()
    assert betas.T == 2 and torch.allclose(
        betas.betas, torch.tensor([0.1, 0.2], dtype=torch.float64)
    )


@pytest.mark.parametrize(
    ("schedule", "noise", "match"),
    [
        ({"kind": "quadratic"}, {"kind": "isotropic"}, "unknown schedule kind 'quadratic'"),
        ({"T": 10}, {"kind": "isotropic"}, "unknown schedule kind None"),
        ({"kind": "linear"}, {"kind": "pink"}, "unknown noise kind 'pink'"),
        ({"kind": "linear"}, {}, "unknown noise kind None"),
        ({"kind": "linear"}, {"kind": "edge", "tau": "step"}, "unknown tau 'step'"),
        ({"kind": "linear"}, {"kind": "gff", "pow": 2}, "pow"),
        ({"kind": "linear"}, {"kind": "gff", "power": -1}, "power"),
        ({"kind": "linear"}, {"kind": "isotropic", "power": 1}, "no arguments"),
        ({"kind": "linear"}, {"kind": "edge", "lambda_min": 0.0}, "lambda_min"),
        ({"kind": "linear", "T": 0}, {"kind": "isotropic"}, "T=0"),
        ({"kind": "linear", "steps": 5}, {"kind": "isotropic"}, "steps"),
        ({"kind": "betas"}, {"kind": "isotropic"}, "betas"),
        ({"kind": "betas", "betas": [0.5, 1.5]}, {"kind": "isotropic"}, "betas"),
    ],
)
def test_bad_specs_raise_value_error_at_construction(schedule, noise, match):
    with pytest.raises(ValueError, match=match):
        ProcessSpec(schedule, noise)


@pytest.mark.parametrize(
    "d",
    [
        None,
        [],
        {"schedule": {"kind": "linear"}},
        {"noise": {"kind": "gff"}},
        {"schedule": 3, "noise": {"kind": "gff"}},
        {"schedule": {"kind": "linear"}, "noise": "gff"},
    ],
)
def test_from_dict_rejects_malformed_input(d):
    with pytest.raises(ValueError, match="schedule"):
        ProcessSpec.from_dict(d)


def test_process_and_loss_objects():
    iso = ProcessSpec({"kind": "linear", "T": 40})
    proc = iso.process()
    assert isinstance(proc, Process) and isinstance(proc.noise, IsotropicNoise)
    assert proc.schedule.T == 40 and not proc.data_conditioned
    loss = iso.loss()
    assert isinstance(loss, EpsilonLoss) and isinstance(loss.noise, IsotropicNoise)

    gff = ProcessSpec({"kind": "linear", "T": 40}, {"kind": "gff", "power": 2.0})
    assert isinstance(gff.process().noise, GFFNoise) and gff.process().noise.power == 2.0
    loss = gff.loss()
    assert isinstance(loss, EpsilonLoss) and loss.noise.power == 2.0

    edge = ProcessSpec(
        {"kind": "linear", "T": 40},
        {"kind": "edge", "lambda_min": 1e-3, "tau": "cosine", "t_phi": 0.8, "squared": True},
    )
    noise = edge.process().noise
    assert isinstance(noise, EdgePreservingNoise) and edge.process().data_conditioned
    assert noise.lambda_min == 1e-3 and noise.lambda_max == 0.1  # default kept
    assert noise.tau_fn == CosineTau(0.8) and noise.edges == SobelEdges(squared=True)
    assert noise.schedule.T == 40
    loss = edge.loss()
    assert isinstance(loss, EdgeLoss) and loss.noise.schedule.T == 40


def test_loss_uses_the_given_schedule():
    sched = DiscreteSchedule.linear(T=40)
    assert ProcessSpec({"kind": "linear", "T": 40}).loss(sched).schedule is sched
    assert ProcessSpec(noise={"kind": "edge"}).loss(sched).noise.schedule is sched


def test_step_rules():
    sched = DiscreteSchedule.linear(T=40)
    rule = ProcessSpec({"kind": "linear", "T": 40}).step_rule(0.0, sched, clip_x0=(-1.0, 1.0))
    assert isinstance(rule, DDIM) and isinstance(rule.noise, IsotropicNoise)
    assert rule.eta == 0.0 and rule.clip_x0 == (-1.0, 1.0) and rule.schedule is sched

    rule = ProcessSpec(noise={"kind": "gff"}).step_rule(0.5)
    assert isinstance(rule, DDIM) and isinstance(rule.noise, GFFNoise) and rule.eta == 0.5

    edge = ProcessSpec({"kind": "linear", "T": 40}, {"kind": "edge"})
    rule = edge.step_rule(1.0, sched)
    assert isinstance(rule, EdgePosterior) and rule.noise.schedule is sched
    with pytest.raises(ValueError, match="eta=1"):
        edge.step_rule(0.0)
    with pytest.raises(ValueError, match="eta=1"):
        edge.step_rule(1.0, clip_x0=(-1.0, 1.0))
