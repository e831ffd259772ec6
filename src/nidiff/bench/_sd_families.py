"""SDXL, SD3 and FLUX pipelines with random weights, built offline from configs, for the speed
benchmark (:mod:`nidiff.bench.sd_speed`, ``--set family=...``).

Every family has two architectures: ``full``, the published sizes (the configs below are those
of ``stable-diffusion-xl-base-1.0``, ``stable-diffusion-3-medium-diffusers`` and
``FLUX.1-dev``, written out), and ``tiny``, the structure at a few MB (the configs of
``tests/support/tiny_families.py``, with a third SDXL UNet level) for tests. Weights are drawn
from a seed; nothing is downloaded; images made with them are noise.

Tokenizers are the letter-level ones of :func:`nidiff.bench._sd_random.build_tokenizer` (CLIP)
and :func:`t5_tokenizer` (T5); the text encoders' vocabularies match them (86 and 80 entries
instead of CLIP's 49,408 and T5's 32,128: only the embedding tables are smaller). CLIP prompts
are padded to 77 tokens and T5 prompts to the pipeline's length (SD3 256, FLUX.1-dev 512), so
text encoding costs what it costs in the real pipelines.

**Memory**: :func:`parameter_count` builds the networks on the ``meta`` device (no memory) and
counts their parameters; :func:`check_memory` refuses a pipeline whose parameters alone exceed
the memory available on the device, with one line naming both, before anything is allocated.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ._sd_random import MAX_LENGTH, SD15_TEXT, SD_VAE, Architecture, build_tokenizer

__all__ = [
    "ARCHITECTURES",
    "SD_TINY",
    "FamilyArchitecture",
    "available_bytes",
    "build_space",
    "check_memory",
    "parameter_count",
    "t5_tokenizer",
]

#: FLUX.1-dev's and SD3's T5 lengths (their pipelines' ``max_sequence_length`` defaults).
T5_LENGTH = {"sd3": 256, "flux": 512}


@dataclass(frozen=True)
class FamilyArchitecture:
    """The configs of a randomly initialised pipeline of ``family``.

    Attributes:
        name: a label for reports.
        family: ``sdxl``, ``sd3`` or ``flux``.
        network: keyword arguments of the UNet (SDXL) or transformer.
        vae: keyword arguments of ``AutoencoderKL``.
        encoders: per text encoder (in the pipeline's order), ``(kind, config)``: kind
            ``clip`` (``CLIPTextModel``), ``clip-proj`` (``CLIPTextModelWithProjection``) or
            ``t5`` (``T5EncoderModel``); vocabulary and token ids are added from the tokenizer.
        scheduler: keyword arguments of the family's scheduler.
    """

    name: str
    family: str
    network: dict[str, Any]
    vae: dict[str, Any]
    encoders: tuple[tuple[str, dict[str, Any]], ...]
    scheduler: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- full sizes
#: ``UNet2DConditionModel`` of SDXL base (2.57 B parameters).
SDXL_UNET: dict[str, Any] = {
    "sample_size": 128, "in_channels": 4, "out_channels": 4, "center_input_sample": False,
    "flip_sin_to_cos": True, "freq_shift": 0,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (320, 640, 1280), "layers_per_block": 2,
    "transformer_layers_per_block": (1, 2, 10), "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048, "use_linear_projection": True,
    "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816, "downsample_padding": 1,
    "mid_block_scale_factor": 1, "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-5,
    "upcast_attention": False,
}  # fmt: skip
#: SDXL's VAE: SD's architecture, scaling factor 0.13025, float32 under float16 networks.
SDXL_VAE = {**SD_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}
#: OpenCLIP ViT-bigG/14's text tower (SDXL's and SD3's second encoder, 695 M parameters).
BIGG_TEXT: dict[str, Any] = {
    "hidden_size": 1280, "intermediate_size": 5120, "num_attention_heads": 20,
    "num_hidden_layers": 32, "max_position_embeddings": MAX_LENGTH, "hidden_act": "gelu",
    "layer_norm_eps": 1e-5, "projection_dim": 1280,
}  # fmt: skip
#: T5 v1.1 XXL's encoder (SD3's third and FLUX's second encoder, 4.7 B parameters).
T5_XXL: dict[str, Any] = {
    "d_model": 4096, "d_ff": 10240, "d_kv": 64, "num_heads": 64, "num_layers": 24,
    "feed_forward_proj": "gated-gelu", "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128, "layer_norm_epsilon": 1e-6,
}  # fmt: skip
#: SDXL base's ``EulerDiscreteScheduler`` (leading spacing, offset 1; the DDIM-only keys of its
#: ``scheduler_config.json`` left out).
SDXL_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "steps_offset": 1, "timestep_spacing": "leading",
    "interpolation_type": "linear", "use_karras_sigmas": False, "prediction_type": "epsilon",
}  # fmt: skip
#: The 16-channel VAE of SD3 and FLUX (no quant convs), with each family's shift and scale.
_FLOW_VAE = {**SD_VAE, "latent_channels": 16, "sample_size": 1024, "use_quant_conv": False,
             "use_post_quant_conv": False, "force_upcast": True}  # fmt: skip
#: ``SD3Transformer2DModel`` of SD3 medium (2.03 B parameters).
SD3_TRANSFORMER: dict[str, Any] = {
    "sample_size": 128, "patch_size": 2, "in_channels": 16, "num_layers": 24,
    "attention_head_dim": 64, "num_attention_heads": 24, "joint_attention_dim": 4096,
    "caption_projection_dim": 1536, "pooled_projection_dim": 2048, "out_channels": 16,
    "pos_embed_max_size": 192,
}  # fmt: skip
#: ``FluxTransformer2DModel`` of FLUX.1-dev (11.9 B parameters, guidance embedding).
FLUX_TRANSFORMER: dict[str, Any] = {
    "patch_size": 1, "in_channels": 64, "num_layers": 19, "num_single_layers": 38,
    "attention_head_dim": 128, "num_attention_heads": 24, "joint_attention_dim": 4096,
    "pooled_projection_dim": 768, "guidance_embeds": True, "axes_dims_rope": (16, 56, 56),
}  # fmt: skip
#: FLUX.1-dev's flow scheduler (dynamic shift from the token count).
FLUX_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True,
    "base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096,
}  # fmt: skip

_CLIP_L = {k: v for k, v in SD15_TEXT.items()}

FULL = {
    "sdxl": FamilyArchitecture(
        "SDXL base architecture, random weights", "sdxl", SDXL_UNET, SDXL_VAE,
        (("clip", _CLIP_L), ("clip-proj", BIGG_TEXT)), SDXL_SCHEDULER,
    ),
    "sd3": FamilyArchitecture(
        "SD3 medium architecture, random weights", "sd3", SD3_TRANSFORMER,
        {**_FLOW_VAE, "scaling_factor": 1.5305, "shift_factor": 0.0609},
        (("clip-proj", _CLIP_L), ("clip-proj", BIGG_TEXT), ("t5", T5_XXL)),
        {"num_train_timesteps": 1000, "shift": 3.0},
    ),
    "flux": FamilyArchitecture(
        "FLUX.1-dev architecture, random weights", "flux", FLUX_TRANSFORMER,
        {**_FLOW_VAE, "scaling_factor": 0.3611, "shift_factor": 0.1159},
        (("clip", _CLIP_L), ("t5", T5_XXL)), FLUX_SCHEDULER,
    ),
}  # fmt: skip

# ----------------------------------------------------------------------------- tiny sizes
_TINY_VAE = {
    "in_channels": 3, "out_channels": 3, "down_block_types": ("DownEncoderBlock2D",) * 2,
    "up_block_types": ("UpDecoderBlock2D",) * 2, "block_out_channels": (32, 64),
    "layers_per_block": 1, "norm_num_groups": 32, "sample_size": 32,
}  # fmt: skip
_TINY_CLIP = {
    "hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4,
    "num_hidden_layers": 2, "max_position_embeddings": MAX_LENGTH, "projection_dim": 32,
    "hidden_act": "gelu",
}  # fmt: skip
_TINY_T5 = {"d_model": 32, "d_kv": 8, "d_ff": 37, "num_layers": 2, "num_heads": 4,
            "relative_attention_num_buckets": 8}  # fmt: skip

TINY = {
    "sdxl": FamilyArchitecture(
        "tiny SDXL, random weights", "sdxl",
        {"sample_size": 16, "in_channels": 4, "out_channels": 4,
         "block_out_channels": (32, 32, 64), "layers_per_block": 1,
         "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
         "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
         "attention_head_dim": (2, 4, 4), "use_linear_projection": True,
         "addition_embed_type": "text_time", "addition_time_embed_dim": 8,
         "transformer_layers_per_block": (1, 1, 1),
         "projection_class_embeddings_input_dim": 8 * 6 + 32, "cross_attention_dim": 64,
         "norm_num_groups": 32},
        {**_TINY_VAE, "latent_channels": 4, "scaling_factor": 0.13025, "force_upcast": True},
        (("clip", _TINY_CLIP), ("clip-proj", _TINY_CLIP)), SDXL_SCHEDULER,
    ),
    "sd3": FamilyArchitecture(
        "tiny SD3, random weights", "sd3",
        {"sample_size": 16, "patch_size": 2, "in_channels": 16, "num_layers": 1,
         "attention_head_dim": 8, "num_attention_heads": 4, "caption_projection_dim": 32,
         "joint_attention_dim": 32, "pooled_projection_dim": 64, "out_channels": 16,
         "pos_embed_max_size": 16},
        {**_TINY_VAE, "latent_channels": 16, "scaling_factor": 1.5305, "shift_factor": 0.0609},
        (("clip-proj", _TINY_CLIP), ("clip-proj", _TINY_CLIP), ("t5", _TINY_T5)),
        {"num_train_timesteps": 1000, "shift": 3.0},
    ),
    "flux": FamilyArchitecture(
        "tiny FLUX.1-dev, random weights", "flux",
        {"patch_size": 1, "in_channels": 64, "num_layers": 1, "num_single_layers": 1,
         "attention_head_dim": 16, "num_attention_heads": 2, "joint_attention_dim": 32,
         "pooled_projection_dim": 32, "guidance_embeds": True, "axes_dims_rope": (4, 4, 8)},
        {**_TINY_VAE, "latent_channels": 16, "scaling_factor": 0.3611, "shift_factor": 0.1159},
        (("clip", _TINY_CLIP), ("t5", _TINY_T5)), FLUX_SCHEDULER,
    ),
}  # fmt: skip

#: A tiny SD 1.x (three UNet levels, every one with cross-attention: LEDITS++ reads
#: cross-attention maps at 1/4 of the latent side).
SD_TINY = Architecture(
    "tiny SD 1.x, random weights",
    unet={"sample_size": 8, "in_channels": 4, "out_channels": 4,
          "block_out_channels": (32, 32, 64), "layers_per_block": 1,
          "down_block_types": ("CrossAttnDownBlock2D",) * 3,
          "up_block_types": ("CrossAttnUpBlock2D",) * 3, "cross_attention_dim": 32,
          "attention_head_dim": 8, "norm_num_groups": 32},
    vae={**_TINY_VAE, "latent_channels": 4},
    text={k: v for k, v in _TINY_CLIP.items() if k not in ("projection_dim", "hidden_act")},
)  # fmt: skip


def sd_parameter_count(arch: Architecture) -> dict[str, int]:
    """:func:`parameter_count` of an SD 1.x :class:`~nidiff.bench._sd_random.Architecture`
    (CLIP's vocabulary: the letter-level tokenizer's), on the ``meta`` device."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    def n(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    vocab = len(
        build_tokenizer(int(arch.text.get("max_position_embeddings", MAX_LENGTH))).get_vocab()
    )
    with torch.device("meta"):
        unet, vae = UNet2DConditionModel(**arch.unet), AutoencoderKL(**arch.vae)
        text = _encoder("clip", arch.text, vocab)
    return {"network": n(unet), "vae": n(vae), "text": n(text)}


#: ``ARCHITECTURES[arch][family]``: ``full`` (published sizes) or ``tiny`` (tests).
ARCHITECTURES: dict[str, dict[str, FamilyArchitecture]] = {"full": FULL, "tiny": TINY}


def t5_tokenizer(max_length: int = 512) -> Any:
    """A ``T5Tokenizer`` over a hand-written letter-level Unigram vocabulary (the special tokens,
    every letter, digit and a few punctuation marks, alone and as a word start ``▁x``)."""
    from transformers import T5Tokenizer

    pieces = list(string.ascii_lowercase + string.digits + ".,!?'-")
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(p, -3.0) for p in pieces] + [("▁" + p, -2.5) for p in pieces]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=max_length)


def _encoder(kind: str, config: dict[str, Any], vocab: int) -> Any:
    import transformers as tf

    if kind == "t5":
        cfg = tf.T5Config(**config, vocab_size=vocab, pad_token_id=0, eos_token_id=1,
                          decoder_start_token_id=0)  # fmt: skip
        return tf.T5EncoderModel(cfg)
    cfg = tf.CLIPTextConfig(**config, vocab_size=vocab, bos_token_id=0, eos_token_id=1,
                            pad_token_id=1)  # fmt: skip
    return (tf.CLIPTextModelWithProjection if kind == "clip-proj" else tf.CLIPTextModel)(cfg)


def _network(arch: FamilyArchitecture) -> Any:
    import diffusers

    cls = {"sdxl": diffusers.UNet2DConditionModel, "sd3": diffusers.SD3Transformer2DModel,
           "flux": diffusers.FluxTransformer2DModel}[arch.family]  # fmt: skip
    return cls(**arch.network)


def _tokenizers(arch: FamilyArchitecture) -> list[Any]:
    return [
        t5_tokenizer(T5_LENGTH[arch.family]) if kind == "t5" else build_tokenizer(MAX_LENGTH)
        for kind, _ in arch.encoders
    ]


def _networks(arch: FamilyArchitecture, tokenizers: list[Any]) -> dict[str, Any]:
    from diffusers import AutoencoderKL

    encoders = [
        _encoder(kind, cfg, len(tok.get_vocab()))
        for (kind, cfg), tok in zip(arch.encoders, tokenizers, strict=True)
    ]
    return {"network": _network(arch), "vae": AutoencoderKL(**arch.vae), "encoders": encoders}


def parameter_count(arch: FamilyArchitecture) -> dict[str, int]:
    """Parameters of each network of ``arch`` (``network``, ``vae``, ``text``: all encoders),
    counted on the ``meta`` device: nothing is allocated."""

    def n(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    tokenizers = _tokenizers(arch)
    with torch.device("meta"):
        nets = _networks(arch, tokenizers)
    return {"network": n(nets["network"]), "vae": n(nets["vae"]),
            "text": sum(n(e) for e in nets["encoders"])}  # fmt: skip


def available_bytes(device: torch.device) -> int:
    """Free memory on ``device``: CUDA's free bytes, else the host's ``MemAvailable``."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def check_memory(
    label: str,
    params: int,
    dtype: torch.dtype,
    device: torch.device,
    available: Callable[[torch.device], int] = available_bytes,
) -> int:
    """The parameters' bytes in ``dtype``; ``ValueError`` with one line naming the estimate and
    the available memory when they exceed what ``device`` has free (before anything is built;
    the CLI prints it and exits 2)."""
    need = params * torch.empty((), dtype=dtype).element_size()
    have = available(device)
    if need > have:
        raise ValueError(
            f"{label} at {str(dtype).removeprefix('torch.')}: its {params / 1e9:.2f} B "
            f"parameters alone take ~{need / 2**30:.1f} GiB, more than the {have / 2**30:.1f} "
            f"GiB available on {device}; use a device with more memory or a smaller dtype"
        )
    return need


def build_space(
    arch: FamilyArchitecture, seed: int, device: torch.device, dtype: torch.dtype
) -> Any:
    """The nidiff adapter of ``arch`` (``StableDiffusionXL``, ``StableDiffusion3`` or ``Flux``)
    on ``device`` in ``dtype``, weights drawn on the CPU from ``seed`` (the global RNG is forked,
    not disturbed)."""
    from diffusers import EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler

    tokenizers = _tokenizers(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        nets = _networks(arch, tokenizers)
    net, vae, enc = nets["network"].eval(), nets["vae"].eval(), [e.eval() for e in nets["encoders"]]
    kw = {"device": device, "dtype": dtype}
    if arch.family == "sdxl":
        from nidiff.models.sdxl import StableDiffusionXL

        return StableDiffusionXL(
            unet=net, vae=vae, text_encoder=enc[0], text_encoder_2=enc[1],
            tokenizer=tokenizers[0], tokenizer_2=tokenizers[1],
            scheduler=EulerDiscreteScheduler(**arch.scheduler), **kw,
        )  # fmt: skip
    scheduler = FlowMatchEulerDiscreteScheduler(**arch.scheduler)
    if arch.family == "sd3":
        from nidiff.models.sd3 import StableDiffusion3

        t5 = len(enc) > 2
        return StableDiffusion3(
            transformer=net, vae=vae, text_encoder=enc[0], text_encoder_2=enc[1],
            tokenizer=tokenizers[0], tokenizer_2=tokenizers[1], scheduler=scheduler,
            text_encoder_3=enc[2] if t5 else None, tokenizer_3=tokenizers[2] if t5 else None,
            max_sequence_length=T5_LENGTH["sd3"], **kw,
        )  # fmt: skip
    from nidiff.models.flux import Flux

    return Flux(
        transformer=net, vae=vae, text_encoder=enc[0], text_encoder_2=enc[1],
        tokenizer=tokenizers[0], tokenizer_2=tokenizers[1], scheduler=scheduler,
        max_sequence_length=T5_LENGTH["flux"], **kw,
    )  # fmt: skip


def without_t5(arch: FamilyArchitecture) -> FamilyArchitecture:
    """SD3 without its T5 encoder (as diffusers allows: zeros in its place)."""
    from dataclasses import replace

    if arch.family != "sd3":
        raise ValueError(f"t5=false applies to sd3 only, not {arch.family}")
    encoders = tuple(e for e in arch.encoders if e[0] != "t5")
    return replace(arch, name=arch.name + " without T5", encoders=encoders)
