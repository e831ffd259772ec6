"""A Stable Diffusion 1.x pipeline with random weights, built offline from configs.

For speed measurements only: every component has SD 1.x's architecture (the configs below are
those of ``stable-diffusion-v1-5``'s ``unet``, ``vae`` and ``text_encoder``, written out), but
the weights are drawn from a seed and nothing is downloaded. Images made with it are noise.

The CLIP tokenizer is built from a hand-written vocabulary (the two special tokens, every
lower-case letter, digit and a few punctuation marks on their own and as a word end ``x</w>``)
and a merges file holding only the version header, so words are tokenised letter by letter (as
in ``tests/support/tiny_sd.py``); prompts are padded to 77 tokens as in SD 1.x, so the text
encoder's cost does not depend on it. The text encoder's vocabulary matches this tokenizer
(86 entries instead of CLIP's 49,408: only the embedding table is smaller).
"""

from __future__ import annotations

import json
import string
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["SD15", "SD_SCHEDULER", "Architecture", "build_tokenizer", "random_components"]

#: Context length of SD 1.x's tokenizer and text encoder.
MAX_LENGTH = 77

#: ``UNet2DConditionModel`` config of SD 1.5 (``unet/config.json``).
SD15_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": (
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ),
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}

#: ``AutoencoderKL`` config of SD 1.x (``vae/config.json``): downsampling factor 8.
SD_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}

#: ``CLIPTextConfig`` of SD 1.x's text encoder (CLIP ViT-L/14's text tower) without the
#: vocabulary size and special-token ids, which come from the tokenizer.
SD15_TEXT: dict[str, Any] = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "max_position_embeddings": MAX_LENGTH,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 768,
}

#: ``DDIMScheduler`` config of SD 1.x: scaled-linear betas 0.00085 … 0.012 over 1000 steps.
SD_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}


@dataclass(frozen=True)
class Architecture:
    """The configs of a randomly initialised Stable Diffusion pipeline.

    Attributes:
        name: a label for reports.
        unet, vae: keyword arguments of ``UNet2DConditionModel`` and ``AutoencoderKL``.
        text: keyword arguments of ``CLIPTextConfig`` (vocabulary and token ids are added).
        scheduler: keyword arguments of ``DDIMScheduler``.
    """

    name: str
    unet: dict[str, Any]
    vae: dict[str, Any]
    text: dict[str, Any]
    scheduler: dict[str, Any] = field(default_factory=lambda: dict(SD_SCHEDULER))


#: Stable Diffusion 1.x (860 M-parameter UNet, 84 M VAE, 123 M text encoder).
SD15 = Architecture("SD 1.x architecture, random weights", SD15_UNET, SD_VAE, SD15_TEXT)


def build_tokenizer(max_length: int = MAX_LENGTH) -> Any:
    """A ``CLIPTokenizer`` with the hand-written letter-level vocabulary (module docstring)."""
    from transformers import CLIPTokenizer

    pieces = list(string.ascii_lowercase + string.digits + ".,!?'-")
    vocab = ["<|startoftext|>", "<|endoftext|>", *pieces, *(p + "</w>" for p in pieces)]
    with tempfile.TemporaryDirectory(prefix="nidiff-tokenizer-") as tmp:
        folder = Path(tmp)
        (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
        (folder / "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer(
            str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length
        )


def random_components(arch: Architecture = SD15, seed: int = 0) -> dict[str, Any]:
    """``unet``, ``vae``, ``text_encoder``, ``tokenizer`` and ``scheduler`` of ``arch``.

    The weights are drawn on the CPU from ``seed`` (the global RNG is forked, not disturbed), so
    they are the same on every device; the networks are in eval mode, float32, on the CPU.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = build_tokenizer(int(arch.text.get("max_position_embeddings", MAX_LENGTH)))
    ids = {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}
    text_config = CLIPTextConfig(**arch.text, vocab_size=len(tokenizer.get_vocab()), **ids)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**arch.unet)
        vae = AutoencoderKL(**arch.vae)
        text_encoder = CLIPTextModel(text_config)
    return {
        "unet": unet.eval(),
        "vae": vae.eval(),
        "text_encoder": text_encoder.eval(),
        "tokenizer": tokenizer,
        "scheduler": DDIMScheduler(**arch.scheduler),
    }
