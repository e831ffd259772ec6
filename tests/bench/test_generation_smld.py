"""``nidiff bench generation`` with an NI-SMLD model (``--set smld=DIR``): its annealed-Langevin
row next to the bundled NI-DDPM (GFF) model's ancestral row at the same steps."""

from __future__ import annotations

import json

import pytest
from cli_calls import ok

from nidiff.bench import generation
from nidiff.data.fashion_mnist import DEFAULT_DIR

pytest.importorskip("accelerate")
pytestmark = pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason="Fashion-MNIST not installed")


@pytest.fixture(scope="module")
def smld_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("smld") / "run"
    ok("train", out, "--noise", "gff", "--process", "smld", "--channels", "8,16", "--steps", "2",
       "--batch-size", "4", "--warmup", "1", "--quiet")  # fmt: skip
    return out / "model"


def test_the_smld_row_sits_next_to_the_ddpm_one(smld_model):
    tiny = generation.Preset(samples=10, steps=(2,), ddim=False, guided_steps=None, real=40,
                             smld=str(smld_model), smld_steps=(3,))  # fmt: skip
    result = generation.run(device="cpu", preset=tiny, models=("fashion-gff",))
    json.dumps(result)
    cells = [(r["model"], r["sampler"], r["steps"]) for r in result["rows"]]
    assert cells == [
        ("fashion-gff", "NI-DDPM η = 1", 2),
        ("fashion-gff", "NI-DDPM η = 1", 3),  # the peer at the Langevin step count
        ("smld-gff", "NI-SMLD Langevin", 3),
    ]
    assert result["smld_steps"] == [3] and all(r["fid"] >= 0 for r in result["rows"])
    (line,) = [x for x in generation.markdown(result).splitlines() if x.startswith("| SMLD GFF")]
    assert line.startswith("| SMLD GFF | NI-SMLD Langevin | ") and line.endswith(" | – |")


def test_a_ddpm_model_is_not_taken_for_an_smld_one(tmp_path):
    from nidiff.bundled import model_dir

    tiny = generation.Preset(samples=10, steps=(2,), ddim=False, guided_steps=None, real=40,
                             smld=str(model_dir("fashion-gff")))  # fmt: skip
    with pytest.raises(ValueError, match="not an NI-SMLD model"):
        generation.run(device="cpu", preset=tiny, models=())
