r"""A nidiff model trained on VAE latents (``nidiff train --vae``) as a
:class:`~nidiff.models.space.ModelSpace`.

Its space :math:`\mathcal X` is the latent of the ``AutoencoderKL`` it was trained with:
:math:`x_0 = z_0 = (\mathrm{mode}\,q_\phi(z\mid x) - \mu)s` and
:math:`\text{image} = \mathcal D(\hat z_0)` (:class:`~nidiff.models.vae.VaeCodec`); conditions
and grid are a :class:`~nidiff.models.space.PixelSpace`'s (class labels, the leading grid of its
schedule), so every method runs on it unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .space import PixelSpace
from .vae import LatentScaling, VaeCodec, check_vae

__all__ = ["VaeSpace", "load_vae_of", "space_of"]


class VaeSpace(PixelSpace):
    """A latent-trained model's space (module docstring).

    Attributes:
        codec: the VAE; ``factor``: its downsampling ``f``; ``size``: the image side in pixels;
        ``channels``: image channels (the VAE's input); ``latent_shape``: ``(C_z, h, w)``.
    """

    def __init__(self, model: Any, codec: VaeCodec, device: str | torch.device = "cpu"):
        super().__init__(model, device)
        self.codec = codec
        self.factor = codec.factor
        self.channels = codec.in_channels
        cfg = model.config["model"]
        self.latent_shape = (int(cfg["in_channels"]), *(2 * [int(cfg["sample_size"])]))

    def encode(self, images: Tensor) -> Tensor:
        if not isinstance(images, Tensor) or images.ndim != 4:
            raise ValueError("images must be a tensor (B, C, H, W) in [-1, 1]")
        if tuple(images.shape[1:]) != (self.channels, self.size, self.size):
            raise ValueError(
                f"images of shape {tuple(images.shape[1:])} do not fit this latent model of "
                f"{self.channels}×{self.size}×{self.size} images"
            )
        return self.codec.encode(images)

    def decode(self, x0: Tensor) -> Tensor:
        return self.codec.decode(x0)

    def __repr__(self) -> str:
        c, h, w = self.latent_shape
        return (
            f"VaeSpace({self.channels}×{self.size}×{self.size} images, latents {c}×{h}×{w}, "
            f"{self.process.schedule!r})"
        )


def load_vae_of(
    model: Any, device: str | torch.device = "cpu", what: str = "the model"
) -> VaeCodec:
    """The VAE a latent-trained model (its ``config["vae"]``) was trained with, loaded from the
    recorded path with the recorded scaling and checked against the record
    (:func:`~nidiff.models.vae.check_vae`).

    Raises:
        ValueError: the VAE is gone, is not an ``AutoencoderKL``, or differs from the record.
    """
    recorded = model.config["vae"]
    path = recorded.get("path")
    if not isinstance(path, str):
        raise ValueError(f"{what}: config.json's 'vae' entry names no path")
    try:
        codec = VaeCodec(path, scaling=LatentScaling.from_dict(recorded["scaling"]), device=device)
    except (KeyError, TypeError) as err:
        raise ValueError(f"{what}: config.json's 'vae' entry is malformed ({err})") from None
    except ValueError as err:
        raise ValueError(
            f"{what} decodes through the VAE {path}, which does not load: {err}"
        ) from None
    check_vae(recorded, codec, what)
    if int(model.config["model"]["in_channels"]) != codec.latent_channels:
        raise ValueError(
            f"{what}: its network takes {model.config['model']['in_channels']} channels, the VAE "
            f"{path} makes {codec.latent_channels}"
        )
    return codec


def space_of(model: Any, device: str | torch.device = "cpu", what: str = "the model") -> PixelSpace:
    """The :class:`~nidiff.models.space.ModelSpace` of a loaded nidiff model: a
    :class:`VaeSpace` when it was trained on latents, else a :class:`PixelSpace`."""
    if model.config.get("vae") is None:
        return PixelSpace(model, device)
    return VaeSpace(model, load_vae_of(model, device, what), device)
