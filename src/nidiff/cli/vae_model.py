r"""A nidiff model trained on VAE latents (``nidiff train --vae``) as the CLI's
:class:`~nidiff.cli.model.LoadedCli`.

It is a :class:`~nidiff.cli.pixel.PixelModel` (class conditions, the leading grid, nidiff's pixel
defaults) whose space is the latent of its VAE (:class:`~nidiff.models.vae_space.VaeSpace`): an
image file of the model's size is read with the VAE's channels and encoded,
:math:`x_0 = z_0` ``(1, C_z, size/f, size/f)``; results are decoded, :math:`\mathcal D(\hat z_0)`;
masks and change maps are averaged over ``f × f`` blocks, to latent resolution. The VAE is the
one its ``config.json`` records, checked against the recorded channels and weights digest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .common import input_errors
from .pixel import PixelModel

__all__ = ["VaeModel"]


class VaeModel(PixelModel):
    """A latent-trained nidiff model (module docstring); ``size`` is the image side in pixels,
    ``factor`` the VAE's."""

    def __init__(
        self,
        name: str,
        *,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        size: int | None = None,
    ):
        from ..models.vae_space import VaeSpace, load_vae_of

        super().__init__(name, device=device, dtype=dtype, size=size)
        codec = input_errors(load_vae_of)(self.m, self.device, f"model {name}")
        self.space = VaeSpace(self.m, codec, self.device)
        self.factor = codec.factor
        self.channels = codec.in_channels  # image files are read with the VAE's channels

    def load_image(self, path: Path, resize: bool) -> Tensor:
        """Read an image of the model's size (``resize``: centre crop + bicubic resize) and
        encode it: ``(1, C_z, size/f, size/f)``."""
        return input_errors(self.space.encode)(super().load_image(path, resize))

    def load_mask(self, path: Path, resize: bool) -> Tensor:
        """A grey image at the model's size averaged over ``f × f`` blocks:
        ``(1, 1, size/f, size/f)`` in ``[0, 1]``."""
        grey = (PixelModel.load_image(self, path, resize)[:, :1] + 1) / 2
        return torch.nn.functional.avg_pool2d(grey, self.factor)

    def to_image(self, x: Tensor) -> Tensor:
        return self.space.decode(x)

    def shape(self, num: int) -> tuple[int, ...]:
        return (num, *self.space.latent_shape)

    def describe(self) -> dict[str, Any]:
        vae = self.m.config["vae"]
        return {
            **super().describe(),
            "kind": "latent",
            "vae": vae["path"],
            "vae_sha256": vae["sha256"],
        }
