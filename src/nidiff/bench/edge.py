r"""Edge-preserving (EP) vs isotropic noise: sample quality, FID per frequency band, stroke SDEdit.

The bundled ``fashion-isotropic`` and ``fashion-edge`` models share the UNet, the linear
1000-step schedule, the data and the training budget (see their model cards), so the noise is the
only difference. Features, FID, KID and precision/recall are those of
:mod:`nidiff.bench.generation` (the bundled classifier's 256-d features, **not** Inception: the
numbers compare the two models with each other, never with the paper's). Samples and edits are
clamped to [−1, 1]; the real reference is the first ``real`` Fashion-MNIST test images.

1. **Sample quality** (EP Table 1 analog). Each model with its ancestral sampler (DDPM η = 1,
   no clipping; the EP posterior, eq. 12–14) on the leading grid, no guidance, labels cycling
   through the 10 classes (the models are class-conditional; the paper's Table 1 is
   unconditional — cycling labels targets the class-balanced data distribution). FID, KID
   (cubic-kernel MMD², 100 subsets), improved precision/recall (k = 3) and target accuracy.
   The samples of ``generation._sample`` with the same seeds, so both models start from the same
   white noise.
2. **FID per frequency band** (EP Appendix B analog). The paper trains one model per blurred
   copy of the dataset (5 Gaussian σ) and tracks FID over training; we cannot retrain, so we ask
   the same question of the two trained models: the samples of step count ``band_steps`` and the
   real images are both decomposed with :mod:`nidiff.bench._bands` (σ = ``band_sigmas``), and
   FID/KID are measured per *low-pass* version :math:`L_j = G_{\sigma_j} * x` (the paper's
   protocol; σ = 0 is the original) and per *band-pass* :math:`B_j = L_j - L_{j+1}` (halved into
   [−1, 1]; the coarsest band :math:`B_K = L_K` is the last low-pass row). The classifier was
   trained on unblurred images, so blurred and band-pass inputs are out of its distribution:
   compare the models within a row, not rows with each other. The *floor* column is the same
   metric between ``samples`` real images and the other ``real − samples`` (sampling noise).
3. **Stroke-guided SDEdit** (EP Sec. 5 "Stroke-guided image generation"). ``edits`` test images,
   class-balanced (the first ``edits/10`` of each class), become stroke paintings
   (:mod:`nidiff.editing.strokes`: Gaussian pre-blur σ = ``stroke_blur``, per-image k-means into
   ``clusters`` grey levels, seed ``seed``). :func:`nidiff.editing.strokes.stroke_edit`
   (SDEdit) noises each painting to the hijack time :math:`t_h = \mathrm{round}(h\,T)` with the
   model's own forward process (EP eq. 11 for the edge model) and runs
   :math:`n = \lceil h\cdot\text{edit\_steps}\rceil` ancestral steps at
   :math:`t_i = \mathrm{round}(t_h (n - i)/n)`, conditioned on the true class,
   no guidance, with the same noise for both models. Hijack ``h = 0.55`` is the paper's; note
   that with τ linear and :math:`t_\Phi = 0.5` the EP forward noise at 0.55·T is already
   isotropic, so there only the reverse process differs; ``h = 0.4`` noises edge-preservingly.
   Measured: FID/KID of the edits to the real reference (the paper: FID to the originals),
   target accuracy, faithfulness to the painting — PSNR and SSIM between
   :math:`G_{1.5} * \text{edit}` and :math:`G_{1.5} * \text{painting}` (SDEdit's "faithful to
   the guide") — and PSNR of the edit to the original image. The unedited originals and paintings
   get the same measurements as reference rows (the originals' FID is the sampling-noise floor
   at this number of images).

Presets: ``quick`` = 200 samples at 10 steps, 100 edits with ``edit_steps = 10`` (6 steps from
0.55·T, 4 from 0.4·T), 2,000 real images: about 210 s of CPU time on one thread (7.5 min wall
on a shared 2-core machine). ``full`` (GPU) = 2,000 samples at 100/50/20/10 steps (bands at
100), 1,000 edits with ``edit_steps = 100`` (55 and 40 steps), all 10,000 test images. Seeds are
explicit (``Preset.seed``, reported under ``seeds``). Needs Fashion-MNIST.

    python -m nidiff.bench.edge --quick --out bench-edge        # CPU
    python -m nidiff.bench.edge --device cuda --out bench-edge  # full
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nidiff.bundled import load_bundled, load_bundled_classifier
from nidiff.data.fashion_mnist import DEFAULT_DIR, load_fashion_mnist_tensors
from nidiff.data.transforms import from_uint8
from nidiff.editing import gaussian_blur
from nidiff.metrics import ClassifierFeatures, frechet_distance, kid, precision_recall, psnr, ssim

from ._bands import band_versions
from ._device import hardware, timed
from ._edge_report import markdown, plot
from ._report import data_run, main_parser, progress, report
from ._strokes import balanced_indices, hijack_grid, stroke_painting, stroke_sdedit
from .generation import _sample, _sampler_name

__all__ = ["MODELS", "PRESETS", "Preset", "hijack_grid", "main", "markdown", "plot", "run"]

MODELS = ("fashion-isotropic", "fashion-edge")
K = 3  # precision/recall neighbours
KID_SUBSETS = 100
FAITH_SIGMA = 1.5  # blur of edit and painting before PSNR/SSIM
SDEDIT_SEED = 7919  # offset of the SDEdit noise seeds from Preset.seed


@dataclass(frozen=True)
class Preset:
    """Sizes, step counts and seeds of one run (see the module docstring)."""

    samples: int
    steps: tuple[int, ...]
    edits: int  # stroke paintings, a multiple of 10 (class-balanced)
    edit_steps: int  # the SDEdit grid takes ceil(h * edit_steps) steps from h * T
    band_steps: int | None = None  # samples of this step count go into the bands; None: max
    hijacks: tuple[float, ...] = (0.55, 0.4)
    band_sigmas: tuple[float, ...] = (1.0, 2.0, 4.0)
    clusters: int = 4
    stroke_blur: float = 1.0
    real: int | None = None  # test images used as reference; None: all 10,000
    seed: int = 0


PRESETS = {
    "quick": Preset(samples=200, steps=(10,), edits=100, edit_steps=10, real=2000),
    # What a 2-core CPU does in about twenty minutes: the RESULTS.md table until a GPU run exists.
    "cpu": Preset(samples=1000, steps=(20,), edits=300, edit_steps=20),
    "full": Preset(samples=2000, steps=(100, 50, 20, 10), edits=1000, edit_steps=100),
}


def _distance(f: Tensor, ref: Tensor, seed: int) -> dict[str, float]:
    """FID and KID (mean and std over ``KID_SUBSETS`` subsets drawn with ``seed``) of ``f`` to
    ``ref``."""
    k = kid(f, ref, subsets=KID_SUBSETS, generator=torch.Generator().manual_seed(seed))
    return {"fid": frechet_distance(f, ref), "kid": k.mean, "kid_std": k.std}


def _finite(v: Tensor) -> float | None:
    """A scalar tensor as a float, ``None`` if infinite or NaN (PSNR of identical images)."""
    return float(v) if bool(torch.isfinite(v)) else None


def run(
    quick: bool = True,
    device: str = "cpu",
    *,
    preset: Preset | None = None,
    root: str | Path = DEFAULT_DIR,
) -> dict[str, Any]:
    """Run the three parts for the ``quick`` or ``full`` preset (or ``preset``).

    Returns a JSON-safe dict: the setting (``preset``, ``config`` = the preset's fields,
    ``device``, ``hardware``, ``torch``, ``threads``, ``real``, ``k``, ``kid_subsets``,
    ``faith_sigma``, ``seeds``), ``classifier_test_accuracy``, ``seconds`` and

    * ``quality``: per (model, steps) ``fid``, ``kid``, ``kid_std``, ``precision``, ``recall``,
      ``accuracy``, ``seconds`` (sampling);
    * ``bands``: ``steps`` and ``rows``, per version ``kind`` (``lowpass`` / ``band``),
      ``sigma_lo``, ``sigma_hi``, ``floor`` (``fid``/``kid`` real vs real or ``None``) and
      ``models`` (model → ``fid``, ``kid``, ``kid_std``);
    * ``sdedit``: ``inputs`` (the unedited ``originals`` and ``paintings``) and ``rows`` per
      (hijack, model) with ``hijack``, ``t_start``, ``steps``, ``seconds``; every entry has
      ``fid``, ``kid``, ``kid_std``, ``accuracy``, ``psnr_blur``, ``ssim_blur`` (means over the
      images), ``psnr_blur_sem``, ``ssim_blur_sem`` (standard errors of those means) and
      ``psnr_original``; a PSNR of an image with itself is ``None``.

    Raises:
        FileNotFoundError: the Fashion-MNIST test set is not under ``root``.
    """
    start = time.perf_counter()
    name = "custom" if preset is not None else ("quick" if quick else "full")
    p = preset if preset is not None else PRESETS[name]
    band_steps = max(p.steps) if p.band_steps is None else p.band_steps
    if band_steps not in p.steps:
        raise ValueError(f"band_steps={band_steps} must be one of steps={p.steps}")
    xt_all, yt_all = load_fashion_mnist_tensors(root, "test")  # says how to install if missing
    n_real = len(xt_all) if p.real is None else p.real
    clf = load_bundled_classifier(device).eval()
    feats = ClassifierFeatures(clf, batch_size=500)

    def accuracy(f: Tensor, labels: Tensor) -> float:
        return float((clf.classes(f) == labels).double().mean())

    real = from_uint8(xt_all[:n_real])[:, None]
    real_f = feats(real)
    batch = 2500 if torch.device(device).type == "cuda" else 100
    models = {name_: load_bundled(name_, device) for name_ in MODELS}

    # 1. sample quality
    quality, kept = [], {}
    labels = torch.arange(p.samples) % 10
    for model, m in models.items():
        for steps in p.steps:
            x, secs = timed(device, _sample, m, "ancestral", steps, p.samples, device,
                            p.seed + steps, batch)  # fmt: skip
            progress("edge", f"{model} {steps} steps, {p.samples} samples", secs)
            f = feats(x)
            pr = precision_recall(real_f, f, K)
            quality.append(
                {"model": model, "sampler": _sampler_name(m.spec.kind, "ancestral")}
                | {"steps": steps, "n": p.samples, **_distance(f, real_f, p.seed)}
                | {"precision": pr.precision, "recall": pr.recall}
                | {"accuracy": accuracy(f, labels), "seconds": secs}
            )
            if steps == band_steps:
                kept[model] = x

    # 2. FID per frequency band
    n = p.samples
    real_v = band_versions(real, p.band_sigmas)
    model_v = {model: band_versions(x, p.band_sigmas) for model, x in kept.items()}
    band_rows = []
    for j, (kind, lo, hi, rv) in enumerate(real_v):
        rf = real_f if j == 0 else feats(rv)
        floor = _distance(rf[:n], rf[n:], p.seed) if n_real - n >= max(n, 2) else None
        dists = {model: _distance(feats(v[j][3]), rf, p.seed) for model, v in model_v.items()}
        band_rows.append(
            {"kind": kind, "sigma_lo": lo, "sigma_hi": hi, "floor": floor, "models": dists}
        )

    # 3. stroke-guided SDEdit
    idx = balanced_indices(yt_all, p.edits)
    src, ys = from_uint8(xt_all[idx])[:, None], yt_all[idx]
    strokes = stroke_painting(
        src, p.clusters, blur=p.stroke_blur, generator=torch.Generator().manual_seed(p.seed)
    )
    strokes_blur = gaussian_blur(strokes, FAITH_SIGMA)

    def measure(x: Tensor) -> dict[str, Any]:
        f, xb = feats(x), gaussian_blur(x, FAITH_SIGMA)
        pb, sb = psnr(xb, strokes_blur), ssim(xb, strokes_blur)
        return {**_distance(f, real_f, p.seed), "accuracy": accuracy(f, ys)} | {
            "psnr_blur": _finite(pb.mean()),
            "psnr_blur_sem": _finite(pb.std() / math.sqrt(len(pb))),
            "ssim_blur": _finite(sb.mean()),
            "ssim_blur_sem": _finite(sb.std() / math.sqrt(len(sb))),
            "psnr_original": _finite(psnr(x, src).mean()),
        }

    inputs = {"originals": measure(src), "paintings": measure(strokes)}
    edit_rows = []
    for h in p.hijacks:
        for model, m in models.items():
            grid = hijack_grid(m.schedule, h, p.edit_steps)
            x, secs = timed(device, stroke_sdedit, m, strokes, ys, grid, h,
                            p.seed + SDEDIT_SEED, device, batch)  # fmt: skip
            progress("edge", f"{model} stroke SDEdit from {h:g}·T, {len(strokes)} edits", secs)
            edit_rows.append(
                {"hijack": h, "model": model, "t_start": float(grid.t[0]), "steps": len(grid)}
                | measure(x)
                | {"seconds": secs}
            )

    real_acc = accuracy(real_f, yt_all[:n_real])
    return {
        "preset": name,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(p).items()},
        "device": str(device),
        "hardware": hardware(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "real": n_real,
        "k": K,
        "kid_subsets": KID_SUBSETS,
        "faith_sigma": FAITH_SIGMA,
        "seeds": {
            "samples": f"{p.seed} + steps + batch start",
            "strokes": f"{p.seed} (k-means++)",
            "sdedit": f"{p.seed + SDEDIT_SEED} + batch start",
            "kid_subsets": f"{p.seed}",
        },
        "classifier_test_accuracy": real_acc,
        "quality": quality,
        "bands": {"steps": band_steps, "rows": band_rows},
        "sdedit": {"inputs": inputs, "rows": edit_rows},
        "seconds": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> None:
    ap = main_parser(
        "Edge-preserving vs isotropic bundled models: sample quality, FID per "
        "frequency band, stroke-guided SDEdit (EP paper Table 1, App. B, Sec. 5).",
        root=True,
        presets=PRESETS,
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="200 samples at 10 steps, 100 stroke edits, 2,000 real images (default: full, "
        "2,000 samples at 100/50/20/10 steps, 1,000 edits, 10,000 real images)",
    )
    a = ap.parse_args(argv)
    result = data_run(
        run, quick=a.quick, device=a.device, root=a.root, preset=a.preset, presets=PRESETS,
        assignments=a.assignments,
    )  # fmt: skip
    report(result, markdown, a.json, name="edge", out=a.out, plot=plot)


if __name__ == "__main__":
    main()
