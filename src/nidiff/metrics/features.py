"""What a network says about images: feature vectors (for FID/KID/precision-recall) and class
probabilities (for target accuracy).

Images are ``(N, C, H, W)`` in [−1, 1]. A *feature extractor* is any callable
``images -> (N, D)``; two ship here:

* :class:`ClassifierFeatures` — the bundled Fashion-MNIST classifier's penultimate layer (256-d),
  nidiff's default. Numbers made with it compare methods with each other, not with papers.
* :class:`InceptionFeatures` — a hook for an Inception network the user already has locally: a
  TorchScript or ``torch.export`` file (e.g. a TorchScript FID Inception) or any callable.
  nidiff does not depend on torchvision; with torchvision installed, build the network, load
  your weights into it, replace its classification head by ``torch.nn.Identity()``, and pass it
  in. Set ``input_range`` to the value range your weights expect.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ClassifierFeatures",
    "InceptionFeatures",
    "class_probabilities",
    "target_accuracy",
]


def check_images(images: Tensor, name: str = "images", tol: float = 1e-4) -> Tensor:
    """Validate an image batch ``(N, C, H, W)`` in [−1, 1]; return it detached (not copied)."""
    if not isinstance(images, Tensor):
        raise ValueError(f"{name} must be a tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"{name} must be images (N >= 1, C, H, W), got {tuple(images.shape)}")
    x = images.detach()
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1 - tol or hi > 1 + tol:
        raise ValueError(f"{name} must lie in [-1, 1], got values in [{lo:.4g}, {hi:.4g}]")
    return x


def _device_of(module: object) -> torch.device:
    if isinstance(module, nn.Module):
        for p in module.parameters():
            return p.device
        for b in module.buffers():
            return b.device
    return torch.device("cpu")


def _batched(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int, device) -> Tensor:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            out.append(fn(x[i : i + batch_size].to(device)).detach().cpu())
    return torch.cat(out)


class ClassifierFeatures:
    """Penultimate-layer features ``(N, 256)`` of the bundled Fashion-MNIST classifier.

    Args:
        classifier: a model with a ``.features(x)`` method; default
            :func:`nidiff.bundled.load_bundled_classifier` (loaded on first use).
        batch_size: images per forward pass.
    """

    def __init__(self, classifier: nn.Module | None = None, *, batch_size: int = 500):
        self._classifier = classifier
        self.batch_size = batch_size

    @property
    def classifier(self) -> nn.Module:
        if self._classifier is None:
            from .._assets import CLASSIFIER_DIR
            from .classifier import load_classifier

            self._classifier = load_classifier(CLASSIFIER_DIR)
        return self._classifier

    def __call__(self, images: Tensor) -> Tensor:
        """Features ``(N, D)`` of ``images`` ``(N, 1, H, W)`` in [−1, 1]."""
        x = check_images(images)
        net = self.classifier
        if net.training:
            raise ValueError("the classifier is in training mode; call .eval() on it first")
        return _batched(net.features, x.float(), self.batch_size, _device_of(net))


class InceptionFeatures:
    """Features of a user-supplied Inception network (or any image network), ``(N, D)``.

    Images in [−1, 1] are repeated to 3 channels if grey, resized (bilinear) to ``size × size``,
    mapped linearly to ``input_range`` (``None`` keeps [−1, 1]), and passed to
    ``model(x, **call_kwargs)``; the output is flattened to ``(N, D)``.

    Args:
        model: a callable network (already in eval mode).
        size: input side; ``None`` skips resizing (for networks that resize internally).
        input_range: the ``(low, high)`` value range the network expects, e.g. ``(0, 255)`` for
            the TorchScript FID Inception; ``None`` for [−1, 1].
        call_kwargs: extra keyword arguments of each call, e.g. ``{"return_features": True}``.
        batch_size: images per forward pass.
    """

    def __init__(
        self,
        model: Callable[..., Tensor],
        *,
        size: int | None = 299,
        input_range: tuple[float, float] | None = (0.0, 255.0),
        call_kwargs: dict | None = None,
        batch_size: int = 100,
    ):
        if not callable(model):
            raise ValueError(f"model must be callable, got {type(model).__name__}")
        self.model = model
        self.size = size
        self.input_range = input_range
        self.call_kwargs = dict(call_kwargs or {})
        self.batch_size = batch_size

    @classmethod
    def from_file(
        cls, path: str | Path, *, map_location: str = "cpu", **kwargs
    ) -> InceptionFeatures:
        """Load a network from a local ``path``: TorchScript, or ``torch.export`` for ``.pt2``.

        Nothing is downloaded. A ``torch.export`` program only accepts the batch shape it was
        exported with unless exported with a dynamic batch dimension; match ``batch_size``.

        ``kwargs`` go to the constructor. TorchScript FID Inceptions shipped by common FID tools
        take [0, 255] input (the default ``input_range``) and may need a keyword such as
        ``call_kwargs={"return_features": True}`` to return pool features; check your file.

        Raises:
            FileNotFoundError: if ``path`` does not exist.
            ValueError: if the file is neither (e.g. a bare state dict).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"no Inception weights at {path}: nidiff cannot download them; place a "
                "TorchScript Inception file there, or pass a network to InceptionFeatures(...), "
                "or use ClassifierFeatures() (the bundled default)"
            )
        try:
            if path.suffix == ".pt2":
                model = torch.export.load(str(path)).module()
            else:
                with warnings.catch_warnings():  # legacy FID networks only exist as TorchScript
                    warnings.simplefilter("ignore", DeprecationWarning)
                    model = torch.jit.load(str(path), map_location=map_location).eval()
        except RuntimeError as err:
            raise ValueError(
                f"{path} is neither TorchScript nor torch.export. For a torchvision state "
                "dict, build the network with torchvision yourself and pass it to "
                "InceptionFeatures(model) "
                "(see the nidiff.metrics.features docstring)"
            ) from err
        return cls(model, **kwargs)

    def _prepare(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.size is not None and x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        if self.input_range is not None:
            lo, hi = self.input_range
            x = (x + 1) / 2 * (hi - lo) + lo
        return self.model(x, **self.call_kwargs).reshape(x.shape[0], -1)

    def __call__(self, images: Tensor) -> Tensor:
        """Features ``(N, D)`` of ``images`` ``(N, 1 or 3, H, W)`` in [−1, 1]."""
        x = check_images(images)
        if x.shape[1] not in (1, 3):
            raise ValueError(f"images must have 1 or 3 channels, got {x.shape[1]}")
        return _batched(self._prepare, x.float(), self.batch_size, _device_of(self.model))


def class_probabilities(
    classifier: Callable[[Tensor], Tensor], images: Tensor, *, batch_size: int = 500
) -> Tensor:
    """Softmax class probabilities ``(N, K)`` of ``classifier`` (``images -> logits (N, K)``)."""
    x = check_images(images)
    logits = _batched(classifier, x.float(), batch_size, _device_of(classifier))
    if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
        raise ValueError(f"classifier must return logits (N, K), got {tuple(logits.shape)}")
    return logits.to(torch.float64).softmax(1)


def target_accuracy(
    classifier: Callable[[Tensor], Tensor],
    images: Tensor,
    target_labels: Tensor | int,
    *,
    batch_size: int = 500,
) -> float:
    """Fraction of ``images`` the classifier assigns to their target class (top-1).

    Args:
        classifier: ``images -> logits (N, K)``, e.g. the bundled classifier (in eval mode).
        images: edited images ``(N, C, H, W)`` in [−1, 1].
        target_labels: the intended class per image ``(N,)``, or one int for all.
    """
    probs = class_probabilities(classifier, images, batch_size=batch_size)
    N, K = probs.shape
    labels = torch.as_tensor(target_labels).detach().cpu()
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise ValueError(f"target_labels must be integers, got dtype {labels.dtype}")
    if labels.ndim == 0:
        labels = labels.expand(N)
    if labels.shape != (N,):
        raise ValueError(f"target_labels must be an int or shape ({N},), got {tuple(labels.shape)}")
    if bool(((labels < 0) | (labels >= K)).any()):
        raise ValueError(f"target_labels must lie in [0, {K - 1}]")
    return float((probs.argmax(1) == labels).to(torch.float64).mean())
