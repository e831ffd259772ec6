"""Datasets: images as float32 ``(C, H, W)`` in ``[-1, 1]``, labels as integers.

* :class:`FashionMNIST` and :func:`load_fashion_mnist_tensors` — the IDX files, read locally.
* :class:`ImageFolder` and :func:`load_image` — user images (Pillow).
* :func:`digits` — scikit-learn's 8×8 digits, for tiny experiments and tests.
"""

from .digits import digits
from .fashion_mnist import (
    CLASS_NAMES,
    DEFAULT_DIR,
    FashionMNIST,
    class_index,
    load_fashion_mnist_tensors,
    read_idx,
)
from .folder import ImageFolder, load_image
from .transforms import fit_size, from_uint8, to_uint8

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_DIR",
    "FashionMNIST",
    "ImageFolder",
    "class_index",
    "digits",
    "fit_size",
    "from_uint8",
    "load_fashion_mnist_tensors",
    "load_image",
    "read_idx",
    "to_uint8",
]
