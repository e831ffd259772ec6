"""A tiny Stable Diffusion pipeline built offline from configs, saved to a directory.

Every component has the structure of SD 1.x (cross-attention UNet, KL autoencoder, CLIP text
encoder and BPE tokenizer, scaled-linear DDIM scheduler) at a size that runs in milliseconds on
a CPU. The weights are random: fine for checking plumbing and exactness, not image quality.

The CLIP tokenizer is built from a hand-written vocabulary (the two special tokens, every
lower-case letter and digit on its own and as a word end ``x</w>``) and a merges file holding
only the version header, so words are tokenised letter by letter; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch

#: The tokenizer's (and text encoder's) context length, as in SD 1.x.
MAX_LENGTH = 77
#: Text-embedding width (the UNet's ``cross_attention_dim``).
EMBED_DIM = 32


def build_tiny_pipeline(workdir: Path, seed: int = 0):
    """Build the tiny ``StableDiffusionPipeline`` in memory (weights from ``seed``).

    ``workdir`` is not needed any more (the tokenizer is built in a temporary folder); kept so
    callers can pass their work folder.
    """
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from nidiff.bench._sd_random import build_tokenizer

    tokenizer = build_tokenizer(MAX_LENGTH)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=EMBED_DIM,
            attention_head_dim=8,
            norm_num_groups=32,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(32, 64),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=32,
            sample_size=16,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                hidden_size=EMBED_DIM,
                intermediate_size=37,
                num_attention_heads=4,
                num_hidden_layers=2,
                vocab_size=len(tokenizer.get_vocab()),
                max_position_embeddings=MAX_LENGTH,
                bos_token_id=0,
                eos_token_id=1,
                pad_token_id=1,
            )
        )
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_tiny_sd(workdir: Path, seed: int = 0):
    """The tiny pipeline as nidiff's :class:`~nidiff.models.stable_diffusion.StableDiffusion`."""
    from nidiff.models.stable_diffusion import StableDiffusion

    p = build_tiny_pipeline(workdir, seed)
    return StableDiffusion(p.unet, p.vae, p.text_encoder, p.tokenizer, p.scheduler)


def build_plain_unet():
    """A UNet of the tiny pipeline's shapes without attention layers (no cross-attention, no
    self-attention): what the attention-controlling methods must refuse."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64),
        layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"), mid_block_type=None,
        cross_attention_dim=EMBED_DIM, norm_num_groups=32,
    ).eval()  # fmt: skip


def save_tiny_pipeline(directory: Path, seed: int = 0) -> Path:
    """Build the tiny pipeline and ``save_pretrained`` it to ``directory/pipeline``."""
    directory = Path(directory)
    out = directory / "pipeline"
    build_tiny_pipeline(directory, seed).save_pretrained(str(out))
    return out
