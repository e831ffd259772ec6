import json

import pytest
import torch

from nidiff.bench import edge
from nidiff.bench._bands import frequency_bands, half_band, lowpass_versions
from nidiff.bench._strokes import kmeans_quantise, stroke_painting
from nidiff.data.fashion_mnist import DEFAULT_DIR
from nidiff.schedule import DiscreteSchedule


def _images(n=3, seed=0):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ---------------------------------------------------------------- bands
def test_bands_sum_back_to_the_image_and_stay_in_range():
    x = _images()
    bands = frequency_bands(x, (1.0, 2.0, 4.0))
    assert len(bands) == 4
    torch.testing.assert_close(sum(bands), x, atol=1e-6, rtol=0)
    for b in bands[:-1]:
        assert float(half_band(b).abs().max()) <= 1.0
    torch.testing.assert_close(bands[-1], lowpass_versions(x, (4.0,))[0])


def test_lowpass_of_a_constant_is_the_constant_and_stays_in_range():
    const = torch.full((2, 1, 28, 28), 0.3)
    for lp in lowpass_versions(const, (0.5, 1.0, 4.0)):
        torch.testing.assert_close(lp, const)
    for lp in lowpass_versions(_images(), (1.0, 3.0)):
        assert float(lp.abs().max()) <= 1.0


def test_checkerboard_energy_is_in_the_finest_band_and_smooth_energy_in_the_coarsest():
    i = torch.arange(28)
    checker = ((i[:, None] + i[None, :]) % 2 * 2 - 1).float()[None, None]
    energy = torch.stack([(b**2).sum() for b in frequency_bands(checker, (1.0, 2.0, 4.0))])
    assert float(energy[0] / energy.sum()) > 0.99
    ramp = torch.linspace(-1, 1, 28)[None, None, None, :].expand(1, 1, 28, 28)
    energy = torch.stack([(b**2).sum() for b in frequency_bands(ramp, (1.0, 2.0, 4.0))])
    assert float(energy[-1] / energy.sum()) > 0.95


def test_band_sigmas_are_validated():
    with pytest.raises(ValueError, match="strictly increasing"):
        frequency_bands(_images(1), (2.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        lowpass_versions(_images(1), ())


# ---------------------------------------------------------------- strokes
@pytest.mark.parametrize("blur", [0.0, 1.0])
def test_strokes_have_at_most_k_levels_and_are_deterministic(blur):
    x = _images(4)
    a = stroke_painting(x, 3, blur=blur, generator=torch.Generator().manual_seed(5))
    b = stroke_painting(x, 3, blur=blur, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == x.shape and a.dtype == x.dtype
    assert all(len(torch.unique(img)) <= 3 for img in a)
    assert all(len(torch.unique(img)) == 3 for img in a)  # random images fill every cluster


def test_strokes_leave_images_with_few_levels_unchanged():
    const = torch.full((2, 1, 28, 28), -0.25)
    torch.testing.assert_close(stroke_painting(const, 4, blur=1.0), const, atol=0, rtol=0)
    two = torch.full((1, 1, 28, 28), -1.0)
    two[..., 8:20, 5:15] = 0.5
    assert torch.equal(kmeans_quantise(two, 2, generator=torch.Generator().manual_seed(1)), two)
    assert torch.equal(kmeans_quantise(two, 4, generator=torch.Generator().manual_seed(1)), two)


def test_kmeans_centres_are_cluster_means():
    x = torch.tensor([0.0, 0.1, 0.2, 0.9, 1.0]).reshape(1, 1, 1, 5)
    out = kmeans_quantise(x, 2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.flatten(), torch.tensor([0.1, 0.1, 0.1, 0.95, 0.95]))


# ---------------------------------------------------------------- SDEdit grid
def test_hijack_grid_starts_at_the_hijack_time():
    s = DiscreteSchedule.linear(1000)
    g = edge.hijack_grid(s, 0.55, 10)
    assert g.t.tolist() == [550.0, 458.0, 367.0, 275.0, 183.0, 92.0]
    assert float(g.t_prev[-1]) == 0.0
    assert len(edge.hijack_grid(s, 0.4, 100)) == 40
    with pytest.raises(ValueError, match="hijack"):
        edge.hijack_grid(s, 0.0, 10)


# ---------------------------------------------------------------- report
def _fake_result():
    dist = {"fid": 12.345, "kid": 0.123, "kid_std": 0.045}
    faith = {"psnr_blur": 20.5, "psnr_blur_sem": 0.25, "ssim_blur": 0.75, "ssim_blur_sem": 0.01}

    def q(model, sampler, steps, fid):
        return {"model": model, "sampler": sampler, "steps": steps, "n": 10, **dist} | {
            "fid": fid,
            "precision": 0.5,
            "recall": 0.25,
            "accuracy": 0.9,
            "seconds": 1.0,
        }

    def band(kind, lo, hi, floor):
        models = {"fashion-isotropic": dist, "fashion-edge": dist | {"fid": 3.0}}
        return {"kind": kind, "sigma_lo": lo, "sigma_hi": hi, "floor": floor, "models": models}

    def ed(model, h, fid):
        return {"hijack": h, "model": model, "t_start": 1000 * h, "steps": 6, **dist, **faith} | {
            "fid": fid,
            "accuracy": 0.8,
            "psnr_original": 15.25,
            "seconds": 2.0,
        }

    none = {"psnr_blur": None, "psnr_blur_sem": None, "ssim_blur": None, "ssim_blur_sem": None}
    return {
        "preset": "quick",
        "config": {"samples": 10, "edits": 20, "seed": 0, "clusters": 4, "stroke_blur": 1.0},
        "hardware": "CPU (test)",
        "threads": 1,
        "real": 100,
        "faith_sigma": 1.5,
        "classifier_test_accuracy": 0.93,
        "quality": [
            q("fashion-isotropic", "DDPM η = 1", 10, 20.0),
            q("fashion-edge", "EP posterior", 10, 15.0),
        ],
        "bands": {
            "steps": 10,
            "rows": [
                band("lowpass", 0.0, 0.0, {"fid": 1.0, "kid": 0.0, "kid_std": 0.01}),
                band("lowpass", 2.0, 2.0, None),
                band("band", 1.0, 2.0, {"fid": 1.5, "kid": -0.005, "kid_std": 0.02}),
            ],
        },
        "sdedit": {
            "inputs": {
                "originals": {**dist, **faith, "accuracy": 0.95, "psnr_original": None},
                "paintings": {**dist, **none, "accuracy": 0.6, "psnr_original": 18.0},
            },
            "rows": [ed("fashion-isotropic", 0.55, 30.0), ed("fashion-edge", 0.55, 25.0)],
        },
        "seconds": 12.0,
    }


def test_markdown_renders_fake_result():
    text = edge.markdown(_fake_result())
    k = "0.123 ± 0.045"
    assert f"| isotropic | DDPM η = 1 | 10 | 20.00 | {k} | 0.50 | 0.25 | 0.900 |" in text
    assert f"| edge | EP posterior | 10 | 15.00 | {k} | 0.50 | 0.25 | 0.900 |" in text
    assert (
        "| version | floor FID | isotropic FID | edge FID | floor KID | isotropic KID "
        "| edge KID |" in text
    )
    assert f"| original (σ = 0) | 1.00 | 12.35 | 3.00 | 0.000 ± 0.010 | {k} | {k} |" in text
    assert f"| low-pass σ = 2 | – | 12.35 | 3.00 | – | {k} | {k} |" in text
    assert f"| band-pass σ ∈ [1, 2) | 1.50 | 12.35 | 3.00 | -0.005 ± 0.020 | {k} | {k} |" in text
    assert (
        f"| originals (no edit) | – | – | 12.35 | {k} | 0.950 | 20.50 ± 0.25 | 0.750 ± 0.010 | – |"
        in text
    )
    assert f"| paintings (no edit) | – | – | 12.35 | {k} | 0.600 | – | – | 18.00 |" in text
    assert (
        f"| edge | 0.55·T (t = 550) | 6 | 25.00 | {k} | 0.800 | 20.50 ± 0.25 | 0.750 ± 0.010 "
        "| 15.25 |" in text
    )
    assert "samples at 10 steps" in text and "0.930" in text


def test_plot_writes_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    paths = edge.plot(_fake_result(), tmp_path)
    assert [p.name for p in paths] == ["edge_bands.png", "edge_sdedit.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        edge.run(root=tmp_path / "nowhere")


@pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason="Fashion-MNIST not installed")
def test_run_tiny_end_to_end():
    tiny = edge.Preset(samples=10, steps=(2,), edits=10, edit_steps=4, real=40)
    result = edge.run(device="cpu", preset=tiny)
    json.dumps(result)  # JSON-safe
    assert result["preset"] == "custom" and result["real"] == 40
    assert [(r["model"], r["steps"]) for r in result["quality"]] == [
        ("fashion-isotropic", 2),
        ("fashion-edge", 2),
    ]
    rows = result["bands"]["rows"]
    assert [(r["kind"], r["sigma_lo"]) for r in rows] == [
        ("lowpass", 0.0),
        ("lowpass", 1.0),
        ("lowpass", 2.0),
        ("lowpass", 4.0),
        ("band", 0.0),
        ("band", 1.0),
        ("band", 2.0),
    ]
    assert rows[0]["models"]["fashion-edge"]["fid"] == result["quality"][1]["fid"]
    assert all(r["floor"] is not None for r in rows)  # 40 real: 10 vs 30
    edits = result["sdedit"]["rows"]
    assert [(r["hijack"], r["t_start"], r["steps"]) for r in edits] == [
        (0.55, 550.0, 3),
        (0.55, 550.0, 3),
        (0.4, 400.0, 2),
        (0.4, 400.0, 2),
    ]
    for r in edits:
        assert 0 <= r["accuracy"] <= 1 and -1 <= r["ssim_blur"] <= 1 and r["fid"] >= 0
        assert r["psnr_blur_sem"] > 0 and r["psnr_original"] is not None
    inputs = result["sdedit"]["inputs"]
    assert inputs["originals"]["psnr_original"] is None  # an image vs itself
    assert inputs["paintings"]["psnr_blur"] is None and inputs["paintings"]["ssim_blur"] == 1.0
    text = edge.markdown(result)
    assert "| edge | EP posterior | 2 |" in text and "| isotropic | 0.4·T (t = 400) | 2 |" in text
