"""One serialisation of a process: every process round-trips through ProcessSpec, checkpoints
and inversion files share it, and version-1 inversion descriptions are still understood."""

from __future__ import annotations

import pytest
import torch

from nidiff.models.prediction import FlowVelocity, VPrediction
from nidiff.noise import (
    CosineTau,
    EdgePreservingNoise,
    GFFNoise,
    IsotropicNoise,
    SigmoidTau,
    SobelEdges,
)
from nidiff.process import Process
from nidiff.schedule import DiscreteSchedule, RectifiedFlow, VESchedule, VPSchedule
from nidiff.spec import ProcessSpec, same_process, upgrade

LIN = DiscreteSchedule.linear(200)
PROCESSES = {
    "linear-iso": Process(LIN),
    "cosine-gff": Process(DiscreteSchedule.cosine(300), GFFNoise(1.5)),
    "table": Process(DiscreteSchedule.from_alphas_cumprod(LIN.alpha_bar(torch.arange(1.0, 201)))),
    "vp-v": Process(VPSchedule(0.2, 15.0), prediction=VPrediction()),
    "flow": Process(RectifiedFlow(), prediction=FlowVelocity()),
    "ve": Process(VESchedule(30.0)),
    "edge": Process(LIN, EdgePreservingNoise(LIN, 1e-3, 0.2, CosineTau(0.4))),
    "edge-sigmoid": Process(
        LIN,
        EdgePreservingNoise(
            LIN, tau=SigmoidTau(0.6, k=7.0), edges=SobelEdges(True, False, "zeros")
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_every_process_round_trips(name):
    p = PROCESSES[name]
    spec = ProcessSpec.from_process(p)
    back = ProcessSpec.from_dict(spec.to_dict()).process()
    assert type(back.schedule) is type(p.schedule) and back.prediction == p.prediction
    assert back.noise.to_spec() == p.noise.to_spec()
    t = torch.linspace(0, p.schedule.t_max, 17, dtype=torch.float64)[1:]
    torch.testing.assert_close(back.schedule.log_snr(t), p.schedule.log_snr(t), rtol=0, atol=1e-12)
    assert same_process(spec.to_dict(), ProcessSpec.from_process(back).to_dict())


def test_different_processes_differ():
    specs = {k: ProcessSpec.from_process(p).to_dict() for k, p in PROCESSES.items()}
    for a in specs:
        for b in specs:
            assert same_process(specs[a], specs[b]) == (a == b or {a, b} == {"linear-iso", "table"})


def test_a_checkpoint_spec_is_the_same_form():
    """A checkpoint's spec (as ``nidiff train`` writes it) and the description an inversion
    stores are one dictionary."""
    spec = ProcessSpec({"kind": "linear", "T": 1000}, {"kind": "gff", "power": 1.0})
    from nidiff.inversion import describe_process

    assert same_process(describe_process(spec.process()), spec.to_dict())


def test_version_1_inversion_descriptions_are_upgraded():
    table = LIN.log_alpha_bar_table.tolist()
    old = {
        "noise": {
            "kind": "edge", "lambda_min": 1e-3, "lambda_max": 0.2,
            "tau": "CosineTau(t_phi=0.4)",
            "edges": "SobelEdges(squared=False, per_image=True, padding='replicate')",
        },
        "schedule": {"kind": "discrete", "log_alpha_bar": table},
    }  # fmt: skip
    assert same_process(old, ProcessSpec.from_process(PROCESSES["edge"]).to_dict())
    new = upgrade(old)
    assert new["noise"]["tau"] == "cosine" and new["noise"]["t_phi"] == 0.4
    assert ProcessSpec.from_dict(new).process().noise.to_spec() == PROCESSES["edge"].noise.to_spec()


def test_bad_specs_name_the_problem():
    with pytest.raises(ValueError, match="unknown schedule kind"):
        ProcessSpec({"kind": "quadratic"})
    with pytest.raises(ValueError, match="unknown prediction"):
        ProcessSpec(prediction="velocity")
    with pytest.raises(ValueError, match="FlowVelocity"):
        ProcessSpec({"kind": "linear", "T": 10}, prediction="flow")
    with pytest.raises(ValueError, match="invalid process spec"):
        ProcessSpec({"kind": "linear", "T": 10, "slope": 2})
    default = ProcessSpec().process()
    assert isinstance(default.noise, IsotropicNoise) and default.schedule.T == 1000
