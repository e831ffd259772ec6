"""The editing benchmark's NFE sweep without data: the formula of every method, the steps a
budget buys, the edit grids, and that the NFE a setting reports is the number of network
evaluations counted on a model (calls × batch) — for every method, budget and sampler."""

from __future__ import annotations

import pytest
import torch

from nidiff.bench._editing_compare import bootstrap, compare, interpolate
from nidiff.bench._editing_methods import METHODS, RULE_METHODS, Task, run_methods
from nidiff.bench._editing_nfe import edit_grid, nfe_of, start_time, steps_for
from nidiff.bench.overhead import CountingModel
from nidiff.process import Process
from nidiff.schedule import DiscreteSchedule, linspace_grid

SCHEDULE = DiscreteSchedule.linear(1000)


class Evaluations:
    """A class-conditional stand-in for a network that counts images evaluated."""

    def __init__(self):
        self.images = 0

    def __call__(self, x, t, cond=None):
        self.images += x.shape[0]
        return 0.1 * x + 0.01 * cond.to(x.dtype).reshape(-1, *[1] * (x.ndim - 1))

    def null_cond(self):
        return torch.tensor(10)


PROCESS = Process(SCHEDULE)


def _task(model, rule=None, map_draws=2, B=3):
    x0 = torch.linspace(-1, 1, B * 8 * 8).reshape(B, 1, 8, 8)
    src = torch.full((B,), 7)
    return Task(
        CountingModel(model, torch.device("cpu")), PROCESS, linspace_grid(SCHEDULE, 6),
        x0, src, torch.full((B,), 5), 3.0, model.null_cond(), map_draws, 0, 0, rule,
    )  # fmt: skip


def test_the_formulas():
    g, n = 2, 10
    assert nfe_of("SDEdit", 5, g=g, map_draws=n) == 10
    assert nfe_of("NGDM", 5, g=g, map_draws=n) == 10 + 20
    assert nfe_of("EF", 10, g=g, map_draws=n) == 30
    assert nfe_of("NGDM+EF", 3, g=g, map_draws=n) == 9 + 20
    assert nfe_of("DiffEdit", 3, g=g, map_draws=n) == 20 + 9
    assert nfe_of("ILVR", 7, g=g, map_draws=n) == 14
    assert nfe_of("EF", 10, g=1, map_draws=n) == 20  # unguided regeneration: 1 per step
    # Heun: 2 calls per step but 1 on the last (onto clean data), for the rule methods only
    assert nfe_of("SDEdit", 5, g=g, map_draws=n, sampler="heun") == 2 * 9
    assert nfe_of("DDIM inv.", 5, g=g, map_draws=n, sampler="heun") == 15
    with pytest.raises(ValueError, match="unknown method"):
        nfe_of("Pix2Pix", 3, g=g, map_draws=n)


def test_a_budget_buys_the_most_steps_it_allows():
    kw = {"g": 2, "map_draws": 10}
    assert [steps_for("EF", b, **kw) for b in (10, 20, 30, 50, 164)] == [3, 6, 10, 16, 54]
    assert [steps_for("SDEdit", b, **kw) for b in (10, 20, 30, 50, 164)] == [5, 10, 15, 25, 82]
    assert steps_for("NGDM", 30, **kw) == 5 and steps_for("NGDM", 30, g=2, map_draws=2) == 13
    assert steps_for("NGDM", 10, **kw) == 1  # one step costs 22: the nearest it allows
    for m in METHODS:
        for b in (10, 20, 30, 50, 164):
            steps = steps_for(m, b, g=2, map_draws=2)
            assert nfe_of(m, steps, g=2, map_draws=2) <= b < nfe_of(m, steps + 1, g=2, map_draws=2)


def test_edit_grids_start_at_the_strength_for_every_budget():
    assert start_time(SCHEDULE, 0.3) == 300.0 and start_time(SCHEDULE, 0.7) == 700.0
    for steps in (1, 3, 10, 54):
        grid = edit_grid(SCHEDULE, 0.5, steps)
        assert len(grid) == steps and float(grid.t[0]) == 500.0 and float(grid.t_prev[-1]) == 0
    assert edit_grid(SCHEDULE, 0.5, 3, shift=3.0).t.tolist() == [500.0, 428.0, 300.0]
    assert float(edit_grid(SCHEDULE, None, 5).t[0]) == 1000.0  # ILVR: from t_max
    with pytest.raises(ValueError, match="do not fit"):
        edit_grid(SCHEDULE, 0.002, 3)


@pytest.mark.parametrize("sampler", ["ddpm", "dpm++2m-sde", "heun"])
@pytest.mark.parametrize("budget", [10, 20, 30])
def test_the_reported_nfe_is_the_counted_network_evaluations(sampler, budget):
    model = Evaluations()
    rule = None if sampler == "ddpm" else PROCESS.sampler(sampler)
    task = _task(model, rule)
    B = len(task.x0)
    methods = [m for m in METHODS if sampler != "heun" or m not in ("EF", "NGDM+EF")]
    plan = {m: steps_for(m, budget, g=2, map_draws=2, sampler=_name(m, sampler)) for m in methods}

    def grids(method, s):
        return edit_grid(SCHEDULE, s, plan[method])

    edits = list(run_methods(task, (0.3, 0.6), (4,), methods, grids=grids, suffix=" · x"))
    assert {e.method for e in edits} == set(methods)
    for e in edits:
        expect = nfe_of(e.method, e.steps, g=2, map_draws=2, sampler=_name(e.method, sampler))
        assert e.nfe == expect * B, (e.method, e.setting)
        assert e.steps == plan[e.method] and e.setting.endswith(" · x")
        assert e.nfe / B <= budget or e.steps == 1


def _name(method, sampler):
    return sampler if method in RULE_METHODS else "ddpm"


def test_counted_evaluations_add_up_for_one_setting():
    """One setting alone: the model's own count of images evaluated equals the reported NFE."""
    for method in METHODS:
        model = Evaluations()
        task = _task(model)
        (e,) = list(run_methods(task, (0.5,), (4,), [method],
                                grids=lambda m, s: edit_grid(SCHEDULE, s, 4)))  # fmt: skip
        assert model.images == e.nfe == nfe_of(method, 4, g=2, map_draws=2) * len(task.x0)


def test_matched_accuracy_comparison():
    def rows(*pts):
        return [{"param": i, "accuracy": a, "ssim": s, "bg_psnr": b} for i, (a, s, b) in
                enumerate(pts)]  # fmt: skip

    ref = rows((0.5, 0.8, 30.0), (0.9, 0.5, 26.0))
    assert interpolate([(0.5, 0.8), (0.9, 0.5)], 0.7) == pytest.approx(0.65)
    assert interpolate([(0.5, 0.8), (0.9, 0.5)], 0.95) is None
    same = compare(ref, ref)
    assert same["met"] is True and same["worst"] == {"ssim": 0.0, "bg_psnr": 0.0}
    worse = compare(ref, rows((0.4, 0.8, 29.0), (0.8, 0.5, 25.5), (1.0, 0.3, 23.0)))
    # read at the reference's accuracies: 0.5 -> 0.725 / 28.125, 0.9 -> 0.4 / 24.25
    assert [p["accuracy"] for p in worse["points"]] == [0.5, 0.9] and not worse["uncovered"]
    assert worse["points"][0]["ssim"] == pytest.approx(0.725)
    assert worse["worst"]["ssim"] == pytest.approx(-0.1) and worse["met"] is False
    assert worse["worst"]["bg_psnr"] == pytest.approx(-1.875)
    close = compare(ref, rows((0.5, 0.79, 29.5), (0.85, 0.55, 26.0)))
    assert close["uncovered"] == [0.9] and close["met"] is None  # 0.9 is beyond its sweep
    assert compare(ref, rows((0.0, 0.9, 40.0), (0.1, 0.8, 39.0)))["met"] is None  # no overlap


def _imaged(param, hits, ssims, bgs):
    """A sweep row with per-image values and their means, as the bench writes it."""
    per = {"accuracy": list(hits), "ssim": list(ssims), "bg_psnr": list(bgs)}
    return {"param": param, **{k: sum(v) / len(v) for k, v in per.items()}, "per_image": per}


def test_bootstrap_of_identical_or_shifted_curves_is_exact():
    """Redrawing the images moves both curves together: a candidate equal to the reference
    differs by exactly 0 in every draw, one 0.1 SSIM / 2 dB lower per image by exactly that."""
    gen = torch.Generator().manual_seed(0)
    n = 64
    ref = []
    for i, p in enumerate((0.2, 0.6, 0.95)):
        hits = (torch.rand(n, generator=gen) < p).double().tolist()
        ssims = (0.9 - 0.5 * p + 0.05 * torch.randn(n, generator=gen)).tolist()
        ref.append(_imaged(i, hits, ssims, [30.0 - 5 * p] * n))
    same = bootstrap(ref, ref, draws=50)
    assert same["met"] == 1.0 and same["draws"] == 50 and same["level"] == 0.9
    for q in same["points"]:
        assert q["covered"] == 1.0 and q["d_ssim"] == pytest.approx([0.0, 0.0], abs=1e-12)
    lower = [_imaged(r["param"], r["per_image"]["accuracy"],
                     [v - 0.1 for v in r["per_image"]["ssim"]],
                     [v - 2.0 for v in r["per_image"]["bg_psnr"]]) for r in ref]  # fmt: skip
    shifted = bootstrap(ref, lower, draws=50)
    assert shifted["met"] == 0.0
    for q in shifted["points"]:
        assert q["d_ssim"] == pytest.approx([-0.1, -0.1]) and q["d_bg_psnr"] == pytest.approx(
            [-2.0, -2.0]
        )
    assert [q["accuracy"] for q in shifted["points"]] == [r["accuracy"] for r in ref]


def test_bootstrap_interval_brackets_the_estimate_and_narrows_with_more_images():
    def curves(n, seed):
        gen = torch.Generator().manual_seed(seed)
        out = []
        for offset in (0.0, -0.01):  # reference, candidate
            rows = []
            for i, p in enumerate((0.3, 0.6, 0.9, 0.99)):
                hits = (torch.rand(n, generator=gen) < p).double()
                ssim = 0.9 - 0.6 * p**4 + offset + 0.05 * torch.randn(n, generator=gen)
                rows.append(_imaged(i, hits.tolist(), ssim.tolist(), [25.0] * n))
            out.append(rows)
        return out

    widths = []
    for n in (100, 1600):
        ref, cand = curves(n, 1)
        got, boot = compare(ref, cand), bootstrap(ref, cand, draws=400)
        spans = {q["param"]: q for q in boot["points"]}
        for q in got["points"]:
            lo, hi = spans[q["param"]]["d_ssim"]
            assert lo <= q["d_ssim"] <= hi
        widths.append(max(q["d_ssim"][1] - q["d_ssim"][0] for q in boot["points"] if q["d_ssim"]))
    assert widths[1] < widths[0] / 2  # 16x the images: about a quarter of the width


def test_bootstrap_needs_per_image_values_in_one_image_order():
    rows = [{"param": 0, "accuracy": 0.5, "ssim": 0.8, "bg_psnr": 30.0}]
    assert bootstrap(rows, rows) is None
    a, b = _imaged(0, [1.0, 0.0], [0.8, 0.7], [30, 29]), _imaged(1, [1.0], [0.5], [25])
    assert bootstrap([a], [a, b]) is None


def test_reference_points_of_equal_accuracy_keep_their_own_intervals():
    hits = [1.0, 0.0, 1.0, 1.0]
    ref = [_imaged(0, hits, [0.8] * 4, [30.0] * 4), _imaged(1, hits, [0.6] * 4, [27.0] * 4)]
    # a candidate of SSIM 0.7 at every accuracy from 0 to 1
    cand = [_imaged(0, [0.0] * 4, [0.7] * 4, [28.0] * 4), _imaged(1, [1.0] * 4, [0.7] * 4,
            [28.0] * 4)]  # fmt: skip
    got = compare(ref, cand)
    assert [q["param"] for q in got["points"]] == [0, 1]  # both read at 0.75
    boot = bootstrap(ref, cand, draws=20)
    assert [q["param"] for q in boot["points"]] == [0, 1]
    assert boot["points"][0]["d_ssim"] == pytest.approx([-0.1, -0.1])
    assert boot["points"][1]["d_ssim"] == pytest.approx([0.1, 0.1])
