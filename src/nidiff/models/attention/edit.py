"""What an attention-controlled call does: :class:`AttentionEdit` (the whole edit),
:class:`AttentionStep` (one network call of it) and :class:`AttentionRecord` (what an observer
reads). The semantics are in :mod:`.control`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .tokens import TokenMap

__all__ = ["AttentionEdit", "AttentionRecord", "AttentionStep", "Observer"]


@dataclass(frozen=True, eq=False)
class AttentionRecord:
    """One attention layer's probabilities in one controlled call, after control.

    Attributes:
        layer: the layer's processor name in ``unet.attn_processors``.
        is_cross: cross-attention (keys are text tokens) or self-attention.
        probs: ``(B, heads, N, K)``: ``N`` query pixels, ``K`` keys (tokens or pixels); the
            layer's own tensor (do not modify it): under autograd it carries the graph.
        step: the call's :class:`AttentionStep`.
    """

    layer: str
    is_cross: bool
    probs: Tensor
    step: AttentionStep


#: ``observer(record)``: called for every explicitly computed attention layer.
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
        observer: optional ``observer(AttentionRecord)`` to read the maps (tests, figures,
            Zero-Shot's cross-attention guidance, which differentiates them).
        self_layers: Plug-and-Play's selection instead of the size rule: inject self-attention
            (for ``t > self_t``) in exactly these layers (processor names of
            ``unet.attn_processors``), by giving the targets their sources' queries and keys
            before the fused kernel: the same map :math:`\mathrm{softmax}(q_{src}k_{src}^\top)`
            as P2P's replacement, without the ``N × N`` probabilities in memory (PnP injects at
            64² pixels). ``None``: the size rule ``self_max_tokens``.
        feature_layers: ResNet blocks (module names, e.g. ``"up_blocks.1.resnets.1"``) whose
            residual-branch output (after ``conv2``, before the skip connection is added) the
            targets take from their sources for ``t > feature_t`` (PnP's feature injection,
            :mod:`.features`).
        feature_t: the time threshold of the feature injection.
        cross_maps: compute cross-attention probabilities explicitly in controlled calls (to
            replace, re-weight or observe them); ``False`` leaves cross-attention to the fused
            kernel, bit for bit diffusers' (PnP, which never touches it).
    """

    token_map: TokenMap | None = None
    cross_t: float = math.inf
    self_t: float = math.inf
    weights: Tensor | None = None
    self_max_tokens: int = 256
    observer: Observer | None = None
    self_layers: frozenset[str] | None = None
    feature_layers: frozenset[str] = frozenset()
    feature_t: float = math.inf
    cross_maps: bool = True

    def __post_init__(self) -> None:
        for name in ("self_layers", "feature_layers"):
            names = getattr(self, name)
            if names is not None and (isinstance(names, str) or not isinstance(names, frozenset)):
                raise ValueError(f"{name} must be a frozenset of layer names, not {names!r}")
        for name in ("cross_t", "self_t", "feature_t"):
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
            inject_features=float(t) > self.feature_t,
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
        inject_features: inject the sources' ResNet features (``edit.feature_layers``).
    """

    edit: AttentionEdit
    offsets: Tensor
    replace_cross: bool
    inject_self: bool
    inject_features: bool = False
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
