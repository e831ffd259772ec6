"""The studio's safety limits, and the checks that apply them to what a client sends.

The studio serves whoever can reach its port, so nothing a request carries is trusted: an image
is read only from a file the client *uploaded* into the studio's own temporary folder (never a
path it names), its size is checked from the file header before anything is decoded (the same
reader as the command line, :func:`nidiff.imageio.image_size`, with its
:data:`~nidiff.imageio.MAX_PIXELS` and decompression-bomb checks, then a tighter side limit), and
every number is range-checked on the server (:mod:`nidiff.app.fields`) because a crafted request
need not respect the page's sliders. Work is bounded by the queue (at most ``concurrency`` edits
run at once, ``queue_size`` wait) and memory by the caches (:mod:`nidiff.app.session`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LIMITS", "Limits", "check_image_upload", "uploaded_file"]


@dataclass(frozen=True)
class Limits:
    """What one studio server accepts and holds.

    Attributes:
        max_upload_bytes: the largest uploaded file (gradio refuses bigger uploads outright).
        max_side: the largest image side in pixels (below :data:`~nidiff.imageio.MAX_PIXELS`,
            which the reader also enforces): a decoded 4096² RGB image is 48 MiB.
        max_steps: the most grid steps per edit (a request's work is ~``steps`` network calls
            per method).
        max_seeds: the most images of one seed gallery.
        max_map_n: the most noise draws of one weighting map (all run in one batched call).
        cache_entries: inversions kept per session (least recently used dropped first).
        max_sessions: sessions whose caches are kept (least recently active dropped first).
        cache_bytes: the tensor bytes all sessions' cached inversions hold together (least
            recently used dropped first; :class:`~nidiff.app.session.ByteBudget`).
        concurrency: edits running at once (the rest wait in the queue).
        queue_size: requests allowed to wait; more are refused with a message.
    """

    max_upload_bytes: int = 10 * 1024 * 1024
    max_side: int = 4096
    max_steps: int = 200
    max_seeds: int = 8
    max_map_n: int = 20
    cache_entries: int = 4
    max_sessions: int = 16
    cache_bytes: int = 1024 * 1024 * 1024
    concurrency: int = 2
    queue_size: int = 64


#: The defaults ``nidiff app`` runs with.
LIMITS = Limits()


def uploaded_file(path: str | os.PathLike | None, root: Path, what: str = "image") -> Path:
    """The uploaded file ``path``, refused unless it is a regular file inside ``root`` (the
    studio's temporary folder, where gradio stores uploads): a client can name any path in a
    request, and the studio reads only what was uploaded to it.

    Raises:
        ValueError: no file, or a path outside ``root``.
    """
    if path is None or str(path) == "":
        raise ValueError(f"no {what}: upload one first")
    p = Path(path).resolve()
    if not p.is_relative_to(root.resolve()) or not p.is_file():
        raise ValueError(f"the {what} must be a file uploaded to the studio, not a server path")
    return p


def check_image_upload(path: Path, limits: Limits = LIMITS) -> tuple[int, int]:
    """``(width, height)`` of an uploaded image, checked against ``limits`` from the header
    (nothing decoded yet); a file that is not an image is refused here too.

    Raises:
        ValueError: too many bytes, not a readable image, or too large.
    """
    from ..imageio import image_size

    size = path.stat().st_size
    if size > limits.max_upload_bytes:
        raise ValueError(
            f"the file has {size:,} bytes; the studio takes uploads of at most "
            f"{limits.max_upload_bytes:,} bytes"
        )
    try:
        w, h = image_size(path, verify=True)
    except ValueError as err:
        raise ValueError(_without_path(str(err), path)) from None
    if max(w, h) > limits.max_side:
        raise ValueError(
            f"the image is {w}×{h} pixels; the studio reads images of at most {limits.max_side} "
            "pixels per side: scale it down first"
        )
    return w, h


def _without_path(message: str, path: Path) -> str:
    """A reader's message about ``path`` without the server-side path (the client never sees
    where its upload was stored)."""
    return message.replace(str(path), "the upload")
