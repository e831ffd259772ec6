"""Tiny SDXL, SD3 and FLUX pipelines built offline from configs (random weights, a few MB each).

Each has the structure of its family at a size that runs in milliseconds on a CPU:

* **SDXL** — two CLIP text encoders (the second with a projection: pooled embeddings), a UNet
  with ``addition_embed_type="text_time"`` (size/crop time ids), the SDXL scheduler
  (``EulerDiscreteScheduler``, leading spacing, ``steps_offset=1``);
* **SD3** — an ``SD3Transformer2DModel`` (patch 2), two CLIP encoders with projection and an
  optional T5 encoder, a 16-channel VAE with shift and scaling factors, a
  ``FlowMatchEulerDiscreteScheduler`` with shift 3;
* **FLUX** — a ``FluxTransformer2DModel`` on packed 2×2 latents (``guidance_embeds`` for the
  guidance-distilled "dev" variant), a CLIP and a T5 encoder, a 16-channel VAE, the dynamic-shift
  flow scheduler of FLUX.1-dev.

The VAEs have two blocks (factor 2), so 32² images are 16² latents. The CLIP tokenizer is the
letter-level one of :func:`nidiff.bench._sd_random.build_tokenizer`; the T5 tokenizer is a
``T5Tokenizer`` over a hand-written Unigram vocabulary (the special tokens, every letter, digit
and a few punctuation marks, alone and as a word start ``▁x``), built in memory. Nothing is
downloaded.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import torch

#: Context length of the CLIP tokenizers (as in every family).
CLIP_LENGTH = 77
#: Hidden width of the tiny CLIP encoders, their projection width, the T5 width.
CLIP_DIM, PROJ_DIM, T5_DIM = 32, 32, 32


def t5_tokenizer(max_length: int = 512) -> Any:
    """A ``T5Tokenizer`` with the letter-level Unigram vocabulary (module docstring)."""
    from transformers import T5Tokenizer

    pieces = list(string.ascii_lowercase + string.digits + ".,!?'-")
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(p, -3.0) for p in pieces] + [("▁" + p, -2.5) for p in pieces]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=max_length)


def _clip(projection: bool, vocab: int, seed: int) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        hidden_size=CLIP_DIM, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=vocab, max_position_embeddings=CLIP_LENGTH, projection_dim=PROJ_DIM,
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_act="gelu",
    )  # fmt: skip
    torch.manual_seed(seed)
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return cls(config).eval()


def _t5(vocab: int, seed: int) -> Any:
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=vocab, d_model=T5_DIM, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1,
        decoder_start_token_id=0,
    )  # fmt: skip
    torch.manual_seed(seed)
    return T5EncoderModel(config).eval()


def _vae(latent_channels: int, seed: int, **extra: Any) -> Any:
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 64),
        layers_per_block=1, latent_channels=latent_channels, norm_num_groups=32, sample_size=32,
        **extra,
    ).eval()  # fmt: skip


def build_sdxl(seed: int = 0) -> Any:
    """A tiny ``StableDiffusionXLPipeline`` (weights from ``seed``; the global RNG is forked)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    from nidiff.bench._sd_random import build_tokenizer

    tok = build_tokenizer(CLIP_LENGTH)
    vocab = len(tok.get_vocab())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64),
            layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
            use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
            projection_class_embeddings_input_dim=8 * 6 + PROJ_DIM,
            cross_attention_dim=2 * CLIP_DIM, norm_num_groups=32,
        ).eval()  # fmt: skip
        vae = _vae(4, seed + 1, scaling_factor=0.13025, force_upcast=True)
        text_encoder, text_encoder_2 = _clip(False, vocab, seed + 2), _clip(True, vocab, seed + 3)
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
        beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading",
        interpolation_type="linear", use_karras_sigmas=False, prediction_type="epsilon",
    )  # fmt: skip
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tok,
        tokenizer_2=build_tokenizer(CLIP_LENGTH), unet=unet, scheduler=scheduler,
        force_zeros_for_empty_prompt=True, add_watermarker=False,
    )  # fmt: skip


def build_sd3(seed: int = 0, t5: bool = True) -> Any:
    """A tiny ``StableDiffusion3Pipeline``; without ``t5`` the third encoder is left out (as
    diffusers allows: its embeddings are then zeros)."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    from nidiff.bench._sd_random import build_tokenizer

    tok, tok3 = build_tokenizer(CLIP_LENGTH), t5_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = SD3Transformer2DModel(
            sample_size=16, patch_size=2, in_channels=16, num_layers=1, attention_head_dim=8,
            num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=T5_DIM,
            pooled_projection_dim=2 * PROJ_DIM, out_channels=16, pos_embed_max_size=16,
        ).eval()  # fmt: skip
        vae = _vae(16, seed + 1, scaling_factor=1.5305, shift_factor=0.0609)
        vocab = len(tok.get_vocab())
        text_encoder, text_encoder_2 = _clip(True, vocab, seed + 2), _clip(True, vocab, seed + 3)
        text_encoder_3 = _t5(len(tok3), seed + 4) if t5 else None
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae,
        text_encoder=text_encoder, tokenizer=tok, text_encoder_2=text_encoder_2,
        tokenizer_2=build_tokenizer(CLIP_LENGTH), text_encoder_3=text_encoder_3,
        tokenizer_3=tok3 if t5 else None,
    )  # fmt: skip


def build_flux(seed: int = 0, guidance_embeds: bool = True) -> Any:
    """A tiny ``FluxPipeline``: FLUX.1-dev's structure (guidance-distilled, dynamic shift), or
    with ``guidance_embeds=False`` that of FLUX.1-schnell's transformer."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    from nidiff.bench._sd_random import build_tokenizer

    tok, tok2 = build_tokenizer(CLIP_LENGTH), t5_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = FluxTransformer2DModel(
            patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
            attention_head_dim=16, num_attention_heads=2, joint_attention_dim=T5_DIM,
            pooled_projection_dim=CLIP_DIM, guidance_embeds=guidance_embeds,
            axes_dims_rope=(4, 4, 8),
        ).eval()  # fmt: skip
        vae = _vae(16, seed + 1, scaling_factor=0.3611, shift_factor=0.1159)
        text_encoder = _clip(False, len(tok.get_vocab()), seed + 2)
        text_encoder_2 = _t5(len(tok2), seed + 3)
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
        max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096,
    )  # fmt: skip
    return FluxPipeline(
        scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tok,
        text_encoder_2=text_encoder_2, tokenizer_2=tok2, transformer=transformer,
    )  # fmt: skip


BUILDERS = {"sdxl": build_sdxl, "sd3": build_sd3, "flux": build_flux}


def save_tiny(family: str, directory: Path, seed: int = 0, **options: Any) -> Path:
    """Build the tiny pipeline of ``family`` (``sd``, ``sdxl``, ``sd3``, ``flux``) and
    ``save_pretrained`` it to ``directory/family``."""
    out = Path(directory) / family
    if family == "sd":
        from tiny_sd import build_tiny_pipeline

        pipe = build_tiny_pipeline(Path(directory), seed)
    else:
        pipe = BUILDERS[family](seed, **options)
    pipe.save_pretrained(str(out))
    return out
