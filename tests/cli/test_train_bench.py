"""``nidiff train`` (a few steps of a tiny UNet on the digits and on a folder) and ``nidiff bench``
(the command's wiring, with the benchmark's ``run`` replaced: a real run takes minutes)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("diffusers")
pytest.importorskip("accelerate")
pytest.importorskip("sklearn")

from cli_calls import bad, ok

from nidiff.cli.bench import BENCHMARKS
from nidiff.training.checkpoint import load_model

TINY = ["--channels", "8,16", "--batch-size", "8", "--warmup", "1", "--checkpoint-every", "3"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "digits"
    ok("train", out, "--noise", "edge", "--data", "digits", "--steps", "5", *TINY)
    return out


def test_train_digits_writes_model_and_record(trained):
    model = load_model(trained / "model", expect_kind="edge")
    assert model.config["step"] == 5 and model.num_classes == 10
    assert model.config["data"] == {"name": "digits", "size": 8}
    assert model.config["model"]["block_out_channels"] == [8, 16]
    assert (trained / "model" / "model.safetensors").stat().st_size > 0
    record = json.loads((trained / "train.json").read_text())
    assert record["command"] == "train" and record["step"] == 5
    assert record["params"]["noise"] == "edge" and record["resumed_from"] is None
    assert record["process"]["noise"]["kind"] == "edge"


def test_existing_model_needs_resume_then_resume_continues(trained):
    bad("train", trained, "--noise", "edge", "--data", "digits", *TINY, match="--resume")
    err = bad("train", trained, "--noise", "edge", "--data", "digits", *TINY, match="exists").stderr
    assert "choose another directory" in err
    ok("train", trained, "--noise", "edge", "--data", "digits", "--steps", "8", *TINY, "--resume")
    assert load_model(trained / "model").config["step"] == 8
    record = json.loads((trained / "train.json").read_text())
    assert record["step"] == 8 and record["resumed_from"] == "step-0000005"
    assert [r["step"] for r in record["history"]] == [5]
    # Another noise process cannot continue this run.
    bad("train", trained, "--noise", "gff", "--data", "digits", "--steps", "9", *TINY,
        "--resume", match="cannot resume")  # fmt: skip


def test_missing_fashion_mnist_gives_the_install_hint(tmp_path):
    err = bad(
        "train", tmp_path / "out", "--noise", "isotropic", "--data-root", tmp_path / "nowhere",
        match="does not exist",
    ).stderr  # fmt: skip
    assert "apt-get install -y dataset-fashion-mnist" in err and "--data-root" in err
    assert not (tmp_path / "out" / "model").exists()


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--data", "no-such-folder"], "neither 'fashion-mnist', 'digits' nor"),
        (["--data", "digits", "--data-root", "."], "--data fashion-mnist only"),
        (["--data", "digits", "--rgb"], "folders only"),
        (["--data", "digits", "--channels", "8,x"], "comma-separated integers"),
        (["--data", "digits", "--channels", "8,12"], "multiple of 8"),
        (["--data", "digits", "--size", "7"], "divisible by 2**1"),
    ],
)
def test_bad_train_input_is_exit_2(tmp_path, extra, match):
    bad("train", tmp_path / "out", "--noise", "gff", "--steps", "1", *extra, match=match)


def test_train_on_a_folder_is_unconditional(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "out"
    ok("train", out, "--noise", "gff", "--data", folder, "--size", "8", "--rgb", "--steps", "2",
       *TINY)  # fmt: skip
    model = load_model(out / "model", expect_kind="gff")
    assert model.num_classes == 0 and model.null_class is None
    assert model.config["model"]["in_channels"] == 3 and model.config["data"]["files"] == 3


def test_bench_help_lists_the_benchmarks():
    out = ok("bench", "--help").output
    for name in BENCHMARKS:
        assert name in out
    assert "--quick" in out and "--json" in out and "--device" in out
    bad("bench", "no-such-bench", match="no-such-bench")


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_bench_calls_run_prints_the_table_and_writes_json(tmp_path, monkeypatch, name):
    import importlib

    module = importlib.import_module(BENCHMARKS[name].module)
    calls = []

    def fake_run(**kwargs):
        calls.append(kwargs)
        return {"name": name, "value": 1.5}

    monkeypatch.setattr(module, "run", fake_run)
    monkeypatch.setattr(module, BENCHMARKS[name].table, lambda r: f"| {r['name']} | {r['value']} |")
    path = tmp_path / "result.json"
    out = ok("bench", name, "--quick", "--device", "cpu", "--json", path).output
    assert calls == [{"quick": True, "device": "cpu"}]
    assert f"| {name} | 1.5 |" in out
    assert json.loads(path.read_text()) == {"name": name, "value": 1.5}
    bad("bench", name, "--json", path, match="--overwrite")
    ok("bench", name, "--device", "cpu", "--json", path, "--overwrite")
    assert calls[-1] == {"quick": False, "device": "cpu"}
    bad("bench", name, "--device", "nonsense", match="not a torch device")


def test_bench_preset_and_set_change_the_preset_passed_to_run(tmp_path, monkeypatch):
    from nidiff.bench import editing

    calls = []

    def fake_run(*, quick, device, preset=None):
        calls.append(preset)
        return {"preset": "custom", "value": 1.0}

    monkeypatch.setattr(editing, "run", fake_run)
    monkeypatch.setattr(editing, "markdown", lambda r: "| table |")
    path = tmp_path / "r.json"
    ok("bench", "editing", "--preset", "cpu", "--set", "steps=100", "--set",
       "methods=NGDM,EF", "--json", path)  # fmt: skip
    assert calls[-1] == replace(editing.PRESETS["cpu"], steps=100, methods=("NGDM", "EF"))
    assert json.loads(path.read_text())["preset"] == "cpu, steps=100, methods=NGDM,EF"
    ok("bench", "editing", "--quick", "--set", "images=3", "--json", path, "--overwrite")
    assert calls[-1] == replace(editing.PRESETS["quick"], images=3)
    n = len(calls)
    bad("bench", "editing", "--set", "image=3", match="no such field")
    bad("bench", "editing", "--set", "steps=many", match="not an int")
    bad("bench", "editing", "--preset", "gpu", match="no preset 'gpu'")
    bad("bench", "overhead", "--preset", "quick", match="overhead has no presets")
    assert len(calls) == n  # refused before anything ran
