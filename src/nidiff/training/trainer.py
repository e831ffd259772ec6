"""The one training loop for isotropic, GFF and edge-preserving diffusion models.

Data-parallel through `accelerate` (launch with ``accelerate launch`` or ``torchrun``): every
process draws the same **global** batch indices, times, noise and label-dropout mask from one
seeded generator and trains on its shard, so an ``n``-process run follows the single-process
update rule exactly (gradients are averaged across shards). Checkpoints are whole directories
renamed into place, so a killed run never leaves a half-written checkpoint, and ``resume``
restores the model, EMA, optimiser, learning-rate schedule, step and RNG state from the newest
readable checkpoint (one that is truncated or foreign is skipped with a :class:`ResumeWarning`).
Every checkpoint records the run's *segments* (one per start or resume: steps and seconds), so
a run killed and resumed still accounts for all its time; a new run removes the temporaries a
killed one left (:func:`nidiff._io.clean_stale`).
"""

from __future__ import annotations

import copy
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._io import atomic_dir, clean_stale, write_json
from ..imageio import save_grid
from .checkpoint import ResumeWarning, resume_state, save_model
from .processes import draw_times
from .spec import ProcessSpec

__all__ = ["ResumeWarning", "TrainConfig", "TrainResult", "latest_checkpoint", "train"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (AdamW, warm-up then cosine or constant learning rate, EMA)."""

    steps: int = 1300
    batch_size: int = 64  # global batch, split across processes
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup: int = 100
    lr_schedule: str = "cosine"  # "cosine" | "constant"
    ema_decay: float = 0.999
    grad_clip: float = 1.0  # 0 disables clipping
    label_dropout: float = 0.1
    mixed_precision: str = "no"  # "no" | "fp16" | "bf16"
    log_every: int = 50
    sample_every: int = 0  # 0: never
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"lr_schedule={self.lr_schedule!r}: use 'cosine' or 'constant'")
        if not 0 <= self.label_dropout < 1:
            raise ValueError(f"label_dropout={self.label_dropout} must be in [0, 1)")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay={self.ema_decay} must be in [0, 1)")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision={self.mixed_precision!r}: use no, fp16 or bf16")
        for name in ("log_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        for name in ("warmup", "sample_every", "grad_clip", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr} must be > 0")

    def lr_factor(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.lr_schedule == "constant":
            return 1.0
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


@dataclass(frozen=True)
class TrainResult:
    model_dir: Path
    step: int
    losses: list[float]  # mean loss of each logged interval
    seconds: float  # of this call
    #: every segment of the run, this call's last: ``start_step``, ``end_step``, ``seconds``
    #: (``None`` if unknown), ``processes``, ``started`` (Unix time); a killed segment ends at
    #: its last checkpoint.
    segments: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: Path | None = None  # the checkpoint this call continued


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint directory under ``out_dir/checkpoints``, if any."""
    ckpts = sorted(Path(out_dir, "checkpoints").glob("step-*[0-9]"))
    return ckpts[-1] if ckpts else None


def _draw(gen: torch.Generator, n: int, B: int, schedule, shape, p_drop: float):
    idx = torch.randint(n, (B,), generator=gen)
    t = draw_times(schedule, B, gen)
    eps = torch.randn((B, *shape), generator=gen)
    drop = torch.rand(B, generator=gen) < p_drop
    return idx, t, eps, drop


def train(
    out_dir: str | Path,
    *,
    images: Tensor,
    labels: Tensor | None,
    model_config: dict[str, Any],
    spec: ProcessSpec,
    cfg: TrainConfig = TrainConfig(),
    resume: bool = False,
    extra_config: dict[str, Any] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a diffusers ``UNet2DModel`` on in-memory ``images`` ``(N, C, H, W)`` in [−1, 1].

    ``labels`` ``(N,)`` make the model class-conditional: the network must have
    ``num_class_embeds = num_classes + 1`` (the last label is the null class used for label
    dropout and guidance). Writes ``out_dir/checkpoints/step-*`` and exports the EMA weights to
    ``out_dir/model`` (see :mod:`nidiff.training.checkpoint`).
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    from ..models.diffusers_unet import unet_from_config
    from ..models.ve_unet import unet_denoiser

    out_dir = Path(out_dir)
    acc = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
    world, rank = acc.num_processes, acc.process_index
    if cfg.batch_size % world:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by {world} processes")
    b = cfg.batch_size // world
    if world > 1 and spec.kind == "edge" and not spec.noise.get("per_image", True):
        raise ValueError(
            "edge noise with per_image=False normalises edges by the batch maximum, which differs "
            "between a process's shard and the global batch; train it in one process or use "
            "per_image=True"
        )
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (N, C, H, W), got {tuple(images.shape)}")
    num_classes = int(model_config.get("num_class_embeds") or 1) - 1 if labels is not None else 0
    if labels is not None:
        if labels.shape != (len(images),) or labels.is_floating_point():
            raise ValueError(
                f"labels must be integers of shape ({len(images)},), got {labels.dtype} "
                f"{tuple(labels.shape)}"
            )
        if int(labels.min()) < 0:
            raise ValueError("labels must be >= 0")
        if num_classes < 1 or int(labels.max()) >= num_classes:
            raise ValueError("a class-conditional model needs num_class_embeds = num_classes + 1")

    schedule = spec.build_schedule()
    loss_fn = spec.loss(schedule)
    # The initial weights come from cfg.seed too, not from (and without touching) the global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = unet_from_config(model_config)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, cfg.lr_factor)
    gen = torch.Generator().manual_seed(cfg.seed)
    step = 0
    losses, window, segments = [], [], []
    if acc.is_main_process:
        _clean_temporaries(out_dir)
    modules = (net, ema, opt, lr_sched, gen)
    resumed = resume_state(out_dir, model_config, spec.to_dict(), modules) if resume else None
    if resumed is not None:
        state = resumed[1]
        step = int(state["step"])
        losses, window = list(state.get("losses", [])), list(state.get("window", []))
        if "segments" in state:
            segments = list(state["segments"])
        elif step > 0:  # a checkpoint from before segments were recorded: duration unknown
            segments = [_segment(0, step, None, None, None)]
    net, opt = acc.prepare(net, opt)
    ema.to(acc.device)
    denoiser = unet_denoiser(net, schedule)
    config = {
        "model": model_config,
        "process": spec.to_dict(),
        "num_classes": num_classes,
        "train": asdict(cfg),
        **(extra_config or {}),
    }
    shard = slice(rank * b, (rank + 1) * b)
    # Keep the dataset on the accelerator: one gather per step instead of a host→device copy.
    images = images.to(acc.device) if acc.device.type == "cuda" else images
    start, start_step, started = time.perf_counter(), step, time.time()

    def so_far() -> list[dict[str, Any]]:
        return [*segments, _segment(start_step, step, time.perf_counter() - start, world, started)]

    bar = tqdm(total=cfg.steps, initial=step, disable=not (progress and acc.is_main_process))
    while step < cfg.steps:
        idx, t, eps, drop = _draw(
            gen, len(images), cfg.batch_size, schedule, images.shape[1:], cfg.label_dropout
        )
        x0 = images[idx[shard].to(images.device)].to(acc.device, torch.float32)
        cond = None
        if labels is not None:
            cond = torch.where(drop[shard], num_classes, labels[idx[shard]]).to(acc.device)
        with acc.autocast():
            loss = loss_fn(
                denoiser, x0, t[shard].to(acc.device), eps[shard].to(acc.device), cond
            ).mean()
        acc.backward(loss)
        if cfg.grad_clip > 0:
            acc.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        lr_sched.step()
        opt.zero_grad(set_to_none=True)
        _ema_update(ema, acc.unwrap_model(net), cfg.ema_decay, step)
        step += 1
        window.append(float(acc.reduce(loss.detach(), "mean")))
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            losses.append(sum(window) / len(window))
            bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{opt.param_groups[0]['lr']:.2e}")
            window = []
        if cfg.sample_every and step % cfg.sample_every == 0 and acc.is_main_process:
            _sample_grid(
                ema,
                spec,
                schedule,
                num_classes,
                images.shape[1:],
                out_dir / "samples" / f"step-{step:07d}.png",
            )
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            acc.wait_for_everyone()
            if acc.is_main_process:
                _checkpoint(
                    out_dir,
                    step,
                    acc.unwrap_model(net),
                    ema,
                    opt,
                    lr_sched,
                    gen,
                    config,
                    cfg.keep_checkpoints,
                    {"losses": losses, "window": window, "segments": so_far()},
                )
    bar.close()
    acc.wait_for_everyone()
    seconds, run = time.perf_counter() - start, so_far()
    model_dir = out_dir / "model"
    if acc.is_main_process:
        save_model(model_dir, ema.state_dict(), {**config, "step": step})
        log = {"losses": losses, "log_every": cfg.log_every, "seconds": seconds, "segments": run}
        write_json(out_dir / "train_log.json", {**log, "processes": world})
        # Our own writes are done: what is left unlocked is a killed run's (even one killed a
        # moment before this run started, too young for the start-of-run cleanup).
        _clean_temporaries(out_dir, min_age=0.0)
    return TrainResult(
        model_dir=model_dir,
        step=step,
        losses=losses,
        seconds=seconds,
        segments=run,
        resumed_from=None if resumed is None else resumed[0],
    )


def _segment(start: int, end: int, seconds: float | None, processes, started) -> dict[str, Any]:
    """One start-or-resume of a run (see :attr:`TrainResult.segments`)."""
    return {
        "start_step": start,
        "end_step": end,
        "seconds": None if seconds is None else round(seconds, 3),
        "processes": processes,
        "started": started,
    }


def _clean_temporaries(out_dir: Path, min_age: float | None = None) -> None:
    """Remove what a killed run left half-written: checkpoint folders, model files, samples
    (``min_age``: see :func:`nidiff._io.clean_stale`)."""
    clean_stale(out_dir, {"train.json", "train_log.json"}, min_age=min_age)
    for sub in ("checkpoints", "model", "samples"):
        clean_stale(out_dir / sub, min_age=min_age)


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, net: torch.nn.Module, decay: float, step: int) -> None:
    # Warm-up of the decay so early EMA weights are not dominated by the random init.
    d = min(decay, (1 + step) / (10 + step))
    for pe, p in zip(ema.parameters(), net.parameters(), strict=True):
        pe.lerp_(p.detach().to(pe.dtype), 1 - d)
    for be, bn in zip(ema.buffers(), net.buffers(), strict=True):
        be.copy_(bn)


def _checkpoint(out_dir, step, net, ema, opt, lr_sched, gen, config, keep, log) -> None:
    final = out_dir / "checkpoints" / f"step-{step:07d}"
    if final.exists():
        return
    with atomic_dir(final) as tmp:
        torch.save(
            {
                "model": net.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": opt.state_dict(),
                "lr_schedule": lr_sched.state_dict(),
                "generator": gen.get_state(),
                "step": step,
                "losses": list(log["losses"]),
                "window": list(log["window"]),
                "segments": list(log["segments"]),
            },
            tmp / "train_state.pt",
        )
        save_model(tmp, ema.state_dict(), {**config, "step": step})
    for old in sorted((out_dir / "checkpoints").glob("step-*[0-9]"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _sample_grid(ema, spec, schedule, num_classes, shape, path: Path) -> None:
    from ..generate import generate
    from ..models.ve_unet import unet_denoiser
    from ..process import Process
    from ..samplers.registry import pixel_sampling_rule
    from ..schedule import own_grid

    device = next(ema.parameters()).device
    n = max(num_classes, 1)
    labels = torch.arange(n).repeat_interleave(4) if num_classes else None
    noise = spec.build_noise(schedule)
    x = generate(
        unet_denoiser(ema, schedule),
        pixel_sampling_rule(Process(schedule, noise, spec.build_prediction(noise))),
        own_grid(schedule, 50),
        (4 * n, *shape),
        noise=noise,
        labels=labels,
        guidance=3.0 if num_classes else 1.0,
        null_class=num_classes or None,
        generator=torch.Generator(device).manual_seed(0),
        device=device,
        prior_std=schedule.prior_std,
    )
    save_grid(x.cpu(), path, nrow=4)
