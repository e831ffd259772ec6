r"""Prompt-to-Prompt attention control of a diffusers UNet, without hidden state.

Prompt-to-Prompt (Hertz et al., 2022, Sec. 3) runs a source and a target prompt side by side in
one batch and, during the first steps, gives the target the source's attention maps:

* **cross-attention** (query pixels × text tokens): for model times ``t > cross_t`` the target's
  maps become :math:`\alpha\odot(M_tP) + (1-\alpha)\odot M^*_t` (:class:`~.tokens.TokenMap`:
  word swap or refinement);
* **re-weighting** (P2P Sec. 3.2): at every step the chosen target tokens' columns of the
  cross-attention *probabilities* are multiplied by their factor :math:`c` **after** the softmax
  and after any replacement, without renormalising (as P2P does; ``c = 0`` removes a word);
* **self-attention** (pixels × pixels): for ``t > self_t`` the target's maps become the
  source's, in layers with at most ``self_max_tokens`` query pixels (P2P's ``16²``: the
  coarse layers, which carry the layout).

**No step counter.** Every network call carries what its attention layers must do. The caller
puts a per-row *source offset* in the condition (:func:`pair_cond`): row ``r`` with offset
``o != 0`` is a controlled target whose source is row ``r + o``; offset ``0`` is a free row (a
source, or any unconditional row). Offsets are relative, so they survive classifier-free
guidance concatenating ``[cond, null]`` in either order, and :func:`plain_cond` gives
unconditional rows offset 0: **only the conditional branch is controlled**. The model wrapper
:class:`ControlledDenoiser` sees the call's time ``t`` and turns the offsets and the
:class:`AttentionEdit` into an :class:`AttentionStep` (``replace_cross = t > cross_t``,
``inject_self = t > self_t``), passed to the layers as the UNet's ``cross_attention_kwargs``.
Step windows are thresholds in *time*, computed from the explicit grid by
:func:`window_threshold`, so the same edit behaves the same on any replay.

:func:`controlled_attention` installs :class:`ControlledAttnProcessor` in every attention layer
of the UNet and restores the original processors on exit (also on an exception). Installed
processors with no step (the UNet called without a controlled condition) compute attention
exactly as diffusers' default processor does (``scaled_dot_product_attention``); with a step
they compute the probabilities explicitly (cross-attention layers, and self-attention layers
small enough to inject) so they can be read and replaced.

This module never imports diffusers; it uses only the attributes of diffusers' ``Attention``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..._checks import check_skip
from ...schedule import TimeGrid
from ..contract import Denoiser, time_per_sample
from .tokens import TokenMap

__all__ = [
    "OFFSET_KEY",
    "AttentionEdit",
    "AttentionRecord",
    "AttentionStep",
    "ControlledAttnProcessor",
    "ControlledDenoiser",
    "controlled_attention",
    "pair_cond",
    "plain_cond",
    "window_threshold",
]

#: The ``cross_attention_kwargs`` entry of a condition that holds the per-row source offsets.
OFFSET_KEY = "p2p_source_offset"


@dataclass(frozen=True, eq=False)
class AttentionRecord:
    """One attention layer's probabilities in one controlled call, after control.

    Attributes:
        layer: the layer's processor name in ``unet.attn_processors``.
        is_cross: cross-attention (keys are text tokens) or self-attention.
        probs: ``(B, heads, N, K)``: ``N`` query pixels, ``K`` keys (tokens or pixels).
        step: the call's :class:`AttentionStep`.
    """

    layer: str
    is_cross: bool
    probs: Tensor
    step: AttentionStep


#: ``observer(record)``: called for every explicitly computed attention layer (a read-only view).
Observer = Callable[[AttentionRecord], None]


@dataclass(frozen=True, eq=False)
class AttentionEdit:
    r"""What Prompt-to-Prompt does to the target rows (module docstring).

    Attributes:
        token_map: source → target cross-attention correspondence; ``None`` is the identity
            (prompts with the same tokens, e.g. for re-weighting alone).
        cross_t: replace cross-attention maps at model times ``t > cross_t`` (``inf``: never;
            :func:`window_threshold` turns a fraction of the steps into this time).
        self_t: inject self-attention maps at model times ``t > self_t``.
        weights: re-weighting factors ``(L,)`` for the target's tokens (after the softmax), or
            ``None``; see :func:`~.tokens.token_weights`.
        self_max_tokens: inject self-attention only in layers with at most this many query
            pixels (P2P: ``16² = 256``, the 16×16 and 8×8 layers of SD at 512²).
        observer: optional ``observer(AttentionRecord)`` to read the maps (tests, figures).
    """

    token_map: TokenMap | None = None
    cross_t: float = math.inf
    self_t: float = math.inf
    weights: Tensor | None = None
    self_max_tokens: int = 256
    observer: Observer | None = None

    def __post_init__(self) -> None:
        for name in ("cross_t", "self_t"):
            if math.isnan(float(getattr(self, name))):
                raise ValueError(f"{name} must be a time or ±inf, not NaN")
        if self.weights is not None and self.weights.ndim != 1:
            raise ValueError(f"weights must be (L,), got {tuple(self.weights.shape)}")
        if isinstance(self.self_max_tokens, bool) or int(self.self_max_tokens) < 0:
            raise ValueError(f"self_max_tokens={self.self_max_tokens!r} must be >= 0")

    def at(self, t: float, offsets: Tensor) -> AttentionStep:
        """The :class:`AttentionStep` of a call at model time ``t`` with row offsets ``(B,)``."""
        return AttentionStep(
            edit=self,
            offsets=offsets,
            replace_cross=float(t) > self.cross_t,
            inject_self=float(t) > self.self_t,
        )


@dataclass(frozen=True, eq=False)
class AttentionStep:
    """What the attention layers do in one network call (built by :class:`ControlledDenoiser`).

    Attributes:
        edit: the :class:`AttentionEdit`.
        offsets: ``(B,)`` integers; row ``r`` with ``offsets[r] != 0`` is a target whose source
            is row ``r + offsets[r]``.
        replace_cross: replace the targets' cross-attention maps in this call.
        inject_self: inject the sources' self-attention maps in this call.
    """

    edit: AttentionEdit
    offsets: Tensor
    replace_cross: bool
    inject_self: bool
    # every attention layer of one call asks for the same pairs: computed (and checked, which
    # reads the device) once per (B, device)
    _pairs: dict[tuple[int, torch.device], tuple[Tensor, Tensor]] = field(
        default_factory=dict, repr=False
    )

    def pairs(self, B: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """Target rows and their source rows, ``(n,)`` each; raises on a source out of range."""
        key = (B, torch.device(device))
        if key not in self._pairs:
            self._pairs[key] = self._find_pairs(B, key[1])
        return self._pairs[key]

    def _find_pairs(self, B: int, device: torch.device) -> tuple[Tensor, Tensor]:
        off = self.offsets.to(device=device, dtype=torch.long).reshape(-1)
        if off.shape[0] != B:
            raise ValueError(f"{off.shape[0]} source offsets for a batch of {B} rows")
        tgt = torch.nonzero(off).reshape(-1)
        src = tgt + off[tgt]
        if bool(((src < 0) | (src >= B)).any()) or bool((off[src] != 0).any()):
            raise ValueError("a source offset points outside the batch or at another target")
        return tgt, src


def window_threshold(grid: TimeGrid, fraction: float, skip: int = 0) -> float:
    r"""The time threshold that makes a window of the first ``fraction`` of the steps run.

    The run takes grid steps ``skip .. N-1``; the window is its first
    ``k = round(fraction · (N - skip))`` steps, and the threshold lies halfway through step
    ``skip + k - 1``, so ``t > threshold`` holds exactly at those steps' model times (robust to
    float rounding of the times). ``k = 0`` gives ``inf`` (no step).

    Raises:
        ValueError: for ``fraction`` outside ``[0, 1]`` or ``skip`` outside ``[0, N)``.
    """
    n = len(grid)
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"fraction={fraction!r} must lie in [0, 1]")
    skip = check_skip(skip, n)
    k = round(float(fraction) * (n - skip))
    if k == 0:
        return math.inf
    j = skip + k - 1
    return 0.5 * (float(grid.t[j]) + float(grid.t_prev[j]))


def pair_cond(source: Tensor, target: Tensor) -> dict[str, Any]:
    """The condition of a controlled batch ``[source rows; target rows]``: embeddings
    ``(2B, L, D)`` and offsets ``-B`` on the target rows (row ``B + i`` is row ``i``'s target).

    Args:
        source, target: text embeddings ``(B, L, D)`` of the same shape.
    """
    if source.shape != target.shape or source.ndim != 3:
        raise ValueError(
            f"source and target embeddings must both be (B, L, D), got {tuple(source.shape)} "
            f"and {tuple(target.shape)}"
        )
    B = source.shape[0]
    offsets = torch.cat([torch.zeros(B, dtype=torch.long), torch.full((B,), -B)])
    return {
        "encoder_hidden_states": torch.cat([source, target]),
        "cross_attention_kwargs": {OFFSET_KEY: offsets.to(source.device)},
    }


def plain_cond(states: Tensor) -> dict[str, Any]:
    """An uncontrolled condition (offsets 0) with :func:`pair_cond`'s layout, e.g. the null
    prompt of guidance, so that it concatenates with a controlled one."""
    B = states.shape[0]
    offsets = torch.zeros(B, dtype=torch.long, device=states.device)
    return {"encoder_hidden_states": states, "cross_attention_kwargs": {OFFSET_KEY: offsets}}


class ControlledDenoiser:
    """A model ``out = model(x_t, t, cond)`` whose calls carry an :class:`AttentionStep`.

    A condition with source offsets (:func:`pair_cond`, :func:`plain_cond`, or their guidance
    concatenation) is rewritten for the call: the offsets and ``edit`` at the call's time ``t``
    become ``cross_attention_kwargs={"p2p": AttentionStep}``. Any other condition passes through
    unchanged (uncontrolled). The UNet's processors must be installed with
    :func:`controlled_attention`; a controlled call without them raises ``ValueError`` (when
    ``model.unet`` is there to check) rather than silently running uncontrolled.

    Args:
        model: a :class:`~nidiff.models.diffusers_unet.ConditionalUNetDenoiser` (it forwards the
            dict's keys to the UNet).
        edit: the :class:`AttentionEdit`.
    """

    def __init__(self, model: Denoiser, edit: AttentionEdit):
        self.model = model
        self.edit = edit

    def __call__(self, x_t: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        kwargs = cond.get("cross_attention_kwargs") if isinstance(cond, dict) else None
        if not isinstance(kwargs, dict) or OFFSET_KEY not in kwargs:
            return self.model(x_t, t, cond)
        t_b = time_per_sample(torch.as_tensor(t), x_t)
        if not bool((t_b == t_b[0]).all()):
            raise ValueError("attention control needs one time for the whole batch")
        unet = getattr(self.model, "unet", None)
        if unet is not None and not _installed(unet):
            raise ValueError(
                "attention control needs the UNet's processors installed: call the model "
                "inside `with controlled_attention(unet):`"
            )
        rest = {k: v for k, v in kwargs.items() if k != OFFSET_KEY}
        step = self.edit.at(float(t_b[0]), kwargs[OFFSET_KEY])
        return self.model(x_t, t, {**cond, "cross_attention_kwargs": {**rest, "p2p": step}})


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
        pixels = q.shape[2]
        explicit = p2p is not None and (is_cross or pixels <= p2p.edit.self_max_tokens)
        if explicit:
            dtype = torch.promote_types(q.dtype, torch.float32)  # softmax in >= float32
            scores = (q.to(dtype) @ k.to(dtype).transpose(-1, -2)) * attn.scale
            if attention_mask is not None:
                scores = scores + attention_mask.to(dtype)
            probs = _control(scores.softmax(dim=-1), p2p, is_cross)
            if p2p.edit.observer is not None:
                p2p.edit.observer(AttentionRecord(self.name, is_cross, probs.detach(), p2p))
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


def _installed(unet: nn.Module) -> bool:
    """Whether :func:`controlled_attention` processors are installed in ``unet`` (checked on
    the first attention layer found)."""
    net = getattr(unet, "module", unet)
    for module in net.modules():
        processor = getattr(module, "processor", None)
        if processor is not None and hasattr(module, "set_processor"):
            return isinstance(processor, ControlledAttnProcessor)
    return True  # no attention layers: nothing to control


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


@contextmanager
def controlled_attention(unet: nn.Module) -> Iterator[nn.Module]:
    """Install a :class:`ControlledAttnProcessor` in every attention layer of ``unet`` (a
    diffusers model with ``attn_processors`` / ``set_attn_processor``) for the ``with`` block,
    then put the original processors back, whether the block ends normally or raises.

    Yields:
        ``unet`` itself.
    """
    net = getattr(unet, "module", unet)
    if not hasattr(net, "attn_processors") or not hasattr(net, "set_attn_processor"):
        raise ValueError(f"{type(net).__name__} has no diffusers attention processors")
    original = dict(net.attn_processors)
    net.set_attn_processor({name: ControlledAttnProcessor(name) for name in original})
    try:
        yield unet
    finally:
        net.set_attn_processor(dict(original))  # set_attn_processor consumes its dict
