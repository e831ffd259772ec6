"""Tables and figures of :mod:`nidiff.bench.edge` (``markdown`` and ``plot`` of its result).

``markdown`` renders three tables: sample quality per (model, steps); FID/KID per frequency
version (low-pass and band-pass, with the real-vs-real floor); stroke SDEdit per (hijack, model)
after the unedited originals and paintings. KID cells are ``mean ± std`` over the KID subsets,
PSNR/SSIM cells ``mean ± standard error`` over the images. ``plot`` writes ``edge_bands.png``
and ``edge_sdedit.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._report import pyplot, save_figure

__all__ = ["SHORT", "markdown", "plot"]

SHORT = {"fashion-isotropic": "isotropic", "fashion-edge": "edge"}


def _band_label(r: dict[str, Any]) -> str:
    if r["kind"] == "band":
        return f"band-pass σ ∈ [{r['sigma_lo']:g}, {r['sigma_hi']:g})"
    return "original (σ = 0)" if r["sigma_lo"] == 0 else f"low-pass σ = {r['sigma_lo']:g}"


def _kid(d: dict[str, float] | None) -> str:
    return "–" if d is None else f"{d['kid']:.3f} ± {d['kid_std']:.3f}"


def _pm(r: dict[str, Any], key: str, fmt: str) -> str:
    v, e = r[key], r.get(f"{key}_sem")
    if v is None:
        return "–"
    return format(v, fmt) + ("" if e is None else f" ± {format(e, fmt)}")


def markdown(result: dict[str, Any]) -> str:
    """Three markdown tables (quality, bands, SDEdit). KID cells are mean ± std over subsets;
    PSNR/SSIM cells mean ± standard error over the edited images."""
    c = result["config"]
    names = list(dict.fromkeys(r["model"] for r in result["quality"]))
    lines = [
        f"Edge-preserving vs isotropic noise, {result['preset']} preset: {c['samples']} samples "
        f"per cell, {c['edits']} stroke edits, reference {result['real']} Fashion-MNIST test "
        f"images; bundled-classifier features (not Inception FID/KID); {result['hardware']}, "
        f"{result['threads']} threads, {result['seconds']:.0f} s; seed {c['seed']}.",
        "",
        "1. Sample quality, ancestral sampling, no guidance, labels cycling over the classes.",
        "",
        "| model | sampler | steps | FID ↓ | KID ↓ | precision ↑ | recall ↑ | accuracy ↑ |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["quality"]:
        lines.append(
            f"| {SHORT.get(r['model'], r['model'])} | {r['sampler']} | {r['steps']} | "
            f"{r['fid']:.2f} | {_kid(r)} | {r['precision']:.2f} | "
            f"{r['recall']:.2f} | {r['accuracy']:.3f} |"
        )
    b = result["bands"]
    head = " | ".join(f"{SHORT.get(m, m)} FID" for m in names)
    khead = " | ".join(f"{SHORT.get(m, m)} KID" for m in names)
    lines += [
        "",
        f"2. FID per frequency band (EP App. B analog), samples at {b['steps']} steps; "
        "band-pass images halved into [−1, 1]; the coarsest band is the last low-pass row; "
        "floor = real vs real. The classifier never saw blurred images: compare within a row.",
        "",
        f"| version | floor FID | {head} | floor KID | {khead} |",
        "|---|" + "---:|" * (2 + 2 * len(names)),
    ]
    for r in b["rows"]:
        fl = r["floor"]
        fids = " | ".join(f"{r['models'][m]['fid']:.2f}" for m in names)
        kids = " | ".join(_kid(r["models"][m]) for m in names)
        ffid = "–" if fl is None else f"{fl['fid']:.2f}"
        lines.append(f"| {_band_label(r)} | {ffid} | {fids} | {_kid(fl)} | {kids} |")
    s = result["sdedit"]
    lines += [
        "",
        f"3. Stroke SDEdit ({c['clusters']}-level k-means paintings, pre-blur σ = "
        f"{c['stroke_blur']:g}), true class, no guidance; faithfulness = PSNR/SSIM of the "
        f"σ = {result['faith_sigma']:g}-blurred image vs the blurred painting.",
        "",
        "| input | hijack | steps | FID ↓ | KID ↓ | accuracy ↑ | PSNR blur ↑ | SSIM blur ↑ "
        "| PSNR to original ↑ |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [(f"{k} (no edit)", "–", "–", r) for k, r in s["inputs"].items()]
    for r in s["rows"]:
        hijack = f"{r['hijack']:g}·T (t = {r['t_start']:g})"
        rows.append((SHORT.get(r["model"], r["model"]), hijack, str(r["steps"]), r))
    for label, hijack, steps, r in rows:
        lines.append(
            f"| {label} | {hijack} | {steps} | {r['fid']:.2f} | {_kid(r)} | "
            f"{r['accuracy']:.3f} | {_pm(r, 'psnr_blur', '.2f')} | {_pm(r, 'ssim_blur', '.3f')} "
            f"| {_pm(r, 'psnr_original', '.2f')} |"
        )
    lines += ["", f"Classifier accuracy on the reference: {result['classifier_test_accuracy']:.3f}"]
    return "\n".join(lines)


def plot(result: dict[str, Any], directory: Path) -> list[Path]:
    """``directory/edge_bands.png`` (FID, log scale, and KID per low-pass and band-pass version:
    both models and the real-vs-real floor) and ``directory/edge_sdedit.png`` (FID and blurred
    PSNR of the stroke edits against the hijack level per model, the originals as reference)."""
    plt = pyplot()
    rows = result["bands"]["rows"]
    names = list(rows[0]["models"]) if rows else []
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), layout="constrained")
    for col, kind in enumerate(("lowpass", "band")):
        sel = [r for r in rows if r["kind"] == kind]
        xs = range(len(sel))
        ticks = [_band_label(r).split(" ", 1)[-1].strip("()") for r in sel]
        for row, metric in enumerate(("fid", "kid")):
            ax = axes[row][col]
            for m in names:
                ax.plot(xs, [r["models"][m][metric] for r in sel], "o-", label=SHORT.get(m, m))
            if sel and all(r["floor"] is not None for r in sel):
                ax.plot(xs, [r["floor"][metric] for r in sel], "k:", label="real vs real")
            if metric == "fid":
                ax.set_yscale("log")
            ax.set_xticks(list(xs), ticks, fontsize=7)
            ax.set_ylabel(metric.upper())
            ax.set_title(f"{'low-pass' if kind == 'lowpass' else 'band-pass'}", fontsize=9)
            ax.legend(fontsize=7)
    fig.suptitle(
        f"FID / KID per frequency band, {result['bands']['steps']} steps, "
        f"{result['preset']} preset",
        fontsize=9,
    )
    paths = [save_figure(fig, directory / "edge_bands.png")]

    edits = result["sdedit"]["rows"]
    orig = result["sdedit"]["inputs"]["originals"]
    fig, (ax_f, ax_p) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for m in dict.fromkeys(r["model"] for r in edits):
        mine = sorted((r for r in edits if r["model"] == m), key=lambda r: r["hijack"])
        hs = [r["hijack"] for r in mine]
        ax_f.plot(hs, [r["fid"] for r in mine], "o-", label=SHORT.get(m, m))
        ax_p.errorbar(
            hs,
            [r["psnr_blur"] for r in mine],
            [r["psnr_blur_sem"] for r in mine],
            marker="o",
            capsize=3,
            label=SHORT.get(m, m),
        )
    ax_f.axhline(orig["fid"], color="gray", ls=":", label="originals")
    ax_p.axhline(orig["psnr_blur"], color="gray", ls=":", label="originals")
    ax_f.set(xlabel="hijack h (start at h·T)", ylabel="FID ↓", title="stroke SDEdit: realism")
    ax_p.set(xlabel="hijack h", ylabel="PSNR blurred ↑", title="faithfulness to the painting")
    ax_f.legend(fontsize=7)
    ax_p.legend(fontsize=7)
    paths.append(save_figure(fig, directory / "edge_sdedit.png"))
    return paths
