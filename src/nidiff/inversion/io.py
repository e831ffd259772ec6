r"""The :class:`Inversion` record, the description of its process, and its ``.safetensors`` file.

An inversion is only meaningful for the process (schedule + noise + prediction) it was made with,
so the record carries its JSON description (:func:`describe_process`, the one serialisation of
:mod:`nidiff.spec` that checkpoints use too) and the step rule's (``sampler``). Regenerating or
loading with a different process is refused (:func:`check_process`).

File layout (one ``.safetensors`` file, written atomically): tensors ``x_T``, ``x0``,
``zs.000`` … ``zs.{N-1}``, optionally the trajectory ``xs.001`` … ``xs.{N-1}`` (``xs[0]`` is
``x_T``), ``grid.t``, ``grid.t_prev`` and ``cond`` (a tensor) or ``cond.<key>`` (a dict of
tensors); metadata ``format = "nidiff.inversion"``, ``version`` and ``record`` (JSON: guidance,
eta, zero_last, process description).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from .._checks import check_in_range
from .._io import atomic_path
from ..process import Process
from ..schedule import TimeGrid
from ..spec import ProcessSpec, same_process, upgrade

__all__ = ["Inversion", "check_process", "describe_process", "load_inversion", "save_inversion"]

FORMAT, VERSION = "nidiff.inversion", "2"
#: Versions this code reads: 1 had no sampler record (it was always the process's own rule) and
#: an older process description (:func:`nidiff.spec.upgrade`).
READABLE = ("1", "2")


@dataclass(frozen=True, eq=False)
class Inversion:
    r"""The edit-friendly latent code :math:`\{x_T, z_T, \dots, z_1\}` of an image (EF Alg. 1).

    Attributes:
        x_T: the noisiest state ``(B, *dims)`` at ``grid.t[0]``.
        zs: ``N = len(grid)`` white maps, each ``(B, *dims)``, in grid order: ``zs[i]`` maps
            :math:`x_{t_i} \to x_{t_{prev,i}}` through :math:`x_{prev} = \hat\mu + \sigma
            \Sigma^{1/2} z` (whitened space).
        grid: the :class:`~nidiff.schedule.TimeGrid` of the inversion (ending at ``t = 0``).
        cond: the source condition (class labels ``(B,)``, text embeddings, a dict, or ``None``).
        guidance: the classifier-free guidance scale used to invert.
        eta: the step's :math:`\eta \in (0, 1]`, :math:`\sigma^2 = \eta^2\tilde\beta`.
        x0: the inverted image ``(B, *dims)``.
        xs: the states at ``grid.t`` (``xs[0]`` is ``x_T``), for starting edits after ``skip``
            steps at no cost; ``None`` when loaded from a file saved without them (then they
            are recomputed, ``skip`` model calls).
        process_info: :func:`describe_process` of the process used.
        zero_last: whether the last map was zeroed (the authors' convention; not exact).
        sampler: the step rule as ``{"sampler": name, **options}``
            (:func:`~nidiff.samplers.registry.rule_spec`); ``None`` means the process's own rule
            with ``eta`` (DDIM/DDPM, or the edge-preserving posterior).
        states: the rule's history entering each step (multistep rules: ``states[skip]`` lets
            an edit start after ``skip`` steps with the source chain's history); ``None`` for
            one-step rules and for inversions loaded from a file (replayed when needed).
    """

    x_T: Tensor  # noqa: N815 (the paper's symbol)
    zs: list[Tensor]
    grid: TimeGrid
    cond: Any
    guidance: float
    eta: float
    x0: Tensor
    xs: list[Tensor] | None
    process_info: dict[str, Any]
    zero_last: bool = False
    sampler: dict[str, Any] | None = None
    states: list[Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.x_T, Tensor) or not self.x_T.is_floating_point():
            raise ValueError("x_T must be a floating tensor (B, *dims)")
        shape = tuple(self.x_T.shape)
        for name, maps in (("zs", self.zs), ("xs", self.xs)):
            if maps is None:
                continue
            if len(maps) != len(self.grid):
                raise ValueError(f"{name} has {len(maps)} maps but the grid has {len(self.grid)}")
            for i, z in enumerate(maps):
                if not isinstance(z, Tensor) or tuple(z.shape) != shape:
                    got = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
                    raise ValueError(f"{name}[{i}] is {got}, expected shape {shape} like x_T")
        if not isinstance(self.x0, Tensor) or tuple(self.x0.shape) != shape:
            raise ValueError(f"x0 must be a tensor of x_T's shape {shape}")
        check_in_range(self.guidance, "guidance", 0.0, math.inf)
        check_in_range(self.eta, "eta", 0.0, 1.0, low_open=True)
        if self.sampler is None:
            edge = self.process_info.get("noise", {}).get("kind") == "edge"
            own = {"sampler": "edge-posterior"} if edge else {"sampler": "ddim", "eta": self.eta}
            object.__setattr__(self, "sampler", own | ({} if edge else {"clip_x0": None}))
        if not isinstance(self.sampler, dict) or not isinstance(self.sampler.get("sampler"), str):
            raise ValueError(f"sampler must be a {{'sampler': name, ...}} record: {self.sampler}")
        if self.states is not None and len(self.states) != len(self.grid):
            raise ValueError(f"states has {len(self.states)} entries for {len(self.grid)} steps")

    @property
    def steps(self) -> int:
        """The number of steps ``N`` (= number of maps)."""
        return len(self.grid)


def describe_process(process: Process) -> dict[str, Any]:
    """The JSON description of ``process`` (:meth:`nidiff.spec.ProcessSpec.from_process`, the form
    checkpoints use too)."""
    return ProcessSpec.from_process(process).to_dict()


def check_process(info: dict[str, Any], process: Process) -> None:
    """Raise ``ValueError`` unless ``process`` matches the description ``info``
    (:func:`nidiff.spec.same_process`: discrete tables compared to ``1e-12``)."""
    now = describe_process(process)
    if not same_process(info, now):
        a, b = upgrade(info), now

        def short(d: dict[str, Any]) -> str:
            sched = d.get("schedule", {})
            T = len(sched["betas"]) if "betas" in sched else sched.get("T", "")
            return f"noise {d.get('noise')} / schedule {sched.get('kind')} {T}".rstrip()

        raise ValueError(
            f"this inversion was made with a different process: {short(a)} vs {short(b)}"
        )


def save_inversion(
    inv: Inversion, path: str | os.PathLike, *, overwrite: bool = False, trajectory: bool = True
) -> Path:
    """Write ``inv`` to one ``.safetensors`` file (tensors moved to CPU), atomically.

    Args:
        trajectory: also store ``inv.xs`` (about doubles the file; without it, edits that skip
            steps recompute the start state).
        overwrite: replace an existing file (default: refuse with ``FileExistsError``).
    """
    from safetensors.torch import save_file

    tensors = {"x_T": inv.x_T, "x0": inv.x0, "grid.t": inv.grid.t, "grid.t_prev": inv.grid.t_prev}
    tensors |= {f"zs.{i:03d}": z for i, z in enumerate(inv.zs)}
    if trajectory and inv.xs is not None:
        tensors |= {f"xs.{i:03d}": x for i, x in enumerate(inv.xs) if i > 0}
    if isinstance(inv.cond, Tensor):
        tensors["cond"] = inv.cond
    elif isinstance(inv.cond, dict) and all(isinstance(v, Tensor) for v in inv.cond.values()):
        tensors |= {f"cond.{k}": v for k, v in inv.cond.items()}
    elif inv.cond is not None:
        raise ValueError(f"cannot save a cond of type {type(inv.cond).__name__}")
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    cond_kind = "dict" if isinstance(inv.cond, dict) else "none" if inv.cond is None else "tensor"
    record = {"guidance": inv.guidance, "eta": inv.eta, "zero_last": inv.zero_last}
    record |= {"steps": inv.steps, "cond": cond_kind, "process": inv.process_info}
    record["sampler"] = inv.sampler
    record["trajectory"] = bool(trajectory and inv.xs is not None)
    meta = {"format": FORMAT, "version": VERSION, "record": json.dumps(record)}
    with atomic_path(path, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return Path(path)


def load_inversion(
    path: str | os.PathLike, *, process: Process | None = None, device: str | None = None
) -> Inversion:
    """Read an inversion written by :func:`save_inversion` (tensors on ``device``, default CPU).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: for a corrupt, truncated or foreign file, or (with ``process``) an inversion
            made with another process.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device=str(device or "cpu")) as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise ValueError("it carries no nidiff inversion metadata")
            if meta.get("version") not in READABLE:
                raise ValueError(f"it has version {meta.get('version')!r}, expected {VERSION}")
            rec = json.loads(meta["record"])
            t = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iter)
        n = int(rec["steps"])
        grid = TimeGrid(t["grid.t"], t["grid.t_prev"])
        zs = [t[f"zs.{i:03d}"] for i in range(n)]
        xs = [t["x_T"], *(t[f"xs.{i:03d}"] for i in range(1, n))] if rec["trajectory"] else None
        cond = t["cond"] if rec["cond"] == "tensor" else None
        if rec["cond"] == "dict":
            cond = {k[5:]: v for k, v in t.items() if k.startswith("cond.")}
        inv = Inversion(
            x_T=t["x_T"],
            zs=zs,
            grid=grid,
            cond=cond,
            guidance=float(rec["guidance"]),
            eta=float(rec["eta"]),
            x0=t["x0"],
            xs=xs,
            process_info=rec["process"],
            zero_last=bool(rec["zero_last"]),
            sampler=rec.get("sampler"),
        )
    except Exception as err:  # safetensors raises its own error types on corrupt files
        raise ValueError(f"{path} is not a readable nidiff inversion file: {err}") from err
    if process is not None:
        check_process(inv.process_info, process)
        try:
            process.schedule.check_time(inv.grid.t, "the inversion's grid times")
        except ValueError as err:
            raise ValueError(f"{path}: {err} for this model's schedule") from None
    return inv
