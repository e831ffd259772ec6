"""A saved diffusers pipeline directory: its ``model_index.json`` and its components, loaded
from local files only (``local_files_only=True``: nothing is downloaded).

Each component is loaded with the ``[library, class]`` the index names, from its sub-folder;
the networks in the requested dtype. ``diffusers`` and ``transformers`` are imported when a
component is loaded.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["declared", "load_component", "load_components", "place", "read_index"]

#: Components whose weights take ``torch_dtype`` (the networks; not tokenizers or schedulers).
_NETWORKS = ("unet", "transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")


def read_index(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """The directory and its parsed ``model_index.json``.

    Raises:
        ValueError: not a directory, no ``model_index.json``, or unreadable JSON.
    """
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory (expected a saved diffusers pipeline)")
    index_file = root / "model_index.json"
    if not index_file.is_file():
        raise ValueError(
            f"{root} is not a diffusers pipeline directory: it has no model_index.json"
        )
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{index_file} is not readable JSON ({err})") from err
    if not isinstance(index, dict):
        raise ValueError(f"{index_file} is not a JSON object")
    return root, index


def declared(entry: Any) -> bool:
    """Whether a ``model_index.json`` entry names a class (``[library, class]``, not nulls)."""
    return (
        isinstance(entry, (list, tuple))
        and len(entry) == 2
        and all(isinstance(v, str) and v for v in entry)
    )


def load_components(
    root: Path,
    index: dict[str, Any],
    required: Sequence[str],
    optional: Sequence[str] = (),
    *,
    dtype: torch.dtype = torch.float32,
    family: str = "Stable Diffusion",
) -> dict[str, Any]:
    """Load the ``required`` components (and the ``optional`` ones the index declares; the others
    are ``None``) of the pipeline in ``root``.

    Raises:
        ValueError: a required component missing from the index or from disk (the message names
            them and what ``family`` needs), or one that cannot be loaded.
    """
    missing = [n for n in required if not declared(index.get(n)) or not (root / n).is_dir()]
    if missing:
        raise ValueError(
            f"the pipeline in {root} lacks the component(s) {', '.join(missing)} "
            f"({family} needs {', '.join(required)})"
        )
    parts = {n: load_component(root, n, index[n], dtype) for n in required}
    for n in optional:
        present = declared(index.get(n)) and (root / n).is_dir()
        parts[n] = load_component(root, n, index[n], dtype) if present else None
    return parts


def load_component(root: Path, name: str, entry: list[str], dtype: torch.dtype) -> Any:
    """Load component ``name`` with the ``[library, class]`` of ``model_index.json``."""
    library, class_name = entry
    if library not in ("diffusers", "transformers"):
        raise ValueError(
            f"component {name!r} comes from {library!r}; expected diffusers or transformers"
        )
    cls = getattr(importlib.import_module(library), class_name, None)
    if cls is None:
        raise ValueError(f"component {name!r}: {library} has no class {class_name!r}")
    kwargs: dict[str, Any] = {"subfolder": name, "local_files_only": True}
    if name in _NETWORKS:
        kwargs["torch_dtype"] = dtype
    try:
        return cls.from_pretrained(str(root), **kwargs)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"cannot load component {name!r} from {root / name}: {err}") from err


def place(module: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """Frozen eval-mode ``module`` on ``device`` in ``dtype`` (cast only if it differs)."""
    if next(module.parameters()).dtype != dtype:
        module = module.to(dtype=dtype)
    return module.to(device=device).eval().requires_grad_(False)
