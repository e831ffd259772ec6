r"""nidiff's own ``UNet2D``: the part of diffusers' ``UNet2DModel`` that nidiff's models use, in
plain PyTorch, so that loading a bundled model does not import diffusers.

Why: importing diffusers pulls in ``torch._dynamo``, transformers, scipy and sympy — several
seconds on a laptop for a network that computes in tens of milliseconds; a one-image ``nidiff
edit`` spent most of its wall time there. This module rebuilds the same network from the same
config and loads the same safetensors weights:

* the **same module tree** (attribute names, order), hence the same state-dict keys;
* the **same construction order** of every layer, hence, from one ``torch.manual_seed``, the same
  initial weights as ``diffusers.UNet2DModel.from_config`` (training is unchanged);
* the **same operations in the same order** as diffusers 0.42's ``UNet2DModel`` with
  ``AttnProcessor2_0``, hence bit-identical outputs and gradients.

``tests/models/test_unet.py`` checks all three against diffusers. Covered: positional time
embedding, ``DownBlock2D`` / ``AttnDownBlock2D`` down, ``UpBlock2D`` / ``AttnUpBlock2D`` up, the
``UNetMidBlock2D`` (or none), conv down/upsampling, SiLU, ``"default"`` time conditioning and a
``num_class_embeds`` class embedding. :func:`unsupported` names what a config needs beyond that;
:func:`nidiff.models.diffusers_unet.unet_from_config` then builds diffusers' class instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DEFAULTS", "UNet2D", "UNet2DOutput", "unsupported"]

#: ``diffusers.UNet2DModel.__init__``'s defaults (diffusers 0.42; checked by the tests).
DEFAULTS: dict[str, Any] = {
    "sample_size": None,
    "in_channels": 3,
    "out_channels": 3,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "time_embedding_dim": None,
    "freq_shift": 0,
    "flip_sin_to_cos": True,
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    "mid_block_type": "UNetMidBlock2D",
    "up_block_types": ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (224, 448, 672, 896),
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "downsample_padding": 1,
    "downsample_type": "conv",
    "upsample_type": "conv",
    "dropout": 0.0,
    "act_fn": "silu",
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "attn_norm_num_groups": None,
    "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default",
    "add_attention": True,
    "class_embed_type": None,
    "num_class_embeds": None,
    "num_train_timesteps": None,
}

# The values this module implements, for the keys where diffusers offers more.
_COVERED: dict[str, tuple[Any, ...]] = {
    "time_embedding_type": ("positional",),
    "mid_block_type": ("UNetMidBlock2D", None),
    "downsample_type": ("conv",),
    "upsample_type": ("conv",),
    "act_fn": ("silu", "swish"),
    "resnet_time_scale_shift": ("default",),
    "class_embed_type": (None,),
}
_DOWN, _UP = ("DownBlock2D", "AttnDownBlock2D"), ("UpBlock2D", "AttnUpBlock2D")


def unsupported(config: Mapping[str, Any]) -> str | None:
    """Why :class:`UNet2D` cannot build ``config`` (a ``UNet2DModel`` config), or ``None``.

    Keys starting with ``_`` are metadata and ignored. A key ``UNet2DModel`` does not take, or a
    value of a covered key that this module does not implement, is a reason.
    """
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        return f"_class_name={config['_class_name']!r} is not UNet2DModel"
    cfg = {k: v for k, v in config.items() if not k.startswith("_")}
    extra = sorted(set(cfg) - set(DEFAULTS))
    if extra:
        return f"unknown UNet2DModel option {extra[0]!r}"
    cfg = {**DEFAULTS, **cfg}
    for key, values in _COVERED.items():
        if cfg[key] not in values:
            return f"{key}={cfg[key]!r}"
    bad = [b for b in cfg["down_block_types"] if b not in _DOWN]
    bad += [b for b in cfg["up_block_types"] if b not in _UP]
    return f"block type {bad[0]!r}" if bad else None


class _Config(dict):
    """The config as diffusers exposes it: a dict whose keys are also attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class UNet2DOutput:
    """The forward's result, like diffusers': the prediction ``(B, out_channels, H, W)``."""

    sample: Tensor

    def __getitem__(self, key: int | str) -> Tensor:
        """``out[0]`` or ``out["sample"]``, as diffusers' outputs allow."""
        return {0: self.sample, "sample": self.sample}[key]


def _timestep_embedding(t: Tensor, dim: int, flip_sin_to_cos: bool, shift: float) -> Tensor:
    """DDPM's sinusoidal embedding ``(B, dim)`` of (possibly fractional) times ``t`` ``(B,)``."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(0, half, dtype=torch.float32, device=t.device)
    exponent = exponent / (half - shift)
    emb = t[:, None].float() * torch.exp(exponent)[None, :]
    emb = 1 * emb
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    return F.pad(emb, (0, 1, 0, 0)) if dim % 2 == 1 else emb


class _TimestepEmbedding(nn.Module):
    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class _Resnet(nn.Module):
    """diffusers' ``ResnetBlock2D`` with ``time_embedding_norm="default"``."""

    def __init__(self, c_in: int, c_out: int, temb: int, groups: int, eps: float, p: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in, eps=eps, affine=True)
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1)
        self.time_emb_proj = nn.Linear(temb, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out, eps=eps, affine=True)
        self.dropout = nn.Dropout(p)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=3, stride=1, padding=1)
        self.nonlinearity = nn.SiLU()
        self.conv_shortcut = nn.Conv2d(c_in, c_out, 1, 1, 0) if c_in != c_out else None
        self.output_scale_factor = 1.0

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(self.nonlinearity(self.norm1(x)))
        h = h + self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None]
        h = self.conv2(self.dropout(self.nonlinearity(self.norm2(h))))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x.contiguous() if self.training else x)
        return (x + h) / self.output_scale_factor


class _Attention(nn.Module):
    """diffusers' spatial self-``Attention`` (group norm, residual) under ``AttnProcessor2_0``."""

    def __init__(self, c: int, head_dim: int, groups: int | None, eps: float, rescale: float):
        super().__init__()
        self.heads = c // head_dim
        inner = head_dim * self.heads
        self.group_norm = nn.GroupNorm(groups, c, eps=eps, affine=True) if groups else None
        self.to_q = nn.Linear(c, inner, bias=True)
        self.to_k = nn.Linear(c, inner, bias=True)
        self.to_v = nn.Linear(c, inner, bias=True)
        self.to_out = nn.ModuleList([nn.Linear(inner, c, bias=True), nn.Dropout(0.0)])
        self.rescale_output_factor = rescale

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        h = x.view(B, C, H * W).transpose(1, 2)
        if self.group_norm is not None:
            h = self.group_norm(h.transpose(1, 2)).transpose(1, 2)
        q, k, v = self.to_q(h), self.to_k(h), self.to_v(h)
        d = k.shape[-1] // self.heads
        q, k, v = (u.view(B, -1, self.heads, d).transpose(1, 2) for u in (q, k, v))
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False)
        h = h.transpose(1, 2).reshape(B, -1, self.heads * d).to(q.dtype)
        h = self.to_out[1](self.to_out[0](h))
        h = h.transpose(-1, -2).reshape(B, C, H, W)
        return (h + x) / self.rescale_output_factor


class _Downsample(nn.Module):
    def __init__(self, c: int, padding: int):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(c, c, kernel_size=3, stride=2, padding=padding)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)) if self.padding == 0 else x)


class _Upsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] >= 64 or x.numel() * 2 > 2**31:
            x = x.contiguous()
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Block(nn.Module):
    """A down, mid or up block: resnets, each optionally followed by an attention layer."""

    def __init__(self, pairs: list[tuple[_Resnet, _Attention | None]], first: _Resnet | None):
        super().__init__()
        attentions = [a for _, a in pairs]
        if any(a is not None for a in attentions):
            self.attentions = nn.ModuleList(attentions)
        resnets = ([first] if first is not None else []) + [r for r, _ in pairs]
        self.resnets = nn.ModuleList(resnets)

    def _layers(self) -> list[tuple[nn.Module, nn.Module | None]]:
        attentions = getattr(self, "attentions", [None] * len(self.resnets))
        return list(zip(self.resnets[-len(attentions) :], attentions, strict=True))


class UNet2D(nn.Module):
    """A ``diffusers.UNet2DModel`` without diffusers (see the module docstring).

    Built from the keyword arguments of ``UNet2DModel`` (missing ones take its defaults);
    ``forward(sample, timestep, class_labels=None, return_dict=True)`` as diffusers'.
    ``config`` (a dict with attribute access), ``device`` and ``dtype`` as on a diffusers model.

    Raises:
        ValueError: a config this module does not cover (:func:`unsupported`'s reason).
    """

    #: The diffusers class this stands in for (written as ``_class_name`` into checkpoints).
    diffusers_class = "UNet2DModel"

    def __init__(self, **kwargs: Any):
        super().__init__()
        reason = unsupported(kwargs)
        if reason is not None:
            raise ValueError(f"nidiff's UNet2D does not implement {reason}")
        self.config = c = _Config({**DEFAULTS, **kwargs})
        ch, eps, groups, p = list(c.block_out_channels), c.norm_eps, c.norm_num_groups, c.dropout
        temb = c.time_embedding_dim or ch[0] * 4
        if not len(c.down_block_types) == len(c.up_block_types) == len(ch):
            raise ValueError(
                "down_block_types, up_block_types and block_out_channels differ in length"
            )
        self.conv_in = nn.Conv2d(c.in_channels, ch[0], kernel_size=3, padding=(1, 1))
        self.time_embedding = _TimestepEmbedding(ch[0], temb)
        n = c.num_class_embeds
        self.class_embedding = nn.Embedding(n, temb) if n is not None else None

        def head(c_out: int) -> int:
            return c.attention_head_dim if c.attention_head_dim is not None else c_out

        def layer(kind: str, c_in: int, c_out: int, groups_attn: int | None, scale: float):
            res = _Resnet(c_in, c_out, temb, groups, eps, p)
            if scale != 1:
                res.output_scale_factor = float(scale)
            att = (
                _Attention(c_out, head(c_out), groups_attn, eps, scale) if "Attn" in kind else None
            )
            return res, att

        # registered in diffusers' order (down, up, mid: its mid block is assigned last)
        self.down_blocks, self.up_blocks = nn.ModuleList(), nn.ModuleList()
        c_out = ch[0]
        for i, kind in enumerate(c.down_block_types):
            c_in, c_out = c_out, ch[i]
            pairs = [layer(kind, c_in if j == 0 else c_out, c_out, groups, 1.0)
                     for j in range(c.layers_per_block)]  # fmt: skip
            block = _Block(pairs, None)
            if i < len(ch) - 1:
                block.downsamplers = nn.ModuleList([_Downsample(c_out, c.downsample_padding)])
            self.down_blocks.append(block)
        self.mid_block = None
        if c.mid_block_type is not None:
            # diffusers builds the mid block's first resnet, then its attention, then the second
            scale, c_mid = c.mid_block_scale_factor, ch[-1]
            g_attn = groups if c.attn_norm_num_groups is None else c.attn_norm_num_groups
            first = layer("", c_mid, c_mid, None, scale)[0]
            att = _Attention(c_mid, head(c_mid), g_attn, eps, scale) if c.add_attention else None
            second = layer("", c_mid, c_mid, None, scale)[0]
            self.mid_block = _Block([(second, att)], first)
            if att is None:
                self.mid_block.attentions = nn.ModuleList([None])  # type: ignore[list-item]
        rev = ch[::-1]
        c_out = rev[0]
        for i, kind in enumerate(c.up_block_types):
            prev, c_out, c_skip = c_out, rev[i], rev[min(i + 1, len(ch) - 1)]
            n_layers = c.layers_per_block + 1
            pairs = [
                layer(kind, (prev if j == 0 else c_out) + (c_skip if j == n_layers - 1 else c_out),
                      c_out, groups, 1.0)
                for j in range(n_layers)
            ]  # fmt: skip
            block = _Block(pairs, None)
            if i < len(ch) - 1:
                block.upsamplers = nn.ModuleList([_Upsample(c_out)])
            self.up_blocks.append(block)
        self.conv_norm_out = nn.GroupNorm(num_channels=ch[0], num_groups=groups, eps=eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(ch[0], c.out_channels, kernel_size=3, padding=1)

    @property
    def device(self) -> torch.device:
        """The device of the first parameter (like diffusers' ``ModelMixin.device``)."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the first floating-point parameter (like ``ModelMixin.dtype``)."""
        return next(q.dtype for q in self.parameters() if q.is_floating_point())

    def forward(
        self,
        sample: Tensor,
        timestep: Tensor | float | int,
        class_labels: Tensor | None = None,
        return_dict: bool = True,
    ) -> UNet2DOutput | tuple[Tensor]:
        """The prediction for ``sample`` ``(B, C, H, W)`` at diffusers ``timestep`` (scalar or
        ``(B,)``); ``class_labels`` ``(B,)`` for a class-conditional network."""
        c = self.config
        if c.center_input_sample:
            sample = 2 * sample - 1.0
        t = timestep
        if not torch.is_tensor(t):
            t = torch.tensor([t], dtype=torch.long, device=sample.device)
        elif t.ndim == 0:
            t = t[None].to(sample.device)
        t = t * torch.ones(sample.shape[0], dtype=t.dtype, device=t.device)
        t_emb = _timestep_embedding(t, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift)
        emb = self.time_embedding(t_emb.to(dtype=self.dtype))
        if self.class_embedding is not None:
            if class_labels is None:
                raise ValueError("class_labels should be provided when doing class conditioning")
            emb = emb + self.class_embedding(class_labels).to(dtype=self.dtype)
        elif class_labels is not None:
            raise ValueError(
                "class_embedding needs to be initialized in order to use class conditioning"
            )
        h = self.conv_in(sample)
        skips: tuple[Tensor, ...] = (h,)
        for block in self.down_blocks:
            for res, att in block._layers():
                h = res(h, emb)
                h = att(h) if att is not None else h
                skips += (h,)
            if hasattr(block, "downsamplers"):
                h = block.downsamplers[0](h)
                skips += (h,)
        if self.mid_block is not None:
            h = self.mid_block.resnets[0](h, emb)
            for res, att in self.mid_block._layers():
                h = res(att(h) if att is not None else h, emb)
        for block in self.up_blocks:
            for res, att in block._layers():
                h = res(torch.cat([h, skips[-1]], dim=1), emb)
                skips = skips[:-1]
                h = att(h) if att is not None else h
            if hasattr(block, "upsamplers"):
                h = block.upsamplers[0](h)
        h = self.conv_out(self.conv_act(self.conv_norm_out(h)))
        return UNet2DOutput(sample=h) if return_dict else (h,)
