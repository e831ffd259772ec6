import json
from dataclasses import replace

import pytest
import torch

from nidiff.bench import editing
from nidiff.bench._editing_metrics import aggregate, edit_region
from nidiff.data.fashion_mnist import DEFAULT_DIR

PNG = b"\x89PNG\r\n\x1a\n"


def _row(pair, method, setting, param, fid, **kw):
    row = {
        "pair": pair,
        "method": method,
        "setting": setting,
        "param": param,
        "n": 4,
        "seed": 3,
        "t_start": 474.0,
        "fid": fid,
        "kid": 0.5,
        "accuracy": 0.75,
        "ssim": 0.5,
        "psnr": 20.0,
        "bg_psnr": 30.0,
        "bg_ssim": 0.9,
        "diversity": 0.01,
        "seconds_per_image": 0.25,
        "nfe_per_image": 20.0,
    }
    return row | kw


def _fake_result():
    image = bytes(range(16)).hex()  # a 4 x 4 uint8 image
    pair = "Sneaker → Sandal"
    none = dict.fromkeys(("ssim", "psnr", "bg_psnr", "bg_ssim", "diversity"))
    cost = {"seconds_per_image": None, "nfe_per_image": None}
    return {
        "preset": "custom",
        "config": {
            "images": 4,
            "steps": 20,
            "guidance": 3.0,
            "repeats": 3,
            "diversity_k": 3,
            "diversity_inputs": 2,
        },
        "model": "fashion-isotropic",
        "hardware": "CPU (test)",
        "threads": 1,
        "seconds": 12.0,
        "pairs": [{"label": pair, "source": 7, "target": 5}],
        "rows": [
            _row(pair, "NGDM", "s = 0.5", 0.5, 123.456, std={"fid": 1.5}),
            _row(pair, "SDEdit", "s = 0.5", 0.5, 150.0, ssim=0.25),
            _row(pair, "SDEdit", "s = 0.3", 0.3, 170.0),
            _row(pair, "ILVR", "N = 4", 4.0, 90.0, accuracy=1.0, ssim=0.125),
            _row(pair, "target (train)", "–", None, 80.0, accuracy=1.0, **none, **cost),
            _row("pooled", "NGDM", "s = 0.5", 0.5, 99.0, n=12),
        ],
        "examples": {
            "size": [4, 4],
            "pairs": {
                pair: {
                    "indices": [9],
                    "source": [image],
                    "edits": {"NGDM": {"setting": "s = 0.5", "images": [image]}},
                }
            },
        },
        "classifier_accuracy": 0.981,
    }


def _table(text, title):
    lines = text.splitlines()
    start = lines.index(title) + 3
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def test_markdown_renders_fake_result():
    text = editing.markdown(_fake_result())
    header = "| method | setting | FID | KID | target acc | SSIM | PSNR | bg PSNR | bg SSIM "
    assert header + "| diversity | s/img | NFE/img |" in text
    rows = _table(text, "**Sneaker → Sandal**")
    assert rows[0] == "|---|---|" + "---:|" * 10
    # references first, then METHODS order, sweeps in increasing parameter
    assert [r.split(" | ")[:2] for r in rows[1:]] == [
        ["| target (train)", "–"],
        ["| SDEdit", "s = 0.3"],
        ["| SDEdit", "s = 0.5"],
        ["| NGDM", "s = 0.5"],
        ["| ILVR", "N = 4"],
    ]
    assert rows[1] == "| target (train) | – | 80.0 | 0.500 | 1.00 | – | – | – | – | – | – | – |"
    assert rows[3] == (
        "| SDEdit | s = 0.5 | 150.0 | 0.500 | 0.75 | 0.250 | 20.0 | 30.0 | 0.900 | 0.0100 "
        "| 0.250 | 20 |"
    )
    assert rows[4].startswith("| NGDM | s = 0.5 | 123.5 ± 1.5 | 0.500 | 0.75 | 0.500 |")
    assert _table(text, "**pooled** (all pairs)")[1].startswith("| NGDM | s = 0.5 | 99.0 |")
    assert "3 repeat(s)" in text and "0.981" in text


def test_plot_writes_pngs(tmp_path):
    paths = editing.plot(_fake_result(), tmp_path)
    assert [p.name for p in paths] == ["editing-tradeoff.png", "editing-examples.png"]
    for p in paths:
        assert p.read_bytes()[:8] == PNG and p.stat().st_size > 1000


def test_edit_region_is_the_dilated_mean_difference():
    x = torch.zeros(4, 5, 5, dtype=torch.uint8)
    x[2:, 2, 2] = 255  # class 1 has one bright pixel more than class 0
    y = torch.tensor([0, 0, 1, 1])
    region = edit_region(x, y, 0, 1)
    expect = torch.zeros(5, 5)
    expect[1:4, 1:4] = 1
    assert torch.equal(region[0, 0], expect)
    assert edit_region(x, y, 1, 1).sum() == 0


def test_aggregate_over_repeats_gives_mean_and_sample_std():
    a = _row("p", "EF", "s = 0.5", 0.5, 10.0, seed=1)
    b = _row("p", "EF", "s = 0.5", 0.5, 14.0, seed=2, diversity=None)
    ref = _row("p", "source", "–", None, 5.0)
    rows = aggregate([[ref, a], [b]])
    assert rows[0] == ref  # a group of one row is kept as it is
    assert rows[1]["fid"] == 12.0 and rows[1]["std"]["fid"] == pytest.approx(8**0.5)
    assert rows[1]["std"]["ssim"] == 0 and rows[1]["seed"] == [1, 2]
    assert rows[1]["repeats"]["fid"] == [10.0, 14.0]
    assert "diversity" not in rows[1]["std"]  # missing in one repeat: no std


@pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason="Fashion-MNIST not installed")
def test_run_tiny_end_to_end():
    tiny = editing.Preset(
        images=2,
        steps=4,
        strengths=(0.001,),  # starts at the last grid time t = 1: one step, L = 1
        ilvr_factors=(4,),
        diversity_inputs=1,
        diversity_k=2,
        map_draws=2,
        pairs=((7, 5),),
        examples=1,
        real=40,
    )
    result = editing.run(device="cpu", preset=tiny)
    json.dumps(result, allow_nan=False)  # JSON-safe, no inf / NaN
    rows = {(r["pair"], r["method"], r["setting"]): r for r in result["rows"]}
    pair = "Sneaker → Sandal"
    assert {m for p, m, _ in rows if p == pair} == {"source", "target (train)", *editing.METHODS}
    assert {k[1:] for k in rows if k[0] == "pooled"} == {k[1:] for k in rows if k[0] == pair}
    # NFE per image with guidance 3 (g = 2), L = 1 step, N = 4, map/mask n = 2 draws
    g, L, N, n = 2, 1, 4, 2
    nfe = {
        "SDEdit": g * L,
        "NGDM": g * L + 2 * n,
        "EF": L + g * L,
        "NGDM+EF": L + g * L + 2 * n,
        "DDIM inv.": L + g * L,
        "CycleDiff.": L + g * L,
        "DiffEdit": 2 * n + L + g * L,
        "ILVR": g * N,
    }
    for (p, method, _), r in rows.items():
        if method in nfe:
            assert r["nfe_per_image"] == nfe[method], (p, method)
            assert r["seconds_per_image"] > 0 and r["n"] == 2
            assert 0 <= r["accuracy"] <= 1 and r["fid"] >= 0
    # one step from t = 1 barely changes the source
    for method in ("SDEdit", "NGDM"):
        assert rows[(pair, method, "s = 0.001")]["ssim"] > 0.99
    src = rows[(pair, "source", "–")]
    assert src["ssim"] == 1 and src["nfe_per_image"] == 0 and src["accuracy"] <= 0.5
    assert rows[(pair, "target (train)", "–")]["accuracy"] > 0.5
    # deterministic: identical edits of one input; ILVR samples from the prior: diverse
    assert rows[(pair, "DDIM inv.", "s = 0.001")]["diversity"] < 1e-10
    assert rows[(pair, "ILVR", "N = 4")]["diversity"] > 1e-3
    edits = result["examples"]["pairs"][pair]["edits"]
    assert set(edits) == set(editing.METHODS)
    assert len(edits["NGDM"]["images"][0]) == 2 * 28 * 28


@pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason="Fashion-MNIST not installed")
def test_a_methods_subset_runs_only_those_and_charges_the_shared_work(capsys):
    tiny = editing.Preset(
        images=2, steps=4, strengths=(0.001,), ilvr_factors=(4,), diversity_inputs=0,
        map_draws=2, pairs=((7, 5),), examples=1, real=40, methods=("NGDM+EF",),
    )  # fmt: skip
    rows = editing.run(device="cpu", preset=tiny)["rows"]
    assert {r["method"] for r in rows} == {"source", "target (train)", "NGDM+EF"}
    err = capsys.readouterr().err  # progress goes to stderr, one line per edit
    assert err.startswith("[editing] Sneaker → Sandal: NGDM+EF s = 0.001 (")
    assert err.count("\n") == 1
    edit = next(r for r in rows if r["method"] == "NGDM+EF")
    assert edit["nfe_per_image"] == 1 + 2 * 1 + 2 * 2  # inversion + guided step + the map
    with pytest.raises(ValueError, match="choose among SDEdit, NGDM"):
        editing.run(device="cpu", preset=replace(tiny, methods=("NGDM", "Pix2Pix")))


@pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason="Fashion-MNIST not installed")
def test_runs_of_one_repeat_merge_into_the_multi_repeat_run(tmp_path, capsys):
    from nidiff.bench._editing_merge import merge

    tiny = editing.Preset(
        images=2, steps=4, strengths=(0.5,), ilvr_factors=(), diversity_inputs=0, map_draws=2,
        pairs=((7, 5),), examples=1, real=40, methods=("SDEdit", "NGDM", "EF"),
    )  # fmt: skip
    both = editing.run(device="cpu", preset=replace(tiny, repeats=2))
    parts = [editing.run(device="cpu", preset=replace(tiny, seed=s)) for s in (0, 10**6)]
    merged = merge(parts, editing.REFERENCES)

    def measured(rows):  # everything but the wall time
        drop = ("seconds_per_image",)
        return [
            {k: v for k, v in r.items() if k not in drop}
            | {"std": {k: v for k, v in r.get("std", {}).items() if k not in drop}}
            | {"repeats": {k: v for k, v in r.get("repeats", {}).items() if k not in drop}}
            for r in rows
        ]

    assert measured(merged["rows"]) == measured(both["rows"])
    assert merged["config"]["repeats"] == 2 and merged["config"]["seed"] == [0, 10**6]
    assert "(merged: 2 seeds)" in merged["preset"] and editing.markdown(merged)
    with pytest.raises(ValueError, match="different seeds"):
        merge([parts[0], parts[0]], editing.REFERENCES)
    with pytest.raises(ValueError, match="more than its seed"):
        merge([parts[0], {**parts[1], "config": {**parts[1]["config"], "steps": 5}}], ("source",))
    with pytest.raises(ValueError, match="one repeat"):
        merge([parts[0], both], editing.REFERENCES)
    # the command: merged outputs written; a bad file is one error line and exit 2
    paths = []
    for i, part in enumerate(parts):
        paths.append(tmp_path / f"r{i}.json")
        paths[-1].write_text(json.dumps(part))
    editing.main(["--merge", *map(str, paths), "--json", str(tmp_path / "m.json")])
    assert json.loads((tmp_path / "m.json").read_text())["config"]["repeats"] == 2
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SystemExit) as exit_info:
        editing.main(["--merge", str(paths[0]), str(tmp_path / "bad.json")])
    assert exit_info.value.code == 2 and "is not a JSON result" in capsys.readouterr().err


def test_the_new_fields_default_to_todays_run():
    """sampler, shift, nfe and map_study default to the run the presets always made (the tiny
    end-to-end runs above check its numbers; the default path is bit-for-bit unchanged)."""
    for p in editing.PRESETS.values():
        assert (p.sampler, p.shift, p.nfe, p.map_study) == ("ddpm", 1.0, (), ())


SWEEP = editing.Preset(
    images=2, steps=4, strengths=(0.3, 0.6), ilvr_factors=(), diversity_inputs=0, map_draws=2,
    pairs=((7, 5),), examples=1, real=40, methods=("SDEdit", "NGDM", "EF", "NGDM+EF"),
    nfe=(6, 12),
)  # fmt: skip


@pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason="Fashion-MNIST not installed")
def test_an_nfe_sweep_runs_each_method_at_the_steps_its_budget_allows(tmp_path):
    from nidiff.bench._editing_nfe import nfe_of, steps_for

    result = editing.run(device="cpu", preset=replace(SWEEP, map_study=(1,), map_reference=2))
    json.dumps(result, allow_nan=False)
    rows = [r for r in result["rows"] if r["pair"] == "pooled" and "budget" in r]
    assert {(r["method"], r["budget"]) for r in rows} == {
        (m, b) for m in SWEEP.methods for b in SWEEP.nfe
    }
    for r in rows:
        steps = steps_for(r["method"], r["budget"], g=2, map_draws=2)
        assert r["steps"] == steps and r["setting"] == f"s = {r['param']:g} · NFE {r['budget']}"
        assert r["nfe_per_image"] == nfe_of(r["method"], steps, g=2, map_draws=2)
        assert r["nfe_per_image"] <= r["budget"] or steps == 1
        # every budget starts at the same time: floor(s T)
        assert r["t_start"] == float(int(r["param"] * 1000))
    study = {r["n"]: r for r in result["map_quality"] if r["pair"] == "pooled"}
    assert set(study) == {1, 2} and study[1]["nfe"] == 2 and -1 <= study[1]["corr"] <= 1
    text = editing.markdown(result)
    assert "NFE sweep 6/12" in text and "**Weighting map with fewer draws**" in text
    names = [p.name for p in editing.plot(result, tmp_path)]
    assert names == ["editing-tradeoff.png", "editing-examples.png", "editing-nfe.png"]
    assert (tmp_path / "editing-nfe.png").read_bytes()[:8] == PNG
    assert "EF · NFE 6" in result["examples"]["pairs"]["Sneaker → Sandal"]["edits"]


@pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason="Fashion-MNIST not installed")
def test_runs_of_different_settings_combine_and_compare_at_matched_accuracy(tmp_path):
    from nidiff.bench._editing_merge import merge

    few = replace(SWEEP, methods=("EF", "NGDM+EF"), nfe=(6,), per_image=True)
    sde = replace(few, sampler="dpm++2m-sde", methods=("EF",), per_image=False)
    runs = [
        editing.run(device="cpu", preset=few),
        editing.run(device="cpu", preset=sde),
        editing.run(device="cpu", preset=replace(few, nfe=(), steps=8)),  # the reference
    ]
    for r in runs[0]["rows"]:  # per-image values where asked: pooled edits, means as the row's
        assert ("per_image" in r) == (r["pair"] == "pooled" and r["method"] != "target (train)")
        for k, v in r.get("per_image", {}).items():
            assert len(v) == 2 and sum(v) / 2 == pytest.approx(r[k], rel=1e-5)
    assert not any("per_image" in r for r in runs[1]["rows"])
    combined = merge(runs, editing.REFERENCES)
    labels = {(r["method"], r["setting"]) for r in combined["rows"] if r["pair"] == "pooled"}
    assert ("EF", "s = 0.3 · NFE 6 · ddpm") in labels
    assert ("EF", "s = 0.3 · NFE 6 · dpm++2m-sde") in labels
    assert ("EF", "s = 0.3 · 8 steps · ddpm") in labels  # steps differ: named where they apply
    assert ("NGDM+EF", "s = 0.6 · NFE 6 · ddpm") in labels
    assert sum(r["method"] == "source" for r in combined["rows"]) == 2  # once: pair + pooled
    assert len(combined["runs"]) == 3 and combined["seconds"] == sum(r["seconds"] for r in runs)
    goal = {(g["method"], g["variant"]): g for g in editing.goal_rows(combined)}
    assert set(goal) == {("EF", "ddpm"), ("EF", "dpm++2m-sde"), ("NGDM+EF", "ddpm")}
    assert goal[("EF", "ddpm")]["reference"] == "8 steps · ddpm"
    assert goal[("EF", "ddpm")]["nfe"] == 6 and goal[("EF", "ddpm")]["met"] in (True, False, None)
    boot = goal[("EF", "ddpm")]["interval"]  # both curves kept per-image values
    assert boot["draws"] == 1000 and len(boot["points"]) == 2 and 0 <= boot["met"] <= 1
    assert goal[("EF", "dpm++2m-sde")]["interval"] is None
    text = editing.markdown(combined)
    assert "**Few evaluations vs the steps grid at matched target accuracy**" in text
    assert "editing-nfe.png" in [p.name for p in editing.plot(combined, tmp_path)]
    with pytest.raises(ValueError, match="both measure EF"):
        merge([runs[0], runs[1], {**runs[1], "config": {**runs[1]["config"], "methods": ["X"]}}],
              editing.REFERENCES)  # fmt: skip
    with pytest.raises(ValueError, match="more than its seed"):
        merge([runs[0], {**runs[1], "config": {**runs[1]["config"], "seed": 5}}], ("source",))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"sampler": "dpm++2m"}, "deterministic: EF"),
        ({"sampler": "nope"}, "choose among"),
        ({"shift": 0.0}, "finite number > 0"),
        ({"nfe": (0, 10)}, "integer >= 1"),
        ({"methods": ()}, "choose among"),
    ],
)
def test_bad_sweep_settings_are_refused_before_any_work(change, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        editing.run(device="cpu", preset=replace(SWEEP, **change), root=tmp_path / "missing")
