"""What the studio writes for download: edited PNGs, their provenance records, the change map
and the inversion, each request in its own folder under the studio's temporary folder.

A record has the keys of the one ``nidiff edit`` writes (``command``, ``params``, ``nidiff``,
``torch``, ``seed``, ``method``, ``info``, ``nfe``, ``resolved``, ``model``, the source and
target, ``outputs``, ``seconds``) plus what only the studio knows: whether the inversion was
reused and its reconstruction error, which map drove NGDM, and the network calls of the edit,
of the request and of the session (``network_calls``). Its ``nfe`` counts the network
evaluations that ran (a reused inversion costs none), where the CLI's adds the inversion's.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
import uuid
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._io import write_json

__all__ = ["Outputs", "jsonable", "record", "safe_stem", "versions", "write_outcome"]


class Outputs:
    """Per-request folders ``root/outputs/<id>/``; only the newest ``keep`` are kept (gradio
    copies what it serves into its own cache, which it cleans itself)."""

    def __init__(self, root: Path, keep: int = 32):
        self.dir, self.keep = root / "outputs", keep
        self._lock = threading.Lock()

    def new(self) -> Path:
        """A new, empty folder for one request's files."""
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            old = sorted(self.dir.iterdir(), key=lambda p: p.stat().st_mtime)
            for p in old[: max(0, len(old) - self.keep + 1)]:
                shutil.rmtree(p, ignore_errors=True)
            folder = self.dir / uuid.uuid4().hex
            folder.mkdir()
            return folder


def safe_stem(name: str) -> str:
    """A file-name stem made of the upload's name: letters, digits, ``._-`` (≤ 40)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(name).stem).strip("-.")[:40]
    return stem or "image"


def versions() -> dict[str, str]:
    """The versions a record names."""
    try:
        nidiff = version("nidiff")
    except PackageNotFoundError:  # pragma: no cover (running from a source tree)
        nidiff = "unknown"
    return {"nidiff": nidiff, "torch": torch.__version__}


def jsonable(v: Any) -> Any:
    """``v`` with tensors, tuples and paths as JSON values."""
    if isinstance(v, Path):
        return v.name
    if isinstance(v, tuple | list):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, Tensor):
        return v.tolist() if v.numel() <= 16 else f"tensor{tuple(v.shape)}"
    return v


def record(path: Path, **fields: Any) -> Path:
    """Write ``fields`` (with ``command = "app"`` and the versions first) as ``path``."""
    write_json(path, jsonable({"command": "app", **versions(), **fields}))
    return path


def write_outcome(
    m: Any, out: Any, prep: Any, folder: Path, p: dict[str, Any], action: str, started: float
) -> None:
    """Write an :class:`~nidiff.app.studio.Outcome`'s files into ``folder`` and list them in
    ``out.files``: per result the PNG (model resolution) and its record ``PNG.json``, then
    the map that drove NGDM (``--save-map``'s convention) and the inversion used (with a
    record naming the model, so ``nidiff regenerate`` finds it)."""
    from ..imageio import save_image
    from .images import save_map

    stem = safe_stem(prep.name)
    map_file = None if out.lam is None else save_map(out.lam, folder / f"{stem}-map.png")
    calls = {"run": out.calls, "session": out.session_calls, "inversions_made": out.inversions_made}
    params = {**p, "action": action, "image": prep.name, "image_sha256": prep.digest}
    conds = {
        **m.condition_record("source", prep.source, prep.src),
        **m.condition_record("target", prep.target, prep.tgt),
    }
    for i, r in enumerate(out.results):
        png = folder / f"{stem}-{r.record['method']}-{i + 1}.png"
        save_image(r.image, png)
        used_map = map_file.name if map_file is not None and r.record["map"] else None
        rec = record(
            png.with_name(png.name + ".json"),
            params=params,
            **r.record,
            model=m.describe(),
            **conds,
            outputs={"image": png.name, "map": used_map},
            network_calls={"edit": r.calls, **calls},
            seconds=time.perf_counter() - started,
        )
        out.files += [png, rec]
    if map_file is not None:
        out.files.append(map_file)
    if out.inverted is not None:
        from ..inversion import save_inversion

        inv = save_inversion(out.inverted, folder / f"{stem}.inv.safetensors")
        resolved = {"steps": p["steps"], "eta": p["eta"], "guidance": p["source_guidance"]}
        rec = record(
            inv.with_name(inv.name + ".json"),
            seed=p["seed"],
            method="edit_friendly",
            nfe=out.inversion["calls"],
            resolved=resolved,
            model=m.describe(),
            **m.condition_record("source", prep.source, prep.src),
        )
        out.files += [inv, rec]
