"""``nidiff train``: train a diffusion model with isotropic, GFF or edge-preserving noise.

The data: Fashion-MNIST (class-conditional, the bundled models' UNet), scikit-learn's 8×8 digits
(class-conditional, a small UNet) or a folder of images (unconditional, a small UNet). Writes
``OUT_DIR/model`` (the exported EMA weights, loadable with ``--model OUT_DIR/model`` by the other
commands), ``OUT_DIR/checkpoints/step-*``, ``OUT_DIR/train_log.json`` and the record
``OUT_DIR/train.json``. Runs unchanged under ``accelerate launch`` or ``torchrun`` (data-parallel:
every process trains its shard of the global batch; only the main process writes).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import click
import torch

from .._io import check_writable
from ..data.fashion_mnist import DEFAULT_DIR
from ..training.fashion import FASHION_PROCESSES
from ..training.processes import PROCESSES, training_spec
from ..training.trainer import TrainConfig
from .common import (
    InputError,
    input_errors,
    quiet_option,
    seed_option,
    show_progress,
    write_record,
)
from .train_latent import latent_run, vae_options

__all__ = ["train"]

_D = TrainConfig()
#: Default image side and UNet block widths per data source (folders: any other --data).
_SIZES = {"fashion-mnist": 28, "digits": 8, "folder": 32}
_CHANNELS = {"fashion-mnist": (32, 64, 128), "digits": (16, 32), "folder": (32, 64)}
_ATTENTION_HEAD_DIM = 8  # fashion_unet_config's default


def _source(data: str) -> str:
    return data if data in ("fashion-mnist", "digits") else "folder"


def _parse_channels(text: str) -> tuple[int, ...]:
    try:
        channels = tuple(int(c) for c in text.split(","))
    except ValueError:
        msg = f"--channels {text!r}: give comma-separated integers, e.g. 32,64,128"
        raise InputError(msg) from None
    if not channels or any(c < 1 for c in channels):
        raise InputError(f"--channels {text!r}: every block width must be >= 1")
    if channels[-1] % _ATTENTION_HEAD_DIM:
        raise InputError(
            f"--channels {text!r}: the last block width (attention) must be a multiple of "
            f"{_ATTENTION_HEAD_DIM}"
        )
    return channels


def _load_data(
    data: str, data_root: Path | None, size: int, rgb: bool
) -> tuple[torch.Tensor, torch.Tensor | None, list[str], dict[str, Any]]:
    """``(images (N, C, size, size) in [-1, 1], labels or None, class names, data record)``."""
    from ..data.transforms import fit_size, from_uint8

    source = _source(data)
    if data_root is not None and source != "fashion-mnist":
        raise InputError(
            "--data-root applies to --data fashion-mnist only; pass a folder as --data"
        )
    if rgb and source != "folder":
        raise InputError(f"--rgb applies to image folders only; {data} is grey")
    if source == "fashion-mnist":
        from ..data.fashion_mnist import CLASS_NAMES, load_fashion_mnist_tensors

        root = data_root if data_root is not None else DEFAULT_DIR
        try:
            raw, labels = load_fashion_mnist_tensors(root, "train")
        except FileNotFoundError as err:
            msg = str(err).replace("pass root=<folder>", "pass --data-root FOLDER")
            raise InputError(msg) from err
        fit = "pad" if size >= raw.shape[-1] else "resize"
        images = fit_size(from_uint8(raw)[:, None], size, fit, fill=-1.0)
        info = {"name": "fashion-mnist", "root": str(Path(root).resolve()), "fit": fit}
        return images, labels, list(CLASS_NAMES), {**info, "split": "train", "size": size}
    if source == "digits":
        try:
            import sklearn  # noqa: F401
        except ImportError as err:
            raise InputError(
                "--data digits needs scikit-learn (the digits ship with it); install it with "
                "`pip install scikit-learn`"
            ) from err
        from ..data.digits import digits

        images, labels = digits(size)
        return images, labels, [str(i) for i in range(10)], {"name": "digits", "size": size}
    from ..data.folder import ImageFolder

    folder = Path(data)
    if not folder.is_dir():
        raise InputError(
            f"--data {data!r} is neither 'fashion-mnist', 'digits' nor an existing image folder"
        )
    channels = 3 if rgb else 1
    dataset = ImageFolder(folder, size, channels)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    info = {"name": "folder", "root": str(folder.resolve()), "files": len(dataset)}
    return images, None, [], {**info, "size": size, "channels": channels}


def _existing_model(out_dir: Path) -> Path | None:
    """The exported model or newest checkpoint already in ``out_dir``, if any."""
    from ..training.trainer import latest_checkpoint

    if (out_dir / "model" / "config.json").exists():
        return out_dir / "model"
    return latest_checkpoint(out_dir)


def _warnings_on_stderr(run: Any, *args: Any, **kwargs: Any) -> Any:
    """``run(*args, **kwargs)`` with the trainer's :class:`ResumeWarning` as one
    ``Warning: ...`` line on stderr each (other warnings as Python shows them)."""
    from ..training.trainer import ResumeWarning

    show = warnings.showwarning

    def one_line(message, category, *rest, **kw) -> None:
        if issubclass(category, ResumeWarning):
            click.echo(f"Warning: {message}", err=True)
        else:
            show(message, category, *rest, **kw)

    with warnings.catch_warnings():
        warnings.simplefilter("always", ResumeWarning)
        warnings.showwarning = one_line
        return run(*args, **kwargs)


def _is_main_process() -> bool:
    """Rank 0 of a ``torchrun``/``accelerate launch`` job (or a plain single process)."""
    return int(os.environ.get("RANK", "0")) == 0


@click.command("train")
@click.argument("out_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--noise",
    type=click.Choice(list(FASHION_PROCESSES)),
    required=True,
    help="noise process (the bundled models' settings, nidiff.training.fashion)",
)
@click.option(
    "--process",
    type=click.Choice(list(PROCESSES)),
    default="ddpm",
    show_default=True,
    help="; ".join(f"{k}: {v}" for k, v in PROCESSES.items()) + " (nidiff.training.processes)",
)
@click.option(
    "--data",
    type=str,
    default="fashion-mnist",
    show_default=True,
    help="'fashion-mnist', 'digits' (scikit-learn, 8×8) or a folder of images (unconditional)",
)
@click.option(
    "--data-root",
    type=click.Path(path_type=Path),
    default=None,
    show_default=str(DEFAULT_DIR),
    help="folder of the Fashion-MNIST IDX files (--data fashion-mnist only)",
)
@click.option(
    "--size",
    type=click.IntRange(min=1),
    default=None,
    show_default="28 fashion-mnist, 8 digits, 32 folders",
    help="image side length (Fashion-MNIST is padded or resized, folders centre-cropped)",
)
@click.option(
    "--rgb",
    is_flag=True,
    default=False,
    show_default=True,
    help="train on RGB images (folders only; default grey)",
)
@click.option(
    "--channels",
    type=str,
    default=None,
    show_default="32,64,128 fashion-mnist, 16,32 digits, 32,64 folders",
    help="UNet block widths, comma-separated (attention in the last block)",
)
@click.option(
    "--steps", type=click.IntRange(min=1), default=_D.steps, show_default=True,
    help="total optimiser steps (with --resume: the total, not the number of extra steps)",
)  # fmt: skip
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=_D.batch_size, show_default=True,
    help="global batch, split across processes",
)  # fmt: skip
@click.option(
    "--lr", type=click.FloatRange(min=0, min_open=True), default=_D.lr, show_default=True,
    help="peak AdamW learning rate",
)  # fmt: skip
@click.option(
    "--warmup", type=click.IntRange(min=0), default=_D.warmup, show_default=True,
    help="linear learning-rate warm-up steps",
)  # fmt: skip
@click.option(
    "--lr-schedule", type=click.Choice(["cosine", "constant"]), default=_D.lr_schedule,
    show_default=True, help="learning rate after the warm-up",
)  # fmt: skip
@click.option(
    "--ema-decay", type=click.FloatRange(0, 1, max_open=True), default=_D.ema_decay,
    show_default=True, help="decay of the exported EMA weights",
)  # fmt: skip
@click.option(
    "--label-dropout", type=click.FloatRange(0, 1, max_open=True), default=_D.label_dropout,
    show_default=True, help="share of labels replaced by the null class (classifier-free guidance)",
)  # fmt: skip
@click.option(
    "--grad-clip", type=click.FloatRange(min=0), default=_D.grad_clip, show_default=True,
    help="gradient-norm clipping (0 disables)",
)  # fmt: skip
@click.option(
    "--mixed-precision", type=click.Choice(["no", "fp16", "bf16"]), default=_D.mixed_precision,
    show_default=True, help="accelerate mixed precision",
)  # fmt: skip
@click.option(
    "--sample-every", type=click.IntRange(min=0), default=_D.sample_every, show_default=True,
    help="write a sample grid to OUT_DIR/samples every N steps (0: never)",
)  # fmt: skip
@click.option(
    "--checkpoint-every", type=click.IntRange(min=1), default=_D.checkpoint_every,
    show_default=True, help="write a resumable checkpoint every N steps (and at the end)",
)  # fmt: skip
@seed_option
@click.option(
    "--resume",
    is_flag=True,
    default=False,
    show_default=True,
    help="continue from the newest readable checkpoint in OUT_DIR (fresh start if there is "
    "none; a truncated or foreign one is skipped with a warning)",
)
@vae_options
@quiet_option
@input_errors
def train(
    out_dir: Path,
    noise: str,
    process: str,
    data: str,
    data_root: Path | None,
    size: int | None,
    rgb: bool,
    channels: str | None,
    steps: int,
    batch_size: int,
    lr: float,
    warmup: int,
    lr_schedule: str,
    ema_decay: float,
    label_dropout: float,
    grad_clip: float,
    mixed_precision: str,
    sample_every: int,
    checkpoint_every: int,
    seed: int,
    resume: bool,
    vae: Path | None,
    latent_scale: str,
    latent_cache: Path | None,
    quiet: bool,
) -> None:
    """Train a NOISE diffusion model on DATA into OUT_DIR (model in OUT_DIR/model)."""
    from ..models.diffusers_unet import fashion_unet_config
    from ..training.trainer import latest_checkpoint
    from ..training.trainer import train as run_training

    started = time.perf_counter()
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} is a file; choose a directory")
    if not resume and (existing := _existing_model(out_dir)) is not None:
        raise InputError(
            f"{existing} exists; pass --resume to continue or choose another directory"
        )
    try:
        check_writable(out_dir / "train.json")
    except PermissionError as err:
        raise InputError(f"OUT_DIR: {err}") from err
    ckpt = latest_checkpoint(out_dir) if resume else None
    source = _source(data)
    size = size if size is not None else _SIZES[source]
    widths = _parse_channels(channels) if channels is not None else _CHANNELS[source]
    images, labels, class_names, data_info = _load_data(data, data_root, size, rgb)
    latent = latent_run(vae, latent_scale, latent_cache, images=images, size=size,
                        out_dir=out_dir, resume=resume, sample_every=sample_every)  # fmt: skip
    shape = images.shape[1:] if latent is None else latent.shape  # latents: the VAE's
    model_config = fashion_unet_config(
        num_classes=len(class_names) if labels is not None else 0,
        sample_size=shape[-1],
        channels=widths,
        in_channels=shape[0],
    )
    processes = FASHION_PROCESSES if latent is None else latent.processes
    spec = input_errors(training_spec)(process, processes[noise])
    cfg = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup=warmup,
        lr_schedule=lr_schedule,
        ema_decay=ema_decay,
        grad_clip=grad_clip,
        label_dropout=label_dropout,
        mixed_precision=mixed_precision,
        sample_every=sample_every,
        checkpoint_every=checkpoint_every,
        seed=seed,
    )
    extra: dict[str, Any] = {}
    if latent is not None:  # the dataset's latents, from the cache where it has them
        images = latent.encode(images, quiet or not _is_main_process())
        extra = {"vae": latent.record}
    if resume and ckpt is None and _is_main_process():
        click.echo(f"nothing to resume in {out_dir}; starting from step 0", err=True)
    result = _warnings_on_stderr(
        run_training,
        out_dir,
        images=images,
        labels=labels,
        model_config=model_config,
        spec=spec,
        cfg=cfg,
        resume=resume,
        extra_config={"class_names": class_names, "data": data_info, **extra},
        progress=show_progress(quiet),
    )
    if not _is_main_process():
        return
    record = out_dir / "train.json"
    history: list[Any] = []
    if resume and record.is_file():
        try:
            previous = json.loads(record.read_text())
            history = [*previous.pop("history", []), previous]
        except (OSError, ValueError):  # an unreadable old record is not worth failing a run over
            history = []
    write_record(
        out_dir / "train",  # the record goes to OUT_DIR/train.json
        "train",
        started,
        model_dir=result.model_dir,
        step=result.step,
        resumed_from=None if result.resumed_from is None else result.resumed_from.name,
        final_loss=result.losses[-1] if result.losses else None,
        # every segment of the run (killed ones up to their last checkpoint); unknown ones as 0
        train_seconds=round(sum(seg["seconds"] or 0.0 for seg in result.segments), 3),
        segments=result.segments,
        process=spec.to_dict(),
        model=model_config,
        data=data_info,
        images=len(images),
        hardware=torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        latents=None if latent is None else latent.stats,
        history=history,
    )
    loss = f", final loss {result.losses[-1]:.4f}" if result.losses else ""
    click.echo(f"wrote {result.model_dir} (step {result.step}{loss}, {result.seconds:.1f} s)")
