"""Attention control for diffusers UNets: Prompt-to-Prompt (Hertz et al., 2022), Plug-and-Play's
injections (Tumanyan et al., 2023) and the maps Zero-Shot I2I's guidance reads (Parmar et al.,
2023).

* :mod:`.tokens`: which source token each target token takes its cross-attention map from
  (word swap, refinement by word alignment) and re-weighting vectors;
* :mod:`.edit`: what a controlled call does (:class:`AttentionEdit`, the per-call
  :class:`AttentionStep`, :class:`AttentionRecord`); :mod:`.rows`: the paired rows and windows;
* :mod:`.control`: the model wrapper :class:`ControlledDenoiser` and the
  :func:`controlled_attention` context manager; :mod:`.processor`: the attention processor;
* :mod:`.features`: PnP's ResNet feature injection and the UNet's layer names.

Nothing here imports diffusers; the processors use only the attributes of its ``Attention``.
"""

from .control import (
    OFFSET_KEY,
    AttentionEdit,
    AttentionRecord,
    AttentionStep,
    ControlledAttnProcessor,
    ControlledDenoiser,
    controlled_attention,
    pair_cond,
    plain_cond,
    window_threshold,
)
from .features import (
    cross_attention_layers,
    pnp_self_layers,
    resnet_blocks,
    self_attention_layers,
)
from .tokens import (
    TokenMap,
    Word,
    align,
    refine_token_map,
    replace_token_map,
    token_weights,
    word_spans,
)

__all__ = [
    "OFFSET_KEY",
    "AttentionEdit",
    "AttentionRecord",
    "AttentionStep",
    "ControlledAttnProcessor",
    "ControlledDenoiser",
    "TokenMap",
    "Word",
    "align",
    "controlled_attention",
    "cross_attention_layers",
    "pair_cond",
    "plain_cond",
    "pnp_self_layers",
    "refine_token_map",
    "replace_token_map",
    "resnet_blocks",
    "self_attention_layers",
    "token_weights",
    "window_threshold",
    "word_spans",
]
