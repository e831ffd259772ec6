"""A nidiff pixel model (bundled or trained) as the CLI's :class:`~nidiff.cli.model.LoadedCli`:
the method runs on the image itself, conditions are class names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..bundled import MODELS, model_dir
from ..methods import method_defaults
from ..models.space import PixelSpace
from .common import InputError, check_image_file, class_conditions, input_errors

__all__ = ["PixelModel"]


class PixelModel:
    """A loaded nidiff model (:func:`nidiff.training.load_model`) plus what the CLI needs.

    Images are ``(1, channels, size, size)`` in ``[-1, 1]``; the model's space is the image
    space (``factor = 1``), ``to_image`` is the identity. ``size`` must be the model's own.
    """

    factor = 1

    def __init__(
        self,
        name: str,
        *,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        size: int | None = None,
    ):
        from ..training.checkpoint import load_model

        directory = model_dir(name) if name == "default" or name in MODELS else Path(name)
        self.name, self.directory = name, directory
        self.m = load_model(directory, device=device, dtype=dtype)
        cfg = self.m.config
        self.size = int(cfg.get("data", {}).get("size", 28))
        if size is not None and size != self.size:
            raise InputError(
                f"--size {size}: {name} is a {self.size}×{self.size} pixel model; only Stable "
                "Diffusion models take another size (use --resize to fit an image)"
            )
        self.channels = int(cfg["model"].get("in_channels", 1))
        self.device = torch.device(device)
        self.denoiser, self.process = self.m.denoiser, self.m.process
        self.null = self.m.denoiser.null_cond() if self.m.null_class is not None else None
        self.sd = None  # not a latent text-to-image model
        #: whether it takes classes (a model trained on an image folder does not)
        self.conditional = bool(self.m.num_classes)
        self.space = PixelSpace(self.m, self.device)

    def grid(self, steps: int):
        """The model's own grid of ``steps`` steps (:meth:`PixelSpace.grid`)."""
        return input_errors(self.space.grid)(steps)

    def load_image(self, path: Path, resize: bool) -> Tensor:
        """Read an image as ``(1, C, size, size)``; another size is refused unless ``resize``
        (centre crop + bicubic resize)."""
        from ..data.folder import load_image

        w, h = check_image_file(path)
        s = self.size
        if (w, h) != (s, s) and not resize:
            raise InputError(
                f"wrong size: {path} is {w}×{h} but the model expects {s}×{s}; "
                "pass --resize to resize it"
            )
        return input_errors(load_image)(path, s, self.channels)[None].to(self.device)

    def load_mask(self, path: Path, resize: bool) -> Tensor:
        return (self.load_image(path, resize)[:, :1] + 1) / 2

    def to_image(self, x: Tensor) -> Tensor:
        return x.float()

    def conditions(self, *names: str | None) -> list[Any]:
        conds = class_conditions(self, *names)
        return [None if c is None else c.to(self.device) for c in conds]

    def condition_record(self, role: str, name: str | None, cond: Any) -> dict[str, Any]:
        return {f"{role}_class": None if cond is None else int(cond)}

    def sampling(self, name: str | None, num: int, guidance: float) -> tuple[Any, Any, dict]:
        """Class ``name`` for every sample, else (class-conditional models) all classes in
        turn; guidance only with labels."""
        from ..models.contract import with_guidance

        labels = None
        if name is not None:
            (c,) = self.conditions(name)
            labels = c.repeat(num)
        elif self.m.num_classes:
            labels = torch.arange(num, device=self.device) % self.m.num_classes
        if labels is None:
            return self.denoiser, None, {"labels": None}
        return with_guidance(self.denoiser, guidance, self.null), labels, {"labels": labels}

    def shape(self, num: int) -> tuple[int, ...]:
        return (num, self.channels, self.size, self.size)

    def defaults(self, method: str) -> dict[str, Any]:
        """nidiff's pixel defaults (:func:`nidiff.methods.method_defaults`; no guidance for an
        unconditional model)."""
        return method_defaults(method, latent=False, conditional=self.conditional)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dir": str(self.directory.resolve()),
            "kind": "pixel",
            "step": self.m.config.get("step"),
            "process": self.m.spec.kind,
        }
