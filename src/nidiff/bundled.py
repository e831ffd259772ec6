"""The models that ship with nidiff (trained by nidiff itself; see each model card).

========================  ====================================================================
name                      what
========================  ====================================================================
``fashion-isotropic``     class-conditional Fashion-MNIST DDPM (the default for editing demos)
``fashion-gff``           the same network and budget, Gaussian-Free-Field noise (NI-DDPM)
``fashion-edge``          the same network and budget, edge-preserving noise (EP)
classifier                Fashion-MNIST CNN for target accuracy and FID features
========================  ====================================================================
"""

from __future__ import annotations

from pathlib import Path

import torch

from ._assets import ASSETS, CLASSIFIER_DIR

__all__ = ["ASSETS", "MODELS", "load_bundled", "load_bundled_classifier", "model_dir"]

MODELS = ("fashion-isotropic", "fashion-gff", "fashion-edge")
DEFAULT_MODEL = "fashion-isotropic"


def model_dir(name: str = DEFAULT_MODEL) -> Path:
    """Directory of a bundled model (``default`` means ``fashion-isotropic``)."""
    name = DEFAULT_MODEL if name == "default" else name
    if name not in MODELS:
        raise ValueError(f"unknown bundled model {name!r}; choose one of {list(MODELS)}")
    return ASSETS / "models" / name


def load_bundled(name: str = DEFAULT_MODEL, device: str | torch.device = "cpu"):
    """Load a bundled model as a :class:`~nidiff.training.checkpoint.LoadedModel`."""
    from .training.checkpoint import load_model

    return load_model(model_dir(name), device=device)


def load_bundled_classifier(device: str | torch.device = "cpu"):
    """The bundled Fashion-MNIST classifier (a ``FashionClassifier``)."""
    from .metrics.classifier import load_classifier

    return load_classifier(CLASSIFIER_DIR, device=device)
