"""The attention processor of :mod:`.control`: diffusers' attention computed explicitly where
an :class:`~.edit.AttentionStep` must read or replace the probabilities."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .edit import AttentionRecord, AttentionStep
from .tokens import TokenMap

__all__ = ["ControlledAttnProcessor"]


class ControlledAttnProcessor:
    r"""A diffusers attention processor that computes the attention probabilities explicitly,
    so that an :class:`AttentionStep` can read and replace them.

    Without a step it is diffusers' default computation (``scaled_dot_product_attention``).
    With one, :math:`A = \mathrm{softmax}(QK^\top\cdot\text{scale} + \text{mask})`
    ``(B, heads, N, K)`` (softmax in at least float32) is computed in cross-attention layers and
    in self-attention layers with ``N <= self_max_tokens``, edited (module docstring), passed to
    the observer, and applied to the values.

    Args:
        name: the layer's key in ``unet.attn_processors`` (reported to the observer).
    """

    def __init__(self, name: str):
        self.name = name

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor | None = None,
        attention_mask: Tensor | None = None,
        temb: Tensor | None = None,
        p2p: AttentionStep | None = None,
    ) -> Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        spatial = hidden_states.shape if hidden_states.ndim == 4 else None
        if spatial is not None:  # (B, C, H, W) -> (B, HW, C)
            hidden_states = hidden_states.flatten(2).transpose(1, 2)
        is_cross = encoder_hidden_states is not None
        context = encoder_hidden_states if is_cross else hidden_states
        B, K = context.shape[0], context.shape[1]
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, K, B)
            attention_mask = attention_mask.view(B, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if is_cross and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        key, value = attn.to_k(context), attn.to_v(context)
        q, k, v = (_heads(u, attn.heads) for u in (query, key, value))
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        by_size = p2p is None or p2p.edit.self_layers is None
        if not (by_size or is_cross) and p2p.inject_self and self.name in p2p.edit.self_layers:
            q, k = _from_sources(q, p2p), _from_sources(k, p2p)  # PnP: the source's q, k
        if p2p is None:
            explicit = False
        elif is_cross:
            explicit = p2p.edit.cross_maps
        else:
            explicit = by_size and q.shape[2] <= p2p.edit.self_max_tokens
        if explicit:
            dtype = torch.promote_types(q.dtype, torch.float32)  # softmax in >= float32
            scores = (q.to(dtype) @ k.to(dtype).transpose(-1, -2)) * attn.scale
            if attention_mask is not None:
                scores = scores + attention_mask.to(dtype)
            probs = _control(scores.softmax(dim=-1), p2p, is_cross)
            if p2p.edit.observer is not None:
                p2p.edit.observer(AttentionRecord(self.name, is_cross, probs, p2p))
            out = probs @ v.to(dtype)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask)
        out = out.transpose(1, 2).reshape(B, -1, out.shape[1] * out.shape[3]).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))  # linear projection, dropout
        if spatial is not None:
            out = out.transpose(1, 2).reshape(spatial)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def _from_sources(u: Tensor, step: AttentionStep) -> Tensor:
    """``u`` ``(B, ...)`` with every target row replaced by its source row (a new tensor)."""
    tgt, src = step.pairs(u.shape[0], u.device)
    if tgt.numel() == 0:
        return u
    out = u.clone()
    out[tgt] = u[src]
    return out


def _heads(u: Tensor, heads: int) -> Tensor:
    """``(B, N, heads·d)`` → ``(B, heads, N, d)``."""
    B, N, inner = u.shape
    return u.view(B, N, heads, inner // heads).transpose(1, 2)


def _control(probs: Tensor, step: AttentionStep, is_cross: bool) -> Tensor:
    """The attention probabilities ``(B, heads, N, K)`` after the step's edit (a new tensor
    where anything changes; source and free rows are never changed)."""
    edit = step.edit
    tgt, src = step.pairs(probs.shape[0], probs.device)
    if tgt.numel() == 0:
        return probs
    if is_cross:
        if not step.replace_cross and edit.weights is None:
            return probs
        maps = probs[tgt]
        if step.replace_cross:
            tmap = edit.token_map or TokenMap.identity(probs.shape[-1])
            if tmap.length != probs.shape[-1]:
                raise ValueError(
                    f"the token map has length {tmap.length} but the layer attends to "
                    f"{probs.shape[-1]} tokens"
                )
            maps = tmap.apply(probs[src], maps)
        if edit.weights is not None:
            maps = maps * edit.weights.to(device=maps.device, dtype=maps.dtype)
    else:
        if not step.inject_self:
            return probs
        maps = probs[src]
    out = probs.clone()
    out[tgt] = maps
    return out
