"""scikit-learn's bundled 8×8 handwritten digits (1 797 images): a tiny dataset for fast tests.

The data ship inside scikit-learn (no download); scikit-learn is imported lazily.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .transforms import Fit, fit_size

__all__ = ["digits"]


def digits(size: int = 8, fit: Fit = "resize") -> tuple[Tensor, Tensor]:
    """Load the digits as tensors.

    The stored intensities ``0..16`` (``0`` background) map linearly to ``[-1, 1]``.

    Args:
        size: output side length; ``8`` is the native size (``16`` doubles it).
        fit: ``"resize"`` (default, bilinear) or ``"pad"`` (centred on a canvas of the background
            value ``-1``); see :func:`nidiff.data.transforms.fit_size`.

    Returns:
        ``(images, labels)``: float32 ``(N, 1, size, size)`` in ``[-1, 1]`` and int64 ``(N,)``
        with values ``0..9``.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32)[:, None] / 8.0 - 1.0
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    return fit_size(images, size, fit, fill=-1.0).clamp_(-1.0, 1.0), labels
