r"""How good is a cheaper weighting map? (``nidiff bench editing --set map_study=1,2,5``).

NGDM's map (:func:`~nidiff.editing.weighting_map`) costs :math:`2n` evaluations per image for
:math:`n` noise draws. For each pair, the study draws two independent *reference* maps of
``map_reference`` draws each (seeds ``map study``, settings 0 and 1) and, for every :math:`n` in
``map_study``, the map the benchmark's NGDM uses with ``map_draws = n`` (seed ``map``, the
first :math:`n` draws of the same generator). Per image it compares each map with reference 1:

* **corr A**: Pearson correlation of the normalised maps :math:`A` (what :math:`\lambda` is
  built from);
* **λ MAE**: mean :math:`|\lambda - \lambda_{ref}|`;
* **start MAE**: mean :math:`|T_k - T_k^{ref}|/t_{max}` of the pixels' start times at
  :math:`t_{max}` (NGDM eq. 8), what the map finally decides;
* **IoU**: of the edit masks :math:`\lambda > 0.5`.

The row ``n = map_reference`` compares reference 2 with reference 1: two maps of that many
draws differ by this much from noise alone, so it is the floor the other rows approach. What the
maps lead to in edits is measured by the methods themselves (``--set map_draws=n``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from nidiff.editing import weighting_map

from ._editing_methods import Task, _gen, _timed

__all__ = ["KEYS", "map_rows", "map_table"]

#: The per-image measures, in table order: (key, header, format).
KEYS = (
    ("corr", "corr A ↑", "{:.3f}"),
    ("lam_mae", "λ MAE ↓", "{:.4f}"),
    ("start_mae", "start MAE ↓", "{:.4f}"),
    ("iou", "IoU λ>0.5 ↑", "{:.3f}"),
)


def _corr(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation per image of ``(B, ...)`` maps (0 where one is constant)."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    den = (a.square().sum(1) * b.square().sum(1)).sqrt()
    return torch.where(den > 0, (a * b).sum(1) / den.clamp_min(1e-300), torch.zeros_like(den))


def _iou(a: Tensor, b: Tensor) -> Tensor:
    a, b = a.flatten(1) > 0.5, b.flatten(1) > 0.5
    union = (a | b).sum(1).double()
    inter = (a & b).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def _measures(m, ref, schedule) -> dict[str, Tensor]:
    t = torch.tensor(schedule.t_max, dtype=torch.float64)
    starts = [schedule.rectified_time(t, w.lam.double().cpu()) / schedule.t_max for w in (m, ref)]
    return {
        "corr": _corr(m.A.cpu(), ref.A.cpu()),
        "lam_mae": (m.lam - ref.lam).abs().flatten(1).double().mean(1).cpu(),
        "start_mae": (starts[0] - starts[1]).abs().flatten(1).mean(1),
        "iou": _iou(m.lam.cpu(), ref.lam.cpu()),
    }


def map_rows(task: Task, label: str, draws: tuple[int, ...], reference: int) -> list[dict]:
    """The study's parts for one pair (``task.x0``: its sources, without diversity copies): one
    per ``n`` in ``draws`` and the reference floor, each ``{"pair", "n", "nfe", "seconds",
    **per-image tensors}``."""
    x0, net, proc = task.x0, task.model, task.process
    kw = {"source_cond": task.source, "target_cond": task.target}

    def draw(what: str, j: int, n: int):
        g, _ = _gen(task, what, j)
        return _timed(task, weighting_map, net, x0, proc, **kw, n=n, generator=g)

    ref, _ = draw("map study", 0, reference)
    parts = []
    for n in (*draws, reference):
        m, cost = draw("map study", 1, reference) if n == reference else draw("map", 0, n)
        parts.append({"pair": label, "n": n, "nfe": cost.nfe / len(x0),
                      "seconds": cost.seconds, **_measures(m, ref, proc.schedule)})  # fmt: skip
    return parts


def map_table(parts: list[dict], reference: int) -> list[dict[str, Any]]:
    """Rows per (pair, n) and pooled per n: the means of :data:`KEYS` over the images, ``nfe``
    per image, and ``reference`` (the reference maps' draws)."""
    rows, pooled = [], {}
    for p in parts:
        vals = {k: p[k] for k, _, _ in KEYS}
        rows.append({"pair": p["pair"], "n": p["n"], "reference": reference, "nfe": p["nfe"],
                     **{k: float(v.mean()) for k, v in vals.items()}})  # fmt: skip
        acc = pooled.setdefault(p["n"], {k: [] for k, _, _ in KEYS} | {"nfe": p["nfe"]})
        for k, v in vals.items():
            acc[k].append(v)
    for n, acc in pooled.items():
        rows.append({"pair": "pooled", "n": n, "reference": reference, "nfe": acc["nfe"],
                     **{k: float(torch.cat(acc[k]).mean()) for k, _, _ in KEYS}})  # fmt: skip
    return rows
