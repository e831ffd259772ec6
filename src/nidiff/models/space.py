r"""A diffusion model in its own space :math:`\mathcal X`, with everything an edit needs.

Every method of nidiff runs on :math:`x_0 \in \mathcal X` with a denoiser and its process; what
differs between a pixel model and a latent one is only how images enter and leave that space,
how conditions are made and which time grid the model's own pipeline walks:

.. math:: x_0 = \mathrm{encode}(\text{image}), \qquad
          \hat x_0 = \mathrm{method}(\text{denoiser}, x_0, \text{process},
          \mathrm{grid}(N), \dots), \qquad
          \text{image}' = \mathrm{decode}(\hat x_0).

:class:`ModelSpace` is that contract. :class:`PixelSpace` implements it for nidiff's own models
(bundled or trained: :math:`\mathcal X` is the image, conditions are class names);
:class:`~nidiff.models.stable_diffusion.StableDiffusion` for Stable Diffusion pipelines
(:math:`\mathcal X` is the VAE latent, conditions are prompts, the grid carries the scheduler's
``steps_offset``). The CLI, the benchmarks and the studio all go through it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from ..schedule import TimeGrid, own_grid

__all__ = ["CountedSpace", "CountingDenoiser", "ModelSpace", "PixelSpace", "class_labels"]


@runtime_checkable
class ModelSpace(Protocol):
    """A model in its own space (module docstring).

    Attributes:
        denoiser: ``out = denoiser(x_t, t, cond)``; ``process``: its
            :class:`~nidiff.process.Process`.
        factor: image pixels per element of :math:`\\mathcal X` along a side (1 for pixel
            models, the VAE factor for latent ones).
        device: where :math:`\\mathcal X` tensors live.
    """

    denoiser: Any
    process: Any
    factor: int
    device: torch.device

    def encode(self, images: Tensor) -> Tensor:
        """Images ``(B, C, H, W)`` in ``[-1, 1]`` → :math:`x_0 \\in \\mathcal X`."""
        ...

    def decode(self, x0: Tensor) -> Tensor:
        """:math:`x_0 \\in \\mathcal X` → images ``(B, C, H, W)`` in ``[-1, 1]``."""
        ...

    def condition(self, names: Sequence[str | int | None]) -> list[Any]:
        """Class names/ids or prompts → model conditions (``None`` stays ``None``)."""
        ...

    def null_cond(self) -> Any:
        """The unconditional condition of classifier-free guidance (``None``: no guidance)."""
        ...

    def grid(self, steps: int) -> TimeGrid:
        """The model's own ``steps``-step sampling grid (the times its pipeline visits)."""
        ...


class PixelSpace:
    """A nidiff model (:class:`~nidiff.training.checkpoint.LoadedModel`) as a
    :class:`ModelSpace`: images are the space, conditions class labels ``(1,)``, the grid its
    schedule's own (:func:`~nidiff.schedule.own_grid`).

    Args:
        model: the loaded model. device: where its network runs.
    """

    factor = 1

    def __init__(self, model: Any, device: str | torch.device = "cpu"):
        self.model = model
        self.denoiser, self.process = model.denoiser, model.process
        self.device = torch.device(device)
        cfg = model.config
        self.size = int(cfg.get("data", {}).get("size", 28))
        self.channels = int(cfg["model"].get("in_channels", 1))

    def encode(self, images: Tensor) -> Tensor:
        if not isinstance(images, Tensor) or images.ndim != 4:
            raise ValueError("images must be a tensor (B, C, H, W) in [-1, 1]")
        if tuple(images.shape[1:]) != (self.channels, self.size, self.size):
            raise ValueError(
                f"images of shape {tuple(images.shape[1:])} do not fit this "
                f"{self.channels}×{self.size}×{self.size} pixel model"
            )
        return images.to(self.device)

    def decode(self, x0: Tensor) -> Tensor:
        return x0.float()

    def condition(self, names: Sequence[str | int | None]) -> list[Any]:
        return [
            None if c is None else c.to(self.device)
            for c in class_labels(self.model.class_names, self.model.num_classes, names)
        ]

    def null_cond(self) -> Any:
        return None if self.model.null_class is None else self.denoiser.null_cond()

    def grid(self, steps: int) -> TimeGrid:
        """The schedule's own grid (:func:`~nidiff.schedule.own_grid`: leading spacing, or
        the geometric ladder of a VE model)."""
        return own_grid(self.process.schedule, steps)

    def __repr__(self) -> str:
        return f"PixelSpace({self.channels}×{self.size}×{self.size}, {self.process.schedule!r})"


def class_labels(
    classes: Sequence[str], num_classes: int, names: Sequence[str | int | None]
) -> list[Tensor | None]:
    """Labels ``(1,)`` of class names or ids (``None`` stays ``None``).

    Names are matched ignoring case, spaces and punctuation; for Fashion-MNIST's classes the
    synonyms of :func:`nidiff.data.fashion_mnist.class_index` work too. An integer (or a string
    of digits) is a class id.

    Raises:
        ValueError: an unknown name or id (the message lists the valid ones), or a name given
            to an unconditional model.
    """
    from ..data.fashion_mnist import CLASS_NAMES, class_index

    if not num_classes:
        if any(n is not None for n in names):
            raise ValueError(
                "this model is unconditional: it takes no class (give none, or use a method "
                "that needs no condition)"
            )
        return [None for _ in names]

    def norm(s: str) -> str:
        return "".join(ch for ch in s.lower() if ch.isalnum())

    def one(name: str | int) -> int:
        text = str(name).strip()
        if text.isdigit() and int(text) < num_classes:
            return int(text)
        if tuple(classes) == CLASS_NAMES:
            return class_index(text)
        table = {norm(c): i for i, c in enumerate(classes)}
        if norm(text) in table:
            return table[norm(text)]
        valid = ", ".join(repr(c) for c in classes) or f"ids 0..{num_classes - 1}"
        raise ValueError(f"unknown class {name!r}; valid names: {valid}")

    return [None if n is None else torch.tensor([one(n)]) for n in names]


class CountingDenoiser:
    """``model(x_t, t, cond)``, counting the calls (a guided call, one batch, counts once);
    ``tick(calls)`` after each, for progress. Other attributes are the model's."""

    def __init__(self, model: Any, tick: Callable[[int], None] | None = None):
        self.model, self.tick, self.calls = model, tick, 0

    def __call__(self, x_t: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        out = self.model(x_t, t, cond)
        self.calls += 1
        if self.tick is not None:
            self.tick(self.calls)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


class CountedSpace:
    """A :class:`ModelSpace` whose ``denoiser`` is a :class:`CountingDenoiser`; everything else
    is the space's own. One per edit (the studio: per request, so concurrent requests count
    separately; the CLI: for its progress bar)."""

    def __init__(self, space: Any, tick: Callable[[int], None] | None = None):
        self._space = space
        self.denoiser = CountingDenoiser(space.denoiser, tick)

    @property
    def calls(self) -> int:
        return self.denoiser.calls

    def __getattr__(self, name: str) -> Any:
        return getattr(self._space, name)
