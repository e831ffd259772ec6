"""Saving and loading inversions: bitwise round trip, atomic writes, refusals, bad files."""

from __future__ import annotations

import pytest
import torch

from nidiff.inversion import (
    check_process,
    describe_process,
    edit_friendly_invert,
    edit_friendly_regenerate,
    load_inversion,
    save_inversion,
)
from nidiff.models import GaussianDenoiser
from nidiff.noise import DiagonalNoise, EdgePreservingNoise, GFFNoise, IsotropicNoise
from nidiff.process import Process
from nidiff.schedule import DiscreteSchedule, VPSchedule, leading_grid

SCHED = DiscreteSchedule.linear(1000)
PROCESS = Process(SCHED)


class Conditional:
    """A 2-D Gaussian denoiser that ignores ``cond`` but checks its batch (any cond type)."""

    def __init__(self):
        self.base = GaussianDenoiser(torch.zeros(2), torch.eye(2), SCHED)

    def __call__(self, x, t, cond):
        return self.base(x, t)


def make(cond=None, steps=8, seed=0, dtype=torch.float32):
    x0 = torch.randn(3, 2, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    g = torch.Generator().manual_seed(seed + 1)
    inv = edit_friendly_invert(
        Conditional(), x0, PROCESS, leading_grid(SCHED, steps), cond=cond, eta=0.7, generator=g
    )
    return x0, inv


def same(a, b):
    assert torch.equal(a.x_T, b.x_T) and torch.equal(a.x0, b.x0)
    assert a.x_T.dtype == b.x_T.dtype
    assert all(map(torch.equal, a.zs, b.zs))
    assert torch.equal(a.grid.t, b.grid.t) and torch.equal(a.grid.t_prev, b.grid.t_prev)
    assert (a.guidance, a.eta, a.zero_last) == (b.guidance, b.eta, b.zero_last)
    assert a.process_info == b.process_info


@pytest.mark.parametrize(
    "cond",
    [None, torch.tensor([0, 2, 1]), {"emb": torch.randn(3, 4, 5), "ids": torch.tensor([1, 2, 3])}],
    ids=["none", "tensor", "dict"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip_is_bitwise(tmp_path, cond, dtype):
    _, inv = make(cond, dtype=dtype)
    path = save_inversion(inv, tmp_path / "inv.safetensors")
    back = load_inversion(path, process=PROCESS)
    same(inv, back)
    assert all(map(torch.equal, inv.xs, back.xs))
    if cond is None:
        assert back.cond is None
    elif isinstance(cond, dict):
        assert cond.keys() == back.cond.keys()
        assert all(torch.equal(cond[k], back.cond[k]) for k in cond)
    else:
        assert torch.equal(back.cond, cond)
    assert [p.name for p in tmp_path.iterdir()] == ["inv.safetensors"]  # no temporary left


def test_loaded_inversion_regenerates_identically_with_and_without_trajectory(tmp_path):
    x0, inv = make(steps=12)
    save_inversion(inv, tmp_path / "full.safetensors")
    save_inversion(inv, tmp_path / "lean.safetensors", trajectory=False)
    full, lean = (load_inversion(tmp_path / f"{n}.safetensors") for n in ("full", "lean"))
    assert lean.xs is None and full.xs is not None
    model = Conditional()
    assert torch.equal(
        edit_friendly_regenerate(model, full, PROCESS).x0,
        edit_friendly_regenerate(model, inv, PROCESS).x0,
    )
    for skip in (0, 5, 11):
        ref = edit_friendly_regenerate(model, inv, PROCESS, skip=skip)
        out = edit_friendly_regenerate(model, lean, PROCESS, skip=skip)
        assert torch.equal(out.x0, ref.x0), skip
        assert out.nfe == 12 and ref.nfe == 12 - skip  # lean: skip steps recomputed
    assert ((out.x0 - x0).norm() / x0.norm()).item() <= 1e-5


def test_refuses_to_overwrite(tmp_path):
    _, inv = make()
    path = save_inversion(inv, tmp_path / "inv.safetensors")
    before = path.read_bytes()
    _, other = make(seed=3)
    with pytest.raises(FileExistsError):
        save_inversion(other, path)
    assert path.read_bytes() == before
    save_inversion(other, path, overwrite=True)
    same(load_inversion(path), other)


def test_bad_files_raise_value_error(tmp_path):
    from safetensors.torch import save_file

    _, inv = make()
    good = save_inversion(inv, tmp_path / "good.safetensors").read_bytes()
    cases = {
        "garbage": b"not a safetensors file at all",
        "truncated": good[: len(good) // 2],
        "empty": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match="not a readable nidiff inversion"):
            load_inversion(tmp_path / name)
    save_file({"x": torch.zeros(2)}, str(tmp_path / "foreign"))
    with pytest.raises(ValueError, match="no nidiff inversion metadata"):
        load_inversion(tmp_path / "foreign")
    with pytest.raises(FileNotFoundError):
        load_inversion(tmp_path / "missing.safetensors")


def test_other_process_is_refused(tmp_path):
    _, inv = make()
    path = save_inversion(inv, tmp_path / "inv.safetensors")
    others = [
        Process(SCHED, GFFNoise(1.0)),
        Process(DiscreteSchedule.linear(1000, beta_end=0.021)),
        Process(DiscreteSchedule.cosine(1000)),
    ]
    for other in others:
        with pytest.raises(ValueError, match="different process"):
            load_inversion(path, process=other)
        with pytest.raises(ValueError, match="different process"):
            edit_friendly_regenerate(Conditional(), inv, other)
    check_process(inv.process_info, Process(DiscreteSchedule.linear(1000)))  # rebuilt: accepted


def test_process_descriptions():
    ep = EdgePreservingNoise(SCHED, lambda_min=1e-3)
    d = describe_process(Process(SCHED, ep))
    assert d["noise"]["kind"] == "edge" and d["noise"]["lambda_min"] == 1e-3
    # one serialisation (nidiff.spec): a named schedule by its constructor, a table in full
    assert d["schedule"] == {"kind": "linear", "T": 1000, "beta_start": 1e-4, "beta_end": 0.02}
    table = DiscreteSchedule.from_alphas_cumprod(SCHED.alpha_bar(torch.arange(1.0, 1001.0)))
    assert len(describe_process(Process(table))["schedule"]["betas"]) == 1000
    assert describe_process(Process(VPSchedule(), GFFNoise(2.0))) == {
        "noise": {"kind": "gff", "power": 2.0},
        "schedule": {"kind": "vp", "beta_min": 0.1, "beta_max": 20.0},
    }
    std = torch.rand(1, 1, 4, 4, dtype=torch.float64) + 0.5
    a, b = (describe_process(Process(SCHED, DiagonalNoise(s))) for s in (std, std * 1.01))
    assert a["noise"]["kind"] == "diagonal" and a["noise"] != b["noise"]
    assert describe_process(Process(SCHED, IsotropicNoise()))["noise"] == {"kind": "isotropic"}
