r"""Plug-and-Play's feature injection (Tumanyan et al., 2023, Sec. 4) and the UNet's layer names.

PnP takes the spatial features :math:`f^4_t` of one decoder ResNet block of the *source* chain
and gives them to the target in place of its own, at every step of the first
:math:`\tau_f T` steps. In the authors' code (``pnp_utils.register_conv_control_efficient``) the
injected tensor is the block's **residual branch after** ``conv2``, before the skip connection
is added:

.. math::
    \mathrm{out}^{tgt} = \bigl(\mathrm{shortcut}(h^{tgt}_{in}) + \mathrm{conv2}(\dots)^{src}\bigr)
    / s ,

in every guidance row of the target (conditional and unconditional). A forward hook on the
block's ``conv2`` does exactly that for the target rows of a controlled call (the rows and their
sources from the call's :class:`~.control.AttentionStep`, the window
``inject_features = t > feature_t``).

**How the hook learns the step.** Attention processors receive the step as the UNet's
``cross_attention_kwargs``; ResNet blocks receive only ``(hidden_states, temb)``. The step is
therefore *bound* for the duration of one network call (:func:`bound_step`, a context variable
set and reset by :class:`~.control.ControlledDenoiser` around the call): nothing survives the
call and nothing counts steps.

This module never imports diffusers: a ResNet block is any module with ``norm1``, ``conv1``,
``norm2``, ``conv2`` and ``time_emb_proj`` (diffusers' ``ResnetBlock2D``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

if TYPE_CHECKING:
    from .edit import AttentionStep

__all__ = [
    "bound_step",
    "check_layers",
    "cross_attention_layers",
    "feature_hooks",
    "pnp_self_layers",
    "resnet_blocks",
    "self_attention_layers",
]

_STEP: ContextVar[Any] = ContextVar("nidiff_attention_step", default=None)
_RESNET = ("norm1", "conv1", "norm2", "conv2", "time_emb_proj")


@contextmanager
def bound_step(step: AttentionStep) -> Iterator[None]:
    """Make ``step`` the step the feature hooks see, for the ``with`` block (one call)."""
    token = _STEP.set(step)
    try:
        yield
    finally:
        _STEP.reset(token)


def _net(unet: nn.Module) -> nn.Module:
    return getattr(unet, "module", unet)


def resnet_blocks(unet: nn.Module) -> dict[str, nn.Module]:
    """The UNet's ResNet blocks by module name (``"up_blocks.1.resnets.1"``), in forward order."""
    return {
        name: m
        for name, m in _net(unet).named_modules()
        if all(hasattr(m, a) for a in _RESNET) and isinstance(m.conv2, nn.Module)
    }


def self_attention_layers(unet: nn.Module) -> list[str]:
    """The processor names (``unet.attn_processors`` keys) of the self-attention layers."""
    return [name for name in _net(unet).attn_processors if name.endswith("attn1.processor")]


def cross_attention_layers(unet: Any, method: str) -> list[str]:
    """The processor names of the text cross-attention layers (``attn2``); ``ValueError`` if
    there are none, naming ``method`` (which edits through them)."""
    names = getattr(_net(unet), "attn_processors", {})
    layers = [n for n in names if n.endswith("attn2.processor")]
    if not layers:
        raise ValueError(
            f"{method} edits through the UNet's text cross-attention, and this UNet has no "
            "cross-attention layers"
        )
    return layers


def pnp_self_layers(unet: nn.Module) -> frozenset[str]:
    """PnP's self-attention layers: every decoder (``up_blocks``) self-attention layer except
    the first, lowest-resolution one (the authors' ``res_dict``: decoder layers 4–11 of SD 1.x/2.x,
    ``up_blocks.1.attentions.1`` to ``up_blocks.3.attentions.2``)."""
    decoder = [n for n in self_attention_layers(unet) if n.startswith("up_blocks.")]
    return frozenset(decoder[1:])


def check_layers(
    unet: nn.Module, self_layers: frozenset[str] | None, feature_layers: frozenset[str]
) -> None:
    """Raise ``ValueError`` naming the choices if a named layer is not in ``unet``."""
    if self_layers:
        known = set(self_attention_layers(unet))
        unknown = sorted(self_layers - known)
        if unknown:
            raise ValueError(
                f"no self-attention layer {unknown[0]!r} in this UNet; its self-attention "
                f"layers are {', '.join(sorted(known))}"
            )
    if feature_layers:
        blocks = resnet_blocks(unet)
        unknown = sorted(feature_layers - set(blocks))
        if unknown:
            decoder = [n for n in blocks if n.startswith("up_blocks.")]
            raise ValueError(
                f"no ResNet block {unknown[0]!r} in this UNet; its decoder blocks are "
                f"{', '.join(decoder)}"
            )


class _FeatureHook:
    """A forward hook on one ResNet block's ``conv2``: the targets take their sources' rows."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, module: nn.Module, args: Any, output: Tensor) -> Tensor | None:
        step = _STEP.get()
        if step is None or not step.inject_features or self.name not in step.edit.feature_layers:
            return None
        tgt, src = step.pairs(output.shape[0], output.device)
        if tgt.numel() == 0:
            return None
        out = output.clone()
        out[tgt] = output[src]
        return out


@contextmanager
def feature_hooks(unet: nn.Module) -> Iterator[None]:
    """Hook every ResNet block's ``conv2`` of ``unet`` for the ``with`` block (removed on exit,
    also on an exception). Outside a controlled call the hooks change nothing."""
    handles = [
        block.conv2.register_forward_hook(_FeatureHook(name))
        for name, block in resnet_blocks(unet).items()
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
