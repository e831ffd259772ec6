"""The training loop on scikit-learn's 8×8 digits with a tiny UNet: it learns, resumes exactly,
writes complete checkpoints only, and refuses bad input."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("accelerate")
pytest.importorskip("sklearn")

from safetensors.torch import load_file

from nidiff.data.digits import digits
from nidiff.training import trainer
from nidiff.training.checkpoint import load_model
from nidiff.training.spec import ProcessSpec
from nidiff.training.trainer import TrainConfig, latest_checkpoint, train

# The tiny UNet every training test uses (one file, so the tests and the DDP worker agree).
TINY = json.loads(Path(__file__).with_name("tiny_unet.json").read_text())
NOISES = {"isotropic": {"kind": "isotropic"}, "gff": {"kind": "gff"}, "edge": {"kind": "edge"}}


@functools.cache
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    return digits()


def _spec(kind: str) -> ProcessSpec:
    return ProcessSpec({"kind": "linear", "T": 1000}, NOISES[kind])


def _train(out: Path, cfg: TrainConfig, kind: str = "isotropic", **kw):
    images, labels = _digits()
    return train(
        out,
        images=images,
        labels=labels,
        model_config=TINY,
        spec=_spec(kind),
        cfg=cfg,
        progress=False,
        **kw,
    )


def _hidden(directory: Path) -> list[str]:
    """Leftover temporaries (atomic writes use hidden ``.name.*.tmp`` siblings)."""
    return sorted(p.name for p in directory.rglob("*") if p.name.startswith(".") or "tmp" in p.name)


STEPS, LOG = 60, 10


@pytest.mark.parametrize("kind", list(NOISES))
def test_a_short_run_lowers_the_loss(tmp_path, kind):
    cfg = TrainConfig(
        steps=STEPS,
        batch_size=32,
        lr=3e-3,
        warmup=10,
        log_every=LOG,
        checkpoint_every=1000,
        sample_every=STEPS if kind == "edge" else 0,
    )
    result = _train(tmp_path, cfg, kind)
    first, last = result.losses[0], sum(result.losses[-2:]) / 2
    print(
        f"\n{kind}: mean loss of steps 1-{LOG} {first:.4f} -> steps {STEPS - 2 * LOG + 1}-{STEPS} "
        f"{last:.4f} (ratio {last / first:.2f}, {result.seconds:.1f} s)"
    )
    assert result.step == STEPS and len(result.losses) == STEPS // LOG
    assert all(torch.isfinite(torch.tensor(result.losses)))
    assert last < 0.7 * first
    if kind != "edge":  # predicting ε̂ = 0 scores E[ε²] = 1: the net learned more than that
        assert last < 0.5
    model = load_model(result.model_dir, expect_kind=kind)  # the export names its process
    assert model.config["step"] == STEPS and model.num_classes == 10
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert log["losses"] == pytest.approx(result.losses) and log["processes"] == 1
    if kind == "edge":  # the in-training sample grid of the EP posterior
        assert (tmp_path / "samples" / f"step-{STEPS:07d}.png").stat().st_size > 0


CFG = TrainConfig(
    steps=12,
    batch_size=8,
    lr=2e-3,
    warmup=3,
    log_every=2,
    checkpoint_every=4,
    keep_checkpoints=2,
    seed=3,
)


def _weights(out: Path) -> tuple[dict, dict]:
    """(exported EMA weights, raw network weights of the last checkpoint)."""
    ema = load_file(str(out / "model" / "model.safetensors"))
    state = torch.load(latest_checkpoint(out) / "train_state.pt", weights_only=True)
    return ema, state["model"]


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs by {float((a[k] - b[k]).abs().max()):.3g}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, object]:
    """An uninterrupted run (asked to resume from an empty directory: starts fresh)."""
    out = tmp_path_factory.mktemp("reference")
    return out, _train(out, CFG, "gff", resume=True)


def test_checkpoints_are_complete_and_load(reference):
    out, result = reference
    ckpts = sorted((out / "checkpoints").iterdir())
    assert [p.name for p in ckpts] == ["step-0000008", "step-0000012"]  # keep_checkpoints=2
    assert _hidden(out) == []
    for ckpt in ckpts:
        assert sorted(p.name for p in ckpt.iterdir()) == [
            "config.json",
            "model.safetensors",
            "train_state.pt",
        ]
        step = int(ckpt.name.removeprefix("step-"))
        model = load_model(ckpt, expect_kind="gff")
        assert model.config["step"] == step and model.config["train"]["steps"] == 12
        state = torch.load(ckpt / "train_state.pt", weights_only=True)
        assert state["step"] == step and set(state) >= {"model", "ema", "optimizer", "generator"}
        for k, v in model.network.state_dict().items():  # the checkpoint's model is its EMA
            assert torch.equal(v, state["ema"][k])
    assert result.step == 12 and len(result.losses) == 6
    _assert_same(
        load_file(str(out / "model" / "model.safetensors")),
        load_file(str(ckpts[-1] / "model.safetensors")),
    )


def test_a_killed_run_resumes_to_the_same_weights(tmp_path, monkeypatch, reference):
    """Killed while writing checkpoint 8: no partial checkpoint; resuming from 4 replays 5..12
    from the saved generator, optimiser and schedule state, bit for bit."""
    real_save_model = trainer.save_model

    def killed(directory, *args, **kwargs):
        if "step-0000008" in str(directory):
            raise KeyboardInterrupt  # after train_state.pt was written into the temporary dir
        return real_save_model(directory, *args, **kwargs)

    monkeypatch.setattr(trainer, "save_model", killed)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, CFG, "gff")
    monkeypatch.setattr(trainer, "save_model", real_save_model)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-0000004"]
    assert _hidden(tmp_path) == [] and not (tmp_path / "model").exists()

    result = _train(tmp_path, CFG, "gff", resume=True)
    ref_out, ref = reference
    assert result.step == ref.step == 12
    assert result.losses == ref.losses  # the log survives the restart too
    ema, net = _weights(tmp_path)
    ref_ema, ref_net = _weights(ref_out)
    _assert_same(net, ref_net)
    _assert_same(ema, ref_ema)


def test_resume_extends_a_finished_run(tmp_path):
    """With a constant learning rate, 8 steps + 4 more on resume = 12 steps in one go."""
    cfg = TrainConfig(**{**CFG.__dict__, "lr_schedule": "constant"})
    _train(tmp_path / "once", cfg, "edge")
    _train(tmp_path / "twice", TrainConfig(**{**cfg.__dict__, "steps": 8}), "edge")
    result = _train(tmp_path / "twice", cfg, "edge", resume=True)
    assert result.step == 12
    for a, b in zip(_weights(tmp_path / "once"), _weights(tmp_path / "twice"), strict=True):
        _assert_same(a, b)
    # resuming a finished run is a no-op that re-exports the same model
    again = _train(tmp_path / "twice", cfg, "edge", resume=True)
    assert again.step == 12
    _assert_same(_weights(tmp_path / "twice")[0], _weights(tmp_path / "once")[0])


def test_resume_refuses_another_process(reference, tmp_path):
    ref_out, _ = reference
    ckpt = latest_checkpoint(ref_out)
    (tmp_path / "checkpoints").mkdir()
    import shutil

    shutil.copytree(ckpt, tmp_path / "checkpoints" / ckpt.name)
    with pytest.raises(ValueError, match=r"cannot resume .*another noise process"):
        _train(tmp_path, CFG, "isotropic", resume=True)
    images, labels = _digits()
    other = {**TINY, "block_out_channels": [8, 16], "norm_num_groups": 4}
    with pytest.raises(ValueError, match=r"cannot resume .*another network config"):
        train(
            tmp_path,
            images=images,
            labels=labels,
            model_config=other,
            spec=_spec("gff"),
            cfg=CFG,
            resume=True,
            progress=False,
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr_schedule": "linear"}, "lr_schedule"),
        ({"label_dropout": 1.0}, "label_dropout"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"mixed_precision": "fp8"}, "mixed_precision"),
        ({"log_every": 0}, "log_every"),
        ({"checkpoint_every": 0}, "checkpoint_every"),
        ({"keep_checkpoints": 0}, "keep_checkpoints"),
        ({"warmup": -1}, "warmup"),
        ({"sample_every": -5}, "sample_every"),
        ({"lr": 0.0}, "lr"),
        ({"grad_clip": -1.0}, "grad_clip"),
    ],
)
def test_train_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_lr_schedule():
    cfg = TrainConfig(steps=110, warmup=10, lr_schedule="cosine")
    assert cfg.lr_factor(0) == pytest.approx(0.1) and cfg.lr_factor(9) == pytest.approx(1.0)
    assert cfg.lr_factor(10) == pytest.approx(1.0) and cfg.lr_factor(60) == pytest.approx(0.5)
    assert cfg.lr_factor(110) == pytest.approx(0.0, abs=1e-12)
    const = TrainConfig(steps=110, warmup=10, lr_schedule="constant")
    assert const.lr_factor(5) == pytest.approx(0.6) and const.lr_factor(100) == 1.0


def test_train_rejects_bad_data(tmp_path):
    images, labels = _digits()
    cases = [
        (images[:, 0], labels, "images must be"),
        (images[:0], labels[:0], "images must be"),
        (images, labels[:-1], "labels must be integers of shape"),
        (images, labels.float(), "labels must be integers"),
        (images, labels - 1, "labels must be >= 0"),
        (images, labels + 5, "num_class_embeds"),
    ]
    for x, y, match in cases:
        with pytest.raises(ValueError, match=match):
            train(
                tmp_path,
                images=x,
                labels=y,
                model_config=TINY,
                spec=_spec("isotropic"),
                cfg=CFG,
                progress=False,
            )
    assert not (tmp_path / "checkpoints").exists()
