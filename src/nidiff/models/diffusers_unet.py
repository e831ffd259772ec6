r"""Adapters from diffusers UNets to the nidiff model contract ``out = model(x_t, t, cond)``.

The only module of :mod:`nidiff.models` that imports ``diffusers``, and only inside functions;
:func:`unet_from_config` builds nidiff's own :class:`~nidiff.models.unet.UNet2D` instead where it
covers the config (the bundled models), so loading them never imports diffusers.

**Time.** nidiff uses paper time (``t = 0`` clean, ``t = T`` noisiest); diffusers indexes the
same ᾱ table from 0, so **paper t = diffusers timestep + 1** and the adapters feed the network
``t - 1``. Times need not be integers (NGDM's rectified times); the sinusoidal embedding takes any
real value. A per-pixel time is accepted only if it is constant within each sample
(:func:`~nidiff.models.contract.time_per_sample`).

**Null class.** A class-conditional UNet for ``K`` classes is built with ``K + 1`` class
embeddings; label ``K`` (:attr:`UNetDenoiser.null_class`) means "no class", is trained by
label dropout and is the unconditional branch of
:class:`~nidiff.models.contract.ClassifierFreeGuidance` (:meth:`UNetDenoiser.null_cond`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..schedule import Schedule
from .contract import ClassifierFreeGuidance, time_per_sample

__all__ = [
    "ConditionalUNetDenoiser",
    "UNetDenoiser",
    "fashion_unet",
    "fashion_unet_config",
    "unet_config",
    "unet_from_config",
]

_PREDICTIONS = ("epsilon", "v_prediction", "sample")
_UNET_CLASSES = ("UNet2DModel", "UNet2DConditionModel")
_BACKENDS = ("auto", "nidiff", "diffusers")


class _UNetAdapter(nn.Module):
    """Shared time, dtype and parametrisation handling; subclasses map ``cond`` to kwargs."""

    def __init__(self, unet: nn.Module, prediction: str, schedule: Schedule | None):
        super().__init__()
        if prediction not in _PREDICTIONS:
            raise ValueError(f"prediction={prediction!r} must be one of {_PREDICTIONS}")
        if prediction != "epsilon" and schedule is None:
            raise ValueError(f"prediction={prediction!r} needs the schedule to convert to epsilon")
        self.unet = unet
        self.prediction = prediction
        self.schedule = schedule

    @property
    def _net(self) -> nn.Module:
        """The bare diffusers model (unwrapping ``DistributedDataParallel``'s ``.module``)."""
        return getattr(self.unet, "module", self.unet)

    def _cond_kwargs(self, cond: Any, B: int, device: torch.device) -> dict[str, Any]:
        raise NotImplementedError

    def forward(self, x_t: Tensor, t: Tensor | float, cond: Any = None) -> Tensor:
        """The noise prediction ``(B, C, H, W)`` in ``x_t``'s dtype and device.

        ``x_t`` is cast to the UNet's dtype and device for the call; the output is cast back.
        If the network predicts extra channels (a learned variance), only the first ``C`` are used.
        """
        t_b = time_per_sample(torch.as_tensor(t), x_t)
        x = x_t.to(device=self._net.device, dtype=self._net.dtype)
        timesteps = (t_b.to(torch.float64) - 1.0).to(device=x.device, dtype=torch.float32)
        kwargs = self._cond_kwargs(cond, x.shape[0], x.device)
        out = self.unet(x, timesteps, **kwargs).sample[:, : x.shape[1]]
        out = out.to(device=x_t.device, dtype=x_t.dtype)
        if self.prediction == "epsilon":
            return out
        sa, s1 = (c.reshape(-1, *[1] * (x_t.ndim - 1)) for c in self.schedule.coefficients(t_b))
        if self.prediction == "v_prediction":  # v = sqrt(ab) eps - sqrt(1-ab) x0
            eps = sa * out.double() + s1 * x_t.double()
        else:  # x0 prediction; undefined at t = 0 where sqrt(1-ab) = 0
            eps = (x_t.double() - sa * out.double()) / s1
        return eps.to(x_t.dtype)


class UNetDenoiser(_UNetAdapter):
    """A ``diffusers.UNet2DModel`` (or nidiff's :class:`~nidiff.models.unet.UNet2D`) as a nidiff
    model.

    Args:
        unet: the network; unconditional, or class-conditional through ``num_class_embeds``.
        prediction: what the network outputs: ``"epsilon"`` (default), ``"v_prediction"`` or
            ``"sample"`` (x0); the last two are converted to ε with ``schedule``.
        schedule: the training schedule (paper time), needed only for non-ε predictions.

    ``cond``: ``None`` for an unconditional UNet; class labels ``(B,)`` (integers, or a scalar
    repeated over the batch) for a class-conditional one. Label :attr:`null_class` is the
    unconditional branch (see the module docstring).
    """

    def __init__(
        self, unet: nn.Module, prediction: str = "epsilon", schedule: Schedule | None = None
    ):
        super().__init__(unet, prediction, schedule)
        n = getattr(self._net.config, "num_class_embeds", None)
        #: Number of class embeddings (``K + 1`` for ``K`` classes), ``None`` if unconditional.
        self.num_class_embeds: int | None = int(n) if n is not None else None

    @property
    def null_class(self) -> int | None:
        """The reserved "no class" label ``num_class_embeds - 1``; ``None`` if unconditional."""
        return None if self.num_class_embeds is None else self.num_class_embeds - 1

    def null_cond(self) -> Tensor:
        """The null condition for one sample, ``tensor([null_class])``, for guidance."""
        if self.null_class is None:
            raise ValueError("this UNet is unconditional: it has no null class")
        return torch.tensor([self.null_class], dtype=torch.long, device=self._net.device)

    def guided(self, scale: float) -> ClassifierFreeGuidance:
        """This model under classifier-free guidance of weight ``scale`` (null class as ∅)."""
        return ClassifierFreeGuidance(self, scale, self.null_cond())

    def _cond_kwargs(self, cond: Any, B: int, device: torch.device) -> dict[str, Any]:
        if getattr(self._net, "class_embedding", None) is None:
            if cond is not None:
                raise ValueError("this UNet is unconditional; pass cond=None")
            return {}
        if cond is None:
            raise ValueError(
                "this UNet is class-conditional: pass labels (B,); the unconditional label is "
                f"null_class={self.null_class}"
            )
        labels = torch.as_tensor(cond, device=device)
        if self.num_class_embeds is None:  # another class_embed_type: pass through as given
            return {"class_labels": labels}
        if labels.is_floating_point() or labels.is_complex():
            raise ValueError(f"class labels must be integers, got dtype {labels.dtype}")
        labels = labels.expand(B) if labels.ndim == 0 else labels
        if labels.shape != (B,):
            raise ValueError(f"class labels of shape {tuple(labels.shape)} do not fit batch {B}")
        if bool(((labels < 0) | (labels >= self.num_class_embeds)).any()):
            raise ValueError(f"class labels must lie in 0..{self.num_class_embeds - 1}")
        return {"class_labels": labels.long()}


class ConditionalUNetDenoiser(_UNetAdapter):
    """A ``diffusers.UNet2DConditionModel`` (e.g. Stable Diffusion's) as a nidiff model.

    ``cond`` is the encoder hidden states ``(B, L, D)`` (a text embedding), or a dict of keyword
    arguments of the UNet's forward that holds ``encoder_hidden_states`` (and e.g.
    ``added_cond_kwargs``). Arguments as in :class:`UNetDenoiser`.
    """

    def __init__(
        self, unet: nn.Module, prediction: str = "epsilon", schedule: Schedule | None = None
    ):
        super().__init__(unet, prediction, schedule)

    def _cond_kwargs(self, cond: Any, B: int, device: torch.device) -> dict[str, Any]:
        kwargs = dict(cond) if isinstance(cond, dict) else {"encoder_hidden_states": cond}
        states = kwargs.get("encoder_hidden_states")
        if not isinstance(states, Tensor):
            raise ValueError("cond must be encoder hidden states (B, L, D) or a dict holding them")
        if states.ndim != 3 or states.shape[0] != B:
            raise ValueError(
                f"encoder hidden states must be (B={B}, L, D), got {tuple(states.shape)}"
            )
        kwargs["encoder_hidden_states"] = states.to(device=device, dtype=self._net.dtype)
        return kwargs


def fashion_unet_config(
    num_classes: int = 10,
    sample_size: int = 28,
    channels: Sequence[int] = (32, 64, 128),
    in_channels: int = 1,
    layers_per_block: int = 1,
    attention_head_dim: int = 8,
) -> dict[str, Any]:
    """The config (a plain, JSON-safe dict) of nidiff's default Fashion-MNIST ``UNet2DModel``.

    Block widths ``channels``, one resnet per block, self-attention only in the lowest-resolution
    block (7×7 for 28×28 input) and the middle block; ``num_class_embeds = num_classes + 1`` (the
    last label is the null class), or no class embedding if ``num_classes = 0``. The defaults give
    about 2.7 M parameters. Group-norm groups: ``min(32, gcd(channels))``.
    """
    if num_classes < 0:
        raise ValueError(f"num_classes={num_classes} must be >= 0")
    n = len(channels)
    if n < 1 or sample_size % 2 ** (n - 1):
        raise ValueError(f"sample_size={sample_size} must be divisible by 2**{n - 1}")
    return {
        "_class_name": "UNet2DModel",
        "sample_size": sample_size,
        "in_channels": in_channels,
        "out_channels": in_channels,
        "block_out_channels": [int(c) for c in channels],
        "layers_per_block": layers_per_block,
        "down_block_types": ["DownBlock2D"] * (n - 1) + ["AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D"] + ["UpBlock2D"] * (n - 1),
        "attention_head_dim": attention_head_dim,
        "norm_num_groups": min(32, math.gcd(*channels)),
        "num_class_embeds": num_classes + 1 if num_classes else None,
    }


def fashion_unet(num_classes: int = 10, sample_size: int = 28, **kwargs: Any) -> nn.Module:
    """A freshly initialised network from :func:`fashion_unet_config` (same arguments), built by
    :func:`unet_from_config` (nidiff's own :class:`~nidiff.models.unet.UNet2D`)."""
    return unet_from_config(fashion_unet_config(num_classes, sample_size, **kwargs))


def unet_from_config(config: dict[str, Any], *, backend: str = "auto") -> nn.Module:
    """Build a ``UNet2DModel`` or ``UNet2DConditionModel`` (``config["_class_name"]``, default
    the former) from a config dict; keys starting with ``_`` are metadata and are dropped.

    ``backend``: ``"auto"`` (default) builds nidiff's own :class:`~nidiff.models.unet.UNet2D`
    when it covers the config — the same module tree, initial weights (from the same seed),
    outputs and gradients, bit for bit, without importing diffusers (seconds of start-up) — and
    diffusers' class otherwise; ``"nidiff"`` insists on the former, ``"diffusers"`` on the latter.
    """
    from .unet import UNet2D, unsupported

    if backend not in _BACKENDS:
        raise ValueError(f"backend={backend!r} must be one of {_BACKENDS}")
    name = config.get("_class_name", "UNet2DModel")
    if name not in _UNET_CLASSES:
        raise ValueError(f"_class_name={name!r} must be one of {_UNET_CLASSES}")
    kwargs = {k: v for k, v in config.items() if not k.startswith("_")}
    reason = unsupported(config)
    if backend == "nidiff" and reason is not None:
        raise ValueError(f"nidiff's UNet2D does not implement {reason}")
    if backend != "diffusers" and reason is None:
        return UNet2D(**kwargs)
    import diffusers

    return getattr(diffusers, name).from_config(kwargs)


def unet_config(unet: nn.Module) -> dict[str, Any]:
    """A UNet's config as a plain JSON-safe dict (tuples → lists) with ``_class_name``, for
    checkpoints; :func:`unet_from_config` rebuilds the architecture."""

    def plain(v: Any) -> Any:
        return [plain(u) for u in v] if isinstance(v, (list, tuple)) else v

    unet = getattr(unet, "module", unet)
    out = {k: plain(v) for k, v in unet.config.items() if not k.startswith("_")}
    return {"_class_name": getattr(unet, "diffusers_class", type(unet).__name__), **out}
