r"""The one model contract: ``out = model(x_t, t, cond)``.

* ``x_t``: ``(B, *dims)`` noisy data (pixels or latents, any number of dims).
* ``t``: paper time in the schedule's units (``0`` clean … ``t_max``), a float tensor that is a
  scalar ``()``, one time per sample ``(B,)``, or a per-element map broadcastable to ``x_t``.
* ``cond``: anything the model understands (``None``, class labels ``(B,)``, text embeddings,
  a dict of tensors), batched along dim 0.
* ``out``: the noise prediction in the parametrisation of the model's noise process, shape of
  ``x_t``: the **white** :math:`\hat\varepsilon` for isotropic, diagonal and GFF noise
  (NI-DDPM: :math:`\Sigma^{1/2}` is applied outside the network), the **scaled**
  :math:`\widehat{\sigma_t\odot\varepsilon}` for edge-preserving noise (EP eq. 15).

Any callable with this signature is a model: analytic oracles, wrapped diffusers UNets, a user's
``nn.Module``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from .._checks import check_finite, check_in_range, expand_like

__all__ = [
    "ClassifierFreeGuidance",
    "Denoiser",
    "concat_cond",
    "model_time",
    "time_per_sample",
    "with_guidance",
]


@runtime_checkable
class Denoiser(Protocol):
    """Anything callable as ``model(x_t, t, cond) -> Tensor`` (see the module docstring)."""

    def __call__(self, x_t: Tensor, t: Tensor, cond: Any = None) -> Tensor: ...


def time_per_sample(t: Tensor, x_t: Tensor) -> Tensor:
    """Reduce a time to one value per sample ``(B,)``, for networks that take no per-pixel time.

    Raises:
        ValueError: if ``t`` does not fit ``x_t``, is not finite, or varies within a sample (a
            per-pixel time the network cannot use).
    """
    t = torch.as_tensor(t, device=x_t.device)
    t = expand_like(t, x_t)
    check_finite(t, "t")
    B = x_t.shape[0]
    if t.ndim == 0:
        return t.expand(B)
    flat = t.expand(x_t.shape).reshape(B, -1)
    if not bool((flat == flat[:, :1]).all()):
        raise ValueError(
            "this model takes one time per sample, but t varies within a sample (per-pixel time)"
        )
    return flat[:, 0]


def model_time(t: Tensor, x: Tensor) -> Tensor:
    """A grid time as :func:`nidiff.samplers.sample` passes it to models: on ``x``'s device, in
    ``x``'s dtype promoted to at least float32 (integer times stay exact for half precision)."""
    return t.to(device=x.device, dtype=torch.promote_types(x.dtype, torch.float32))


def concat_cond(a: Any, b: Any) -> Any:
    """Concatenate two conditions along the batch: tensors, dicts of tensors, or ``None``."""
    if a is None and b is None:
        return None
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return torch.cat([a, b])
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return {k: concat_cond(a[k], b[k]) for k in a}
    raise ValueError(f"cannot batch conditions of types {type(a).__name__} and {type(b).__name__}")


class ClassifierFreeGuidance:
    r"""Classifier-free guidance (Ho & Salimans, 2022) as a model:

    .. math:: \hat\varepsilon = \hat\varepsilon(x_t, \varnothing) +
              w\,(\hat\varepsilon(x_t, c) - \hat\varepsilon(x_t, \varnothing))

    ``w = 1`` is the plain conditional model, ``w = 0`` the unconditional one. Both branches run
    in one batched network call.

    Args:
        model: a model following the contract.
        scale: the guidance weight ``w >= 0``.
        null_cond: the unconditional condition for one sample (e.g. the reserved null class
            ``tensor([10])`` or the empty-prompt embedding ``(1, L, D)``); it is repeated over the
            batch. A callable ``null_cond(cond) -> cond`` may be given instead.
    """

    def __init__(self, model: Denoiser, scale: float, null_cond: Any):
        check_in_range(scale, "scale", 0.0, float("inf"))
        self.model = model
        self.scale = float(scale)
        self.null_cond = null_cond

    def _null_like(self, cond: Any, B: int) -> Any:
        if callable(self.null_cond):
            return self.null_cond(cond)
        return _repeat(self.null_cond, B)

    def __call__(self, x_t: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        B = x_t.shape[0]
        if self.scale == 1.0:
            return self.model(x_t, t, cond)
        null = self._null_like(cond, B)
        if self.scale == 0.0:
            return self.model(x_t, t, null)
        tt = torch.as_tensor(t, device=x_t.device)
        expand_like(tt, x_t)  # validates; the doubled time keeps the caller's layout
        t2 = tt if tt.ndim == 0 else torch.cat([tt.expand(B, *tt.shape[1:])] * 2)
        out = self.model(torch.cat([x_t, x_t]), t2, concat_cond(cond, null))
        eps_c, eps_u = out[:B], out[B:]
        return eps_u + self.scale * (eps_c - eps_u)


def with_guidance(model: Denoiser, guidance: float, null_cond: Any) -> Denoiser:
    """``model`` guided with weight ``guidance``: ``model`` itself for ``guidance == 1`` (no extra
    network work), else :class:`ClassifierFreeGuidance` ``(model, guidance, null_cond)``.

    A guidance-distilled model (FLUX.1-dev) takes the scale as an input instead: if ``model``
    has ``distilled_guidance(scale, null_cond)``, that model is returned, for every ``guidance``.

    Raises:
        ValueError: for a negative or non-finite ``guidance``, or ``guidance != 1`` without
            ``null_cond``.
    """
    check_in_range(guidance, "guidance", 0.0, float("inf"))
    distilled = getattr(model, "distilled_guidance", None)
    if distilled is not None:
        return distilled(float(guidance), null_cond)
    if guidance == 1.0:
        return model
    if null_cond is None:
        raise ValueError(f"guidance={guidance:g} != 1 needs null_cond (the unconditional cond)")
    return ClassifierFreeGuidance(model, guidance, null_cond)


def _repeat(c: Any, B: int) -> Any:
    if isinstance(c, Tensor):
        if c.ndim == 0:
            return c.expand(B)
        if c.shape[0] == B:
            return c
        if c.shape[0] != 1:
            raise ValueError(f"null_cond has batch {c.shape[0]}; give one sample (batch 1)")
        return c.expand(B, *c.shape[1:])
    if isinstance(c, dict):
        return {k: _repeat(v, B) for k, v in c.items()}
    raise ValueError(f"unsupported null_cond type {type(c).__name__}")
