"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017) read from its IDX ``.gz`` files; no downloads.

The files are the four standard ones (``train-images-idx3-ubyte.gz``,
``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``),
gzipped or not. On Debian and
Ubuntu ``apt-get install -y dataset-fashion-mnist`` puts them in :data:`DEFAULT_DIR`.

IDX format: a 4-byte magic ``00 00 <type> <ndim>`` (type ``0x08`` = unsigned byte), ``ndim``
big-endian ``int32`` sizes, then the row-major payload.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .transforms import Fit, fit_size, from_uint8

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_DIR",
    "FashionMNIST",
    "class_index",
    "load_fashion_mnist_tensors",
    "read_idx",
]

#: Where Debian's ``dataset-fashion-mnist`` package installs the files.
DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")

#: The ten labels, indexed by class id.
CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

Split = Literal["train", "test"]
_PREFIX = {"train": "train", "test": "t10k"}
_ALIASES = {
    "tshirt": 0, "tee": 0, "top": 0, "trousers": 1, "pants": 1, "sweater": 2,
    "sandals": 5, "sneakers": 7, "bags": 8, "boot": 9, "boots": 9, "ankleboots": 9,
}  # fmt: skip


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def class_index(name: str | int) -> int:
    """The class id of a Fashion-MNIST label name, e.g. ``"sneaker"`` → 7.

    Case, spaces and punctuation are ignored (``"T-shirt"``, ``"tshirt"``, ``"ankle-boot"``); a few
    plurals and synonyms are accepted (``"trousers"``, ``"boots"``). An ``int`` in ``0..9`` is
    returned unchanged.

    Raises:
        ValueError: for an unknown name or an out-of-range id; the message lists the valid names.
    """
    valid = ", ".join(repr(n) for n in CLASS_NAMES)
    if isinstance(name, int):
        if 0 <= name < len(CLASS_NAMES):
            return name
        raise ValueError(f"class id {name} must be in 0..{len(CLASS_NAMES) - 1} ({valid})")
    key = _norm(name)
    table = {_norm(n): i for i, n in enumerate(CLASS_NAMES)} | _ALIASES
    if key in table:
        return table[key]
    raise ValueError(f"unknown Fashion-MNIST class {name!r}; valid names: {valid}")


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzipped if the name ends in ``.gz``).

    Returns:
        a ``uint8`` array with the shape stored in the header.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: for a corrupt or truncated file (bad gzip stream, bad magic, unsupported
            element type, payload size that disagrees with the header).
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                data = fh.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(f"{path}: corrupt or truncated gzip stream ({err})") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    if data[2] != 0x08:
        raise ValueError(f"{path}: IDX element type 0x{data[2]:02x} unsupported (need 0x08, uint8)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, {ndim} dims)")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: IDX payload has {len(data) - header} bytes but the header shape {shape} "
            f"needs {expected} (truncated or corrupt file)"
        )
    return np.frombuffer(bytearray(data), dtype=np.uint8, offset=header).reshape(shape)


def _find(root: Path, stem: str) -> Path:
    hint = "install it with `apt-get install -y dataset-fashion-mnist` or pass root=<folder>"
    if not root.is_dir():
        raise FileNotFoundError(f"Fashion-MNIST folder {root} does not exist; {hint}")
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"{root} has no {stem}.gz (nor {stem}); {hint}")


def load_fashion_mnist_tensors(
    root: str | Path = DEFAULT_DIR, split: Split = "train"
) -> tuple[Tensor, Tensor]:
    """Load a whole split into memory, for training loops that index tensors directly.

    Returns:
        ``(images, labels)``: ``uint8`` ``(N, 28, 28)`` (white object on black) and ``int64``
        ``(N,)``. Use :func:`nidiff.data.transforms.from_uint8` for the model range ``[-1, 1]``.

    Raises:
        FileNotFoundError: missing folder or file (the message says how to install them).
        ValueError: unknown split, corrupt files, or image and label counts that disagree.
    """
    if split not in _PREFIX:
        raise ValueError(f"split={split!r} must be 'train' or 'test'")
    root = Path(root)
    images = read_idx(_find(root, f"{_PREFIX[split]}-images-idx3-ubyte"))
    labels = read_idx(_find(root, f"{_PREFIX[split]}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{root}: expected images (N, H, W) and labels (N,), got {images.shape} and "
            f"{labels.shape}"
        )
    if labels.size and int(labels.max()) >= len(CLASS_NAMES):
        raise ValueError(f"{root}: label {int(labels.max())} out of range 0..9")
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


class FashionMNIST(Dataset):
    """Fashion-MNIST as a map-style dataset of ``(image, label)``.

    ``image`` is float32 ``(1, size, size)`` in ``[-1, 1]``; ``label`` an ``int`` in ``0..9``
    (names in :data:`CLASS_NAMES`). The whole split is held in memory as ``uint8`` (47 MB for
    train); conversion happens per item.

    Args:
        root: folder holding the IDX files (default :data:`DEFAULT_DIR`).
        split: ``"train"`` (60 000 images) or ``"test"`` (10 000).
        size: output side length; ``28`` is the native size.
        fit: ``"pad"`` (default) centres the 28×28 image on a canvas of the background value
            ``-1`` (``size=32`` adds 2 pixels per side); ``"resize"`` resamples bilinearly.
        classes: keep only these classes (ids or names accepted by :func:`class_index`).
    """

    def __init__(
        self,
        root: str | Path = DEFAULT_DIR,
        split: Split = "train",
        size: int = 28,
        fit: Fit = "pad",
        classes: Sequence[str | int] | None = None,
    ):
        images, labels = load_fashion_mnist_tensors(root, split)
        fit_size(torch.zeros(1, images.shape[1], images.shape[2]), size, fit)  # validate early
        if classes is not None:
            ids = torch.tensor([class_index(c) for c in classes], dtype=torch.int64)
            keep = torch.isin(labels, ids)
            images, labels = images[keep], labels[keep]
        self.images, self.labels = images, labels
        self.size, self.fit = size, fit

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        image = fit_size(from_uint8(self.images[i])[None], self.size, self.fit, fill=-1.0)
        return image, int(self.labels[i])
