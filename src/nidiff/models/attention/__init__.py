"""Prompt-to-Prompt attention control (Hertz et al., 2022) for diffusers UNets.

* :mod:`.tokens`: which source token each target token takes its cross-attention map from
  (word swap, refinement by word alignment) and re-weighting vectors;
* :mod:`.control`: the attention processor, the per-call :class:`AttentionStep`, the model
  wrapper :class:`ControlledDenoiser` and the :func:`controlled_attention` context manager.

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
    "pair_cond",
    "plain_cond",
    "refine_token_map",
    "replace_token_map",
    "token_weights",
    "window_threshold",
    "word_spans",
]
