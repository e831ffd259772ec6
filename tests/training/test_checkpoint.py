"""Model directories: round trip, bad input with clear errors, atomic writes, bundled models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")

from nidiff.bundled import MODELS, load_bundled, model_dir
from nidiff.models.diffusers_unet import unet_from_config
from nidiff.noise import EdgePreservingNoise, GFFNoise, IsotropicNoise
from nidiff.training import checkpoint
from nidiff.training.checkpoint import load_model, read_config, save_model

# The tiny UNet every training test uses (one file, so the tests and the DDP worker agree).
TINY = json.loads(Path(__file__).with_name("tiny_unet.json").read_text())
GFF = {"schedule": {"kind": "linear", "T": 100}, "noise": {"kind": "gff", "power": 1.0}}


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return unet_from_config(TINY).state_dict()


def _save(directory: Path, step: int = 7, process=GFF, seed: int = 0) -> dict[str, torch.Tensor]:
    state = _state(seed)
    save_model(
        directory, state, {"model": TINY, "process": process, "num_classes": 10, "step": step}
    )
    return state


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_round_trip(tmp_path):
    state = _save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    m = load_model(tmp_path / "m", expect_kind="gff")
    for k, v in m.network.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert m.spec.kind == "gff" and isinstance(m.noise, GFFNoise) and m.schedule.T == 100
    assert m.num_classes == 10 and m.null_class == 10 and m.config["step"] == 7
    assert not m.network.training and not any(p.requires_grad for p in m.network.parameters())
    x = torch.randn(2, 1, 8, 8)
    out = m.denoiser(x, torch.tensor([3.0, 90.0]), torch.tensor([1, 10]))
    assert out.shape == x.shape
    assert read_config(tmp_path / "m")["format"] == checkpoint.FORMAT


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):
        read_config(tmp_path / "nope")


def _corrupt_config(text: str | bytes):
    def corrupt(d: Path) -> None:
        data = text if isinstance(text, bytes) else text.encode()
        (d / "config.json").write_bytes(data)

    return corrupt


def _edit_config(**changes):
    def edit(d: Path) -> None:
        config = json.loads((d / "config.json").read_text())
        config.update(changes)
        (d / "config.json").write_text(json.dumps(config))

    return edit


def _truncate_weights(d: Path) -> None:
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])


def _garbage_weights(d: Path) -> None:
    (d / "model.safetensors").write_bytes(b"\x00" * 64)


BAD = {
    "config truncated": (
        _corrupt_config('{"format": "nidiff-model", "mod'),
        "corrupt or truncated",
    ),
    "config not utf-8": (_corrupt_config(b"\xff\xfe{}"), "corrupt"),
    "config empty": (_corrupt_config(""), "corrupt or truncated"),
    "config is a list": (_corrupt_config("[1, 2]"), "not a nidiff model config"),
    "other format": (_edit_config(format="diffusers-unet"), "not a nidiff model config"),
    "newer version": (_edit_config(version=99), "version 99"),
    "bad version": (_edit_config(version="one"), "non-integer version"),
    "no process": (lambda d: _drop(d, "process"), "lacks the 'process'"),
    "no model": (lambda d: _drop(d, "model"), "lacks the 'model'"),
    "model not a dict": (_edit_config(model="unet"), "UNet config"),
    "unknown noise": (
        _edit_config(process={"schedule": {"kind": "linear"}, "noise": {"kind": "blue"}}),
        "unknown noise kind 'blue'",
    ),
    "unbuildable model": (
        _edit_config(model={**TINY, "block_out_channels": [12, 32]}),
        "not a UNet config",
    ),
    "weights of another net": (
        _edit_config(model={**TINY, "block_out_channels": [8, 16]}),
        "does not match its config",
    ),
    "weights of another class count": (
        _edit_config(model={**TINY, "num_class_embeds": 4}),
        "does not match its config",
    ),
    "weights truncated": (_truncate_weights, "corrupt or truncated"),
    "weights garbage": (_garbage_weights, "corrupt or truncated"),
    "weights missing": (lambda d: (d / "model.safetensors").unlink(), "lacks model.safetensors"),
    "config missing": (lambda d: (d / "config.json").unlink(), "no config.json"),
    "mixed saves": (_edit_config(step=8), "mixes files of two saves"),
}


def _drop(d: Path, key: str) -> None:
    config = json.loads((d / "config.json").read_text())
    del config[key]
    (d / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("case", list(BAD))
def test_bad_directories_raise_clear_value_errors_and_change_nothing(tmp_path, case):
    break_it, match = BAD[case]
    d = tmp_path / "m"
    _save(d)
    break_it(d)
    before = _snapshot(d)
    with pytest.raises(ValueError, match=match):
        load_model(d)
    assert _snapshot(d) == before  # a failed load writes nothing


def test_expect_kind_refuses_another_process(tmp_path):
    _save(tmp_path / "m")
    with pytest.raises(ValueError, match="trained with 'gff' noise, not 'isotropic'"):
        load_model(tmp_path / "m", expect_kind="isotropic")
    with pytest.raises(ValueError, match="not 'edge'"):
        load_model(tmp_path / "m", expect_kind="edge")


def test_mixed_saves_are_caught_by_the_step_metadata(tmp_path):
    """Weights from one save next to the config of another: refused, not silently mixed."""
    _save(tmp_path / "a", step=5, seed=0)
    _save(tmp_path / "b", step=6, seed=1)
    (tmp_path / "a" / "model.safetensors").write_bytes(
        (tmp_path / "b" / "model.safetensors").read_bytes()
    )
    with pytest.raises(ValueError, match=r"step 6, config\.json from step 5"):
        load_model(tmp_path / "a")


@pytest.mark.parametrize(
    ("state_edit", "config_edit", "match"),
    [
        (lambda s: {**s, "bogus": 3.0}, {}, "'bogus' is a float"),
        (lambda s: {**s, "bogus": None}, {}, "must be tensors"),
        (lambda s: s, {"extra": torch.zeros(2)}, "not JSON-serialisable"),
        (lambda s: s, {"process": {"schedule": {"kind": "linear"}, "noise": {"kind": "x"}}}, "x"),
        (lambda s: s, {"model": None}, "model"),
    ],
)
def test_save_model_validates_before_writing_anything(tmp_path, state_edit, config_edit, match):
    config = {"model": TINY, "process": GFF, "step": 3, **config_edit}
    with pytest.raises(ValueError, match=match):
        save_model(tmp_path / "new", state_edit(_state()), config)
    assert not (tmp_path / "new").exists()  # not even an empty directory
    _save(tmp_path / "old", step=1)
    before = _snapshot(tmp_path / "old")
    with pytest.raises(ValueError, match=match):
        save_model(tmp_path / "old", state_edit(_state(seed=1)), config)
    assert _snapshot(tmp_path / "old") == before


def test_interrupted_save_leaves_the_old_files_and_no_temporaries(tmp_path, monkeypatch):
    d = tmp_path / "m"
    _save(d, step=1)
    before = _snapshot(d)
    real_save_file = checkpoint.save_file

    def killed(tensors, filename, metadata=None):
        real_save_file(dict(list(tensors.items())[:3]), filename, metadata=metadata)
        Path(filename).write_bytes(Path(filename).read_bytes()[:100])  # half-written
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_file", killed)
    with pytest.raises(KeyboardInterrupt):
        _save(d, step=2, seed=1)
    assert _snapshot(d) == before  # no .tmp left, old files intact
    load_model(d)


@pytest.mark.parametrize("name", MODELS)
def test_bundled_models_load_and_report_their_process(name):
    m = load_bundled(name)
    kind = name.removeprefix("fashion-")
    assert m.spec.kind == kind
    expected = {"isotropic": IsotropicNoise, "gff": GFFNoise, "edge": EdgePreservingNoise}[kind]
    assert isinstance(m.noise, expected)
    assert m.num_classes == 10 and len(m.class_names) == 10 and m.null_class == 10
    load_model(model_dir(name), expect_kind=kind)
    with torch.no_grad():
        x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        out = m.denoiser(x, torch.tensor([10.0, 900.0]), torch.tensor([3, 10]))
    assert out.shape == x.shape and bool(out.isfinite().all())


def test_bundled_gff_refuses_isotropic_sampling():
    with pytest.raises(ValueError, match="trained with 'gff' noise, not 'isotropic'"):
        load_model(model_dir("fashion-gff"), expect_kind="isotropic")
