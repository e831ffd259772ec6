import json

import pytest

from nidiff.bench import generation
from nidiff.data.fashion_mnist import DEFAULT_DIR


def _fake_result():
    def row(model, row, sampler, steps, fid, w=1.0):
        return {
            "model": model,
            "row": row,
            "sampler": sampler,
            "steps": steps,
            "guidance": w,
            "n": 10,
            "fid": fid,
            "precision": 0.5,
            "recall": 0.25,
            "accuracy": 0.9,
            "seconds": 1.0,
        }

    return {
        "preset": "quick",
        "device": "cpu",
        "hardware": "CPU (test)",
        "torch": "x",
        "threads": 1,
        "samples": 10,
        "steps": [20, 10],
        "guided_steps": 50,
        "guidance": 3.0,
        "real": 100,
        "k": 3,
        "classifier_test_accuracy": 0.93,
        "rows": [
            row("fashion-isotropic", "ancestral", "DDPM η = 1", 20, 12.345),
            row("fashion-isotropic", "ancestral", "DDPM η = 1", 10, 20.0),
            row("fashion-isotropic", "guided", "DDIM η = 0, clip", 50, 30.0, w=3.0),
            row("fashion-edge", "ancestral", "EP posterior", 20, 15.0),
        ],
        "seconds": 12.0,
    }


def test_markdown_renders_fake_result():
    text = generation.markdown(_fake_result())
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| model"))
    assert header == "| model | sampler | 50 steps | 20 steps | 10 steps |"
    table = [line for line in lines if line.startswith("| ") and "steps" not in line]
    assert len(table) == 3  # isotropic ancestral, isotropic guided, edge ancestral
    assert "| isotropic | DDPM η = 1 | – | 12.35 / 0.50 / 0.25 / 0.900 | 20.00 /" in text
    assert "| isotropic | DDIM η = 0, clip, w = 3 | 30.00 / 0.50 / 0.25 / 0.900 | – | – |" in text
    assert "| edge | EP posterior | – | 15.00 /" in text
    assert "0.930" in text


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        generation.run(root=tmp_path / "nowhere")


@pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason="Fashion-MNIST not installed")
def test_run_tiny_end_to_end():
    tiny = generation.Preset(samples=10, steps=(2,), ddim=True, guided_steps=2, real=40)
    result = generation.run(device="cpu", preset=tiny, models=("fashion-isotropic",))
    json.dumps(result)  # JSON-safe
    assert result["preset"] == "custom" and result["real"] == 40
    assert [(r["row"], r["steps"]) for r in result["rows"]] == [
        ("ancestral", 2),
        ("ddim", 2),
        ("guided", 2),
    ]
    for r in result["rows"]:
        assert r["n"] == 10 and r["fid"] >= 0
        assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and 0 <= r["accuracy"] <= 1
    assert result["seconds"] > 0
    assert "| isotropic | DDPM η = 1 |" in generation.markdown(result)


def _check_png(path):
    """A readable PNG of at least 300 × 200 pixels that is not one flat colour."""
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG" and im.width >= 300 and im.height >= 200, (im.format, im.size)
        lo, hi = im.convert("L").getextrema()
        assert hi - lo > 100, (lo, hi)


def test_plot_writes_the_fid_and_precision_recall_figure(tmp_path):
    pytest.importorskip("matplotlib")
    paths = generation.plot(_fake_result(), tmp_path)
    assert paths == [tmp_path / "generation.png"]
    _check_png(paths[0])
    assert [p.name for p in tmp_path.iterdir()] == ["generation.png"]


def test_cli_out_writes_json_table_and_plot(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from cli_calls import run

    def invoke(*args):
        return run("bench", "generation", *args)

    monkeypatch.setattr(generation, "run", lambda quick, device: _fake_result())
    out = tmp_path / "out"
    res = invoke("--quick", "--device", "cpu", "--out", out)
    assert res.exit_code == 0, (res.output, res.exception)
    names = ["generation.json", "generation.md", "generation.png"]
    assert sorted(p.name for p in out.iterdir()) == names
    assert json.loads((out / "generation.json").read_text()) == _fake_result()
    assert (out / "generation.md").read_text() == generation.markdown(_fake_result()) + "\n"
    _check_png(out / "generation.png")
    res = invoke("--out", out)
    assert res.exit_code == 2 and "--overwrite" in res.stderr, res.output
    assert invoke("--out", out, "--overwrite").exit_code == 0

    def missing(quick, device):
        raise FileNotFoundError("Fashion-MNIST is not installed")

    monkeypatch.setattr(generation, "run", missing)
    res = invoke("--out", tmp_path / "none")
    assert res.exit_code == 2 and "not installed" in res.stderr, res.output
    assert not (tmp_path / "none").exists()
