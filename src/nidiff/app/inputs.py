"""One request's input, read and checked: the image (an upload or a bundled example), its
source and target, and the map painted in the editor.

The image is read again for every request from the uploaded file (never from what the page
shows), so the bytes hashed for the inversion cache are the bytes edited.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from ..bundled import ASSETS
from .images import enlarge, grid_shape, lam_from_layer, view_scale
from .limits import Limits, check_image_upload, uploaded_file

__all__ = [
    "EXAMPLES",
    "Inputs",
    "Prepared",
    "example_class",
    "image_file",
    "painted",
    "prepare",
    "read_map",
]

#: The bundled example images, by file name (the only server files a client can choose).
EXAMPLES: dict[str, Path] = {p.name: p for p in sorted((ASSETS / "examples").glob("*.png"))}


@dataclass(frozen=True)
class Inputs:
    """What a request names: an uploaded file's path (checked to be an upload) or a bundled
    example's name, the source and target (class names or ids, or prompts), and the
    editor's value (``{"background", "layers", "composite"}`` or ``None``)."""

    image: str | None = None
    example: str | None = None
    source: str | None = None
    target: str | None = None
    editor: dict[str, Any] | None = None


@dataclass(frozen=True, eq=False)
class Prepared:
    """A request's input in the model's space: ``x0`` ``(1, C, h, w)``, the model conditions
    ``src``/``tgt`` of ``source``/``target``, the file's SHA-256 ``digest``, its display
    ``name`` and ``view`` (the image as the model sees it, enlarged, RGB ``uint8``)."""

    x0: Tensor
    src: Any
    tgt: Any
    source: str
    target: str
    digest: str
    name: str
    view: np.ndarray


def image_file(inp: Inputs, root: Path, limits: Limits) -> tuple[Path, str]:
    """The image file of a request and its display name: an upload inside ``root`` (checked
    against ``limits``) or a bundled example; ``ValueError`` for anything else."""
    if inp.image:
        path = uploaded_file(inp.image, root)
        check_image_upload(path, limits)
        return path, path.name
    if inp.example:
        if inp.example not in EXAMPLES:
            raise ValueError(f"{inp.example!r} is not a bundled example")
        return EXAMPLES[inp.example], inp.example
    raise ValueError("no image: upload one or pick a bundled example")


def example_class(name: str) -> str:
    """The class an example shows, from its name: ``ankle-boot-0.png`` → ``ankle boot``."""
    return Path(name).stem.rsplit("-", 1)[0].replace("-", " ")


def view_of(m: Any, path: Path) -> np.ndarray:
    """The image as the model sees it (centre crop, resize to ``m.size``), enlarged."""
    from ..data.folder import load_image

    return enlarge(load_image(path, m.size, 3), view_scale(m.size))


def prepare(m: Any, inp: Inputs, root: Path, limits: Limits, *, conditions: bool = True):
    """Read and check a request's input (:class:`Prepared`); ``ValueError`` or the CLI's
    ``InputError`` with a message for whatever is wrong (no image, not an image, too large,
    unknown class, empty prompt)."""
    path, name = image_file(inp, root, limits)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    x0 = m.load_image(path, True)
    src = tgt = None
    if conditions:
        for role, value in (("source", inp.source), ("target", inp.target)):
            if value is None or not str(value).strip():
                raise ValueError(f"no {role}: choose the {role} class or prompt")
        src, tgt = m.conditions(inp.source.strip(), inp.target.strip())
    view = view_of(m, path)
    return Prepared(x0, src, tgt, str(inp.source), str(inp.target), digest, name, view)


def painted(m: Any, editor: dict[str, Any] | None) -> Tensor | None:
    """The λ painted in the editor (its first layer), on the model's device, or ``None``."""
    if not editor or not editor.get("layers"):
        return None
    lam = lam_from_layer(editor["layers"][0], grid_shape(m))
    return None if lam is None else lam.to(m.device)


def read_map(m: Any, path: Any, root: Path, limits: Limits) -> Tensor:
    """An uploaded change map in ``nidiff edit --map``'s convention (grey, white = change),
    read by the model's own ``load_mask``: resized to its grid, ``(1, 1, h, w)`` in ``[0, 1]``.

    Raises:
        ValueError: not an upload, not an image, too large, or not square (the page edits the
            image centre-cropped to a square, so a map of another aspect covers another part).
    """
    path = uploaded_file(path, root, "map")
    w, h = check_image_upload(path, limits)
    if abs(w - h) > 0.01 * max(w, h):
        gh, gw = grid_shape(m)
        raise ValueError(
            f"the map is {w}×{h}; a change map must be square like the edited image (saved at "
            f"the model's {gw}×{gh} grid, or any square size, resized to it)"
        )
    return m.load_mask(path, True)
