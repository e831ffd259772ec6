r"""What a non-isotropic noise process costs per training and sampling step.

GFF noise colours ε with two real FFTs per image; edge-preserving (EP) noise computes a Sobel edge
map and a per-pixel :math:`\sigma_t`. Both are cheap next to a UNet call, so a GFF or EP step
should cost about as much as an isotropic one (the goal: at most 3 % more). Measured at the same
network (the bundled models' Fashion UNet,
:func:`~nidiff.models.diffusers_unet.fashion_unet_config`) and batch, with the bundled models'
processes (:data:`~nidiff.training.fashion.FASHION_PROCESSES`):

* **training step**: per-element loss of the process (forward noising + network), mean,
  backward, gradient clipping, AdamW step (what :func:`~nidiff.training.trainer.train` does per
  step, without its data draw and EMA update, which are the same for every process);
* **sampling step**: one iteration of :func:`~nidiff.samplers.sample`: network call, reverse
  transition, noise. Isotropic and GFF take DDIM (η = 0, :math:`\hat x_0` clipped to [−1, 1],
  as the trainer's sample grids); EP takes its posterior (η = 1), at ``t = 300 → 280`` of 1000,
  inside EP's edge-preserving phase;
* **noise operations alone**: the GFF colouring, the EP noising (σ map and :math:`x_t`), and each
  reverse transition without the network, next to the bare network call.

Method: every round draws one batch (images, labels, times, white noise) shared by all
operations, then times each operation once, one after the other (interleaved: drift in clock
speed or machine load hits every process alike). Warm-up rounds are dropped. A process's ratio is
the median over rounds of its time divided by the isotropic time of the same round; times are
medians in milliseconds. On CUDA every timing is bracketed by synchronisations.

    python -m nidiff.bench.training                       # quick preset, CPU
    python -m nidiff.bench.training --full --device cuda --json bench-training.json
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nidiff.models.diffusers_unet import UNetDenoiser, fashion_unet_config, unet_from_config
from nidiff.samplers.registry import pixel_sampling_rule
from nidiff.training.fashion import FASHION_PROCESSES
from nidiff.training.spec import ProcessSpec

from ._device import hardware, timed
from ._report import data_run, main_parser, pyplot, report, save_figure

__all__ = ["GOAL", "PRESETS", "Preset", "markdown", "plot", "run"]

KINDS = ("isotropic", "gff", "edge")
#: The stated goal: a GFF or EP step costs at most this multiple of an isotropic one.
GOAL = 1.03
T_SAMPLE, T_PREV = 300.0, 280.0


@dataclass(frozen=True)
class Preset:
    """Batch size and image side, and how many rounds to drop (warm-up) and to time."""

    batch: int
    size: int
    warmup: int
    rounds: int


PRESETS = {
    "quick": Preset(batch=8, size=28, warmup=2, rounds=9),
    "full": Preset(batch=64, size=28, warmup=10, rounds=50),
}


@dataclass(frozen=True)
class _Batch:
    x0: Tensor  # (B, 1, S, S) in [-1, 1]
    labels: Tensor  # (B,)
    t: Tensor  # (B,) float64 training times
    eps: Tensor  # (B, 1, S, S) white noise
    x_t: Tensor  # (B, 1, S, S) a noisy state to sample from
    z: Tensor  # (B, 1, S, S) white noise of the reverse step


def _draw(gen: torch.Generator, p: Preset, device: torch.device) -> _Batch:
    B, S = p.batch, p.size
    # Smooth random images with edges: upsampled coarse noise, pushed towards ±1.
    coarse = torch.randn(B, 1, S // 4, S // 4, generator=gen)
    x0 = torch.tanh(3 * torch.nn.functional.interpolate(coarse, size=(S, S), mode="bilinear"))
    labels = torch.randint(11, (B,), generator=gen)  # 10 classes + the null class
    t = torch.randint(1, 1001, (B,), generator=gen).to(torch.float64)
    eps, x_t, z = (torch.randn(B, 1, S, S, generator=gen) for _ in range(3))
    return _Batch(
        *(v.to(device) for v in (x0, labels)), t.to(device), *(v.to(device) for v in (eps, x_t, z))
    )


def _training_step(spec: ProcessSpec, net: torch.nn.Module) -> Callable[[_Batch], None]:
    loss_fn = spec.loss()
    model = UNetDenoiser(net)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def step(b: _Batch) -> None:
        loss = loss_fn(model, b.x0, b.t, b.eps, b.labels).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _sampling_step(spec: ProcessSpec, model: UNetDenoiser) -> Callable[[_Batch], Tensor]:
    rule = pixel_sampling_rule(spec.process())
    t = torch.tensor(T_SAMPLE, dtype=torch.float64)
    t_prev = torch.tensor(T_PREV, dtype=torch.float64)

    @torch.no_grad()
    def step(b: _Batch) -> Tensor:  # one iteration of nidiff.samplers.sample
        out = model(b.x_t, t.to(device=b.x_t.device, dtype=torch.float32), b.labels)
        tr = rule.transition(b.x_t, out, t, t_prev)
        return tr.sample(None if tr.is_deterministic else b.z)

    return step


def _operations(p: Preset, device: torch.device) -> dict[str, Callable[[_Batch], Any]]:
    specs = {k: ProcessSpec({"kind": "linear", "T": 1000}, FASHION_PROCESSES[k]) for k in KINDS}
    config = fashion_unet_config(sample_size=p.size)

    def network() -> torch.nn.Module:
        torch.manual_seed(0)  # the same initial weights for every process
        return unet_from_config(config).to(device)

    ops: dict[str, Callable[[_Batch], Any]] = {}
    for k in KINDS:
        ops[f"train/{k}"] = _training_step(specs[k], network())
    frozen = network().eval().requires_grad_(False)
    model = UNetDenoiser(frozen)
    for k in KINDS:
        ops[f"sample/{k}"] = _sampling_step(specs[k], model)

    trainable = network()

    def net_train(b: _Batch) -> None:
        trainable(b.x_t, b.t.float() - 1, class_labels=b.labels).sample.mean().backward()
        trainable.zero_grad(set_to_none=True)

    ops["network/forward+backward"] = net_train
    ops["network/forward"] = torch.no_grad()(
        lambda b: frozen(b.x_t, T_SAMPLE - 1, class_labels=b.labels).sample
    )
    gff_loss, edge_loss = specs["gff"].loss(), specs["edge"].loss()
    iso_loss = specs["isotropic"].loss()
    ops["noise/isotropic noising"] = lambda b: iso_loss.noisy(b.x0, b.t, b.eps)
    ops["noise/gff colour"] = lambda b: gff_loss.noise.color(b.eps)
    ops["noise/gff noising"] = lambda b: gff_loss.noisy(b.x0, b.t, b.eps)
    ops["noise/edge σ map"] = lambda b: edge_loss.noise.sigma(b.x0, b.t)
    ops["noise/edge noising"] = lambda b: edge_loss.noisy(b.x0, b.t, b.eps)
    for k in KINDS:
        rule = pixel_sampling_rule(specs[k].process())
        ops[f"transition/{k}"] = torch.no_grad()(
            lambda b, rule=rule: rule.transition(b.x_t, b.eps, T_SAMPLE, T_PREV).mean
        )
    return ops


def run(quick: bool = True, device: str = "cpu", *, preset: Preset | None = None) -> dict[str, Any]:
    """Time everything once with the ``quick`` or ``full`` preset (or ``preset``); returns a
    JSON-safe dict.

    Keys: ``ms`` (median milliseconds per operation), ``ratio`` (per process: ``train`` and
    ``sample`` relative to isotropic, medians of per-round ratios; the measured result),
    ``ratio_of_minima`` (fastest step over fastest isotropic step: less sensitive to bursts of
    load on a shared machine), ``ratio_from_parts`` (1 + the extra time of the process's own
    noising or transition over the isotropic step: the overhead with the network's run-to-run
    variation taken out), ``goal``, ``meets_goal`` (on ``ratio``) and
    the setting (``preset``, ``device``, ``batch``, ``size``, ``rounds``, ``torch``, ``threads``,
    ``hardware``).
    """
    name = "custom" if preset is not None else ("quick" if quick else "full")
    p = preset if preset is not None else PRESETS[name]
    dev = torch.device(device)
    ops = _operations(p, dev)
    gen = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {k: [] for k in ops}
    for r in range(p.warmup + p.rounds):
        batch = _draw(gen, p, dev)
        for key, op in ops.items():
            _, seconds = timed(dev, op, batch)
            if r >= p.warmup:
                times[key].append(seconds)

    ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}

    def ratio(kind: str, what: str) -> float:
        pairs = zip(times[f"{what}/{kind}"], times[f"{what}/isotropic"], strict=True)
        return statistics.median(a / b for a, b in pairs)

    def ratio_of_minima(kind: str, what: str) -> float:
        return min(times[f"{what}/{kind}"]) / min(times[f"{what}/isotropic"])

    def ratio_from_parts(kind: str) -> dict[str, float]:
        """1 + (extra cost of the process's own operations) / (isotropic step): what the ratio
        would be if the network call cost the same in every step."""
        noising = ms[f"noise/{kind} noising"] - ms["noise/isotropic noising"]
        transition = ms[f"transition/{kind}"] - ms["transition/isotropic"]
        return {
            "train": 1 + noising / ms["train/isotropic"],
            "sample": 1 + transition / ms["sample/isotropic"],
        }

    what = ("train", "sample")
    ratios = {k: {w: ratio(k, w) for w in what} for k in KINDS[1:]}
    return {
        "preset": name,
        "device": str(dev),
        "hardware": hardware(dev),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": p.batch,
        "size": p.size,
        "rounds": p.rounds,
        "ms": ms,
        "ratio": ratios,
        "ratio_of_minima": {k: {w: ratio_of_minima(k, w) for w in what} for k in KINDS[1:]},
        "ratio_from_parts": {k: ratio_from_parts(k) for k in KINDS[1:]},
        "goal": GOAL,
        "meets_goal": {k: all(v <= GOAL for v in r.values()) for k, r in ratios.items()},
    }


def markdown(result: dict[str, Any]) -> str:
    """The result as two markdown tables: per-process steps, then the parts."""
    ms, ratio = result["ms"], result["ratio"]
    lines = [
        f"Training/sampling step cost, {result['preset']} preset: batch {result['batch']} at "
        f"{result['size']}×{result['size']}, Fashion UNet, {result['hardware']}, "
        f"{result['threads']} threads, median of {result['rounds']} interleaved rounds.",
        "",
        "Ratios to isotropic: median of per-round ratios (min: ratio of the fastest steps; "
        "parts: 1 + extra noise-operation time / isotropic step).",
        "",
        "| process | train step (ms) | train ratio (min, parts) | sample step (ms) "
        "| sample ratio (min, parts) |",
        "|---|---:|---:|---:|---:|",
    ]
    one = {"train": 1.0, "sample": 1.0}
    for k in KINDS:
        r = ratio.get(k, one)
        lo = result["ratio_of_minima"].get(k, one)
        parts = result["ratio_from_parts"].get(k, one)
        cells = [
            f"{ms[f'{w}/{k}']:.2f} | {r[w]:.3f} ({lo[w]:.3f}, {parts[w]:.4f})"
            for w in ("train", "sample")
        ]
        lines.append(f"| {k} | {' | '.join(cells)} |")
    fwd, fwdbwd = ms["network/forward"], ms["network/forward+backward"]
    lines += ["", "| part | ms | share of the network call |", "|---|---:|---:|"]
    lines.append(f"| network forward+backward | {fwdbwd:.2f} | 100% |")
    for key in [k for k in ms if k.startswith("noise/")]:
        lines.append(f"| {key.removeprefix('noise/')} | {ms[key]:.3f} | {ms[key] / fwdbwd:.2%} |")
    lines.append(f"| network forward | {fwd:.2f} | 100% |")
    for k in KINDS:
        key = f"transition/{k}"
        lines.append(f"| {k} transition | {ms[key]:.3f} | {ms[key] / fwd:.2%} |")
    verdict = ", ".join(
        f"{k}: {'meets' if ok else 'misses'} the ≤ {result['goal']} goal"
        for k, ok in result["meets_goal"].items()
    )
    return "\n".join([*lines, "", verdict])


def plot(result: dict[str, Any], directory: Path, *, name: str = "training") -> list[Path]:
    """``directory/NAME.png``: each process's train and sample step cost relative to isotropic
    (bars from 1 to ``ratio``, the median of per-round ratios; dots: ``ratio_of_minima``), with
    the goal as a dashed line."""
    plt = pyplot()
    kinds = list(result["ratio"])
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(kinds), 3.6))
    width = 0.38
    for j, w in enumerate(("train", "sample")):
        xs = [i + (j - 0.5) * width for i in range(len(kinds))]
        ys = [result["ratio"][k][w] for k in kinds]
        bars = ax.bar(xs, [y - 1 for y in ys], width, bottom=1.0, label=f"{w} step")
        ax.bar_label(bars, labels=[f"{y:.3f}" for y in ys], fontsize=7)
        lows = [result["ratio_of_minima"][k][w] for k in kinds]
        ax.plot(xs, lows, "k.", label="ratio of the fastest steps" if j == 0 else None)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.axhline(result["goal"], color="red", ls="--", lw=1, label=f"goal ≤ {result['goal']}")
    ax.set_xticks(range(len(kinds)), kinds)
    ax.set_ylabel("step time / isotropic step time")
    ax.set_title(
        f"{result['preset']} preset, batch {result['batch']}, {result['hardware']}", fontsize=9
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return [save_figure(fig, directory / f"{name}.png")]


def main(argv: list[str] | None = None) -> None:
    ap = main_parser(
        "Cost of GFF and edge-preserving training/sampling steps vs isotropic.", presets=PRESETS
    )
    ap.add_argument(
        "--full",
        action="store_true",
        help="batch 64, 50 rounds (default: quick, batch 8, 9 rounds)",
    )
    a = ap.parse_args(argv)
    result = data_run(
        run, quick=not a.full, device=a.device, preset=a.preset, presets=PRESETS,
        assignments=a.assignments,
    )  # fmt: skip
    report(result, markdown, a.json, name="training", out=a.out, plot=plot)


if __name__ == "__main__":
    main()
