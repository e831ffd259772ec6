"""A tiny random diffusers ``AutoencoderKL`` saved with ``save_pretrained`` (factor 2, RGB,
``latent_channels`` latents; about 44 k parameters at 4 channels), for latent-training tests."""

from __future__ import annotations

from pathlib import Path

import torch


def save_tiny_vae(directory: Path, latent_channels: int = 4, seed: int = 0) -> Path:
    """Build the VAE from a config (weights from ``seed``; the global RNG is forked), save it in
    ``directory`` and return ``directory``."""
    from diffusers import AutoencoderKL

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
            layers_per_block=1, latent_channels=latent_channels, norm_num_groups=8,
            sample_size=16,
        )  # fmt: skip
    vae.save_pretrained(str(directory))
    return directory
