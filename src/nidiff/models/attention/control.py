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

The same rows serve Plug-and-Play (Tumanyan et al., 2023, Sec. 4): self-attention injected in
*named* layers (``self_layers``) and ResNet features (``feature_layers``, :mod:`.features`), and
Zero-Shot's cross-attention guidance reads the maps through the observer
(:mod:`nidiff.editing.pnp`, :mod:`nidiff.editing.zero_shot`).

**No step counter.** Every network call carries what its attention layers must do. The caller
puts a per-row *source offset* in the condition (:func:`pair_cond`): row ``r`` with offset
``o != 0`` is a controlled target whose source is row ``r + o``; offset ``0`` is a free row (a
source, or any unconditional row). Offsets are relative, so they survive classifier-free
guidance concatenating ``[cond, null]`` in either order, and :func:`plain_cond` gives
unconditional rows offset 0: **only the conditional branch is controlled**. The model wrapper
:class:`ControlledDenoiser` sees the call's time ``t`` and turns the offsets and the
:class:`AttentionEdit` into an :class:`AttentionStep` (``replace_cross = t > cross_t``,
``inject_self = t > self_t``), passed to the layers as the UNet's ``cross_attention_kwargs``
(ResNet blocks take no such arguments: they read the step bound for the one call,
:func:`.features.bound_step`).
Step windows are thresholds in *time*, computed from the explicit grid by
:func:`window_threshold`, so the same edit behaves the same on any replay.

:func:`controlled_attention` installs :class:`ControlledAttnProcessor` in every attention layer
of the UNet (and the feature hooks of :mod:`.features` on its ResNet blocks) and restores the
original processors on exit (also on an exception). Installed
processors with no step (the UNet called without a controlled condition) compute attention
exactly as diffusers' default processor does (``scaled_dot_product_attention``); with a step
they compute the probabilities explicitly (cross-attention layers, and self-attention layers
small enough to inject) so they can be read and replaced.

This module never imports diffusers; it uses only the attributes of diffusers' ``Attention``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from ..contract import Denoiser, time_per_sample
from .edit import AttentionEdit, AttentionRecord, AttentionStep
from .features import bound_step, check_layers, feature_hooks
from .processor import ControlledAttnProcessor
from .rows import OFFSET_KEY, pair_cond, plain_cond, window_threshold

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
        unet = getattr(model, "unet", None)
        if unet is not None:
            check_layers(unet, edit.self_layers, edit.feature_layers)
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
        with bound_step(step):
            return self.model(x_t, t, {**cond, "cross_attention_kwargs": {**rest, "p2p": step}})


def _installed(unet: nn.Module) -> bool:
    """Whether :func:`controlled_attention` processors are installed in ``unet`` (checked on
    the first attention layer found)."""
    net = getattr(unet, "module", unet)
    for module in net.modules():
        processor = getattr(module, "processor", None)
        if processor is not None and hasattr(module, "set_processor"):
            return isinstance(processor, ControlledAttnProcessor)
    return True  # no attention layers: nothing to control


@contextmanager
def controlled_attention(unet: nn.Module) -> Iterator[nn.Module]:
    """Install a :class:`ControlledAttnProcessor` in every attention layer of ``unet`` (a
    diffusers model with ``attn_processors`` / ``set_attn_processor``) and a feature hook on
    every ResNet block (:func:`.features.feature_hooks`) for the ``with`` block, then put the
    original processors back and remove the hooks, whether the block ends normally or raises.

    Yields:
        ``unet`` itself.
    """
    net = getattr(unet, "module", unet)
    if not hasattr(net, "attn_processors") or not hasattr(net, "set_attn_processor"):
        raise ValueError(f"{type(net).__name__} has no diffusers attention processors")
    original = dict(net.attn_processors)
    net.set_attn_processor({name: ControlledAttnProcessor(name) for name in original})
    try:
        with feature_hooks(net):
            yield unet
    finally:
        net.set_attn_processor(dict(original))  # set_attn_processor consumes its dict
