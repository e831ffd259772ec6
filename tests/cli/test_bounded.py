"""Bounded memory and validated model files (issue 18), through the command line: a hostile
``config.json`` (a huge network, a negative channel count, an enormous schedule) is exit 2 before
anything is built, and ``sample`` runs any ``--num`` in chunks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_calls import bad, ok, record
from PIL import Image

from nidiff.bundled import load_bundled, model_dir


def _model_with(tmp_path: Path, edit) -> Path:
    d = tmp_path / "model"
    shutil.copytree(model_dir("default"), d)
    cfg = json.loads((d / "config.json").read_text())
    edit(cfg)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda c: c["model"].update(block_out_channels=[65536, 65536, 65536]),
         "parameters"),
        (lambda c: c["model"].update(in_channels=-3), "in_channels=-3 must be an integer in"),
        (lambda c: c["model"].update(block_out_channels=[32, 30]), "norm_num_groups"),
        (lambda c: c["model"].update(layers_per_block=1e9), "layers_per_block=1000000000.0 must"),
        (lambda c: c["process"]["schedule"].update(T=10**12), "exceeds the 1,000,000"),
        (lambda c: c["model"].update(dropout=float("nan")), "must be finite"),
    ],
)  # fmt: skip
def test_hostile_configs_are_refused_before_anything_is_built(tmp_path, edit, match):
    d = _model_with(tmp_path, edit)
    out = tmp_path / "never.png"
    bad("sample", "--model", d, "--num", "1", "--steps", "1", "--out", out, match=match, out=out)


def test_the_parameter_bound_is_a_flag(tmp_path):
    out = tmp_path / "x.png"
    bad("--max-params", "1000", "sample", "--num", "1", "--steps", "1", "--out", out,
        match="above the bound of 1,000", out=out)  # fmt: skip
    ok("--max-params", "1e7", "sample", "--num", "1", "--steps", "1", "--out", out)
    # for the command only: an in-process caller (and the processes it starts later) keeps its own
    assert "NIDIFF_MAX_PARAMS" not in os.environ


def test_chunked_sampling_is_the_unchunked_one_when_it_fits(tmp_path):
    """With ``--num`` within one chunk, the samples are those of one batched run (same draws)."""
    from nidiff.imageio import save_grid
    from nidiff.noise import white_noise
    from nidiff.samplers import sample

    out = tmp_path / "grid.png"
    ok("sample", "--num", "6", "--class", "bag", "--steps", "4", "--seed", "3", "--out", out)
    assert record(out)["batch_size"] >= 6
    m = load_bundled()
    g = torch.Generator().manual_seed(3)
    x_T = m.process.prior(white_noise((6, 1, 28, 28), generator=g))
    from nidiff.models.contract import with_guidance
    from nidiff.schedule import leading_grid

    net = with_guidance(m.denoiser, 3.0, m.denoiser.null_cond())
    with torch.no_grad():
        x = sample(net, x_T, leading_grid(m.schedule, 4), m.process.rule(1.0),
                   cond=torch.full((6,), 8), noise=g).x0  # fmt: skip
    save_grid(x.clamp(-1, 1), tmp_path / "ref.png")
    a, b = (np.asarray(Image.open(p)) for p in (out, tmp_path / "ref.png"))
    assert np.array_equal(a, b)
    # more samples than a chunk: still one grid, in chunks of the given size
    small = tmp_path / "chunks.png"
    ok("sample", "--num", "7", "--batch-size", "3", "--steps", "2", "--out", small)
    assert record(small)["batch_size"] == 3 and np.asarray(Image.open(small)).shape == (92, 92)


def test_a_grid_too_large_is_refused_up_front(tmp_path):
    out = tmp_path / "huge.png"
    bad("sample", "--num", "400000", "--steps", "1", "--out", out, match="above the", out=out)


def _peak_gib(tmp_path: Path, num: int, batch: int) -> float:
    """Peak resident memory of ``nidiff sample --num NUM --steps 1`` in a fresh process."""
    out = tmp_path / f"many-{num}.png"
    code = (
        "import resource, sys; from nidiff.cli import main; "
        f"sys.argv = ['nidiff', 'sample', '--num', '{num}', '--steps', '1', '--guidance', '1', "
        f"'--batch-size', '{batch}', '--out', '{out}']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and out.is_file(), r.stderr[-2000:]
    return int(r.stdout.split()[-1]) / 2**20  # ru_maxrss is in KiB


def test_sampling_memory_does_not_grow_with_num(tmp_path):
    """``sample`` works in chunks: four times the samples cost the same peak memory, so any
    ``--num`` runs in bounded memory (the grid of uint8 tiles is the only thing that grows)."""
    small, large = _peak_gib(tmp_path, 300, 100), _peak_gib(tmp_path, 1200, 100)
    print(f"sample --steps 1 --batch-size 100: peak {small:.2f} GiB at 300, {large:.2f} at 1,200")
    assert large < small + 0.25 and large < 3.0  # one 1,200-sample batch would need ~2 GiB
