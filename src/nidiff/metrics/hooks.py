r"""Metrics that need a network the user supplies: LPIPS and CLIP score.

nidiff ships no LPIPS or CLIP weights and imports neither ``lpips`` nor ``transformers`` here;
these functions take the user's model object (loaded from a local path) and only call it.

* :func:`lpips_distance` — Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features
  as a Perceptual Metric": ``net(x, y)`` for an ``lpips.LPIPS`` object or any callable.
* :func:`clip_score` — Hessel et al. 2021, "CLIPScore":
  :math:`\mathrm{score}(I, c) = w \cdot \max(\cos(E_I, E_c), 0)` for a ``transformers.CLIPModel``.
  ``w = 100`` by default (the convention of torchmetrics); ``w = 2.5`` gives the paper's scale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .features import _device_of, check_images
from .image import _check_pair

__all__ = ["CLIP_MEAN", "CLIP_STD", "clip_pixel_values", "clip_score", "lpips_distance"]

# OpenAI CLIP's image normalisation (per RGB channel), used when no processor is given.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def lpips_distance(
    x: Tensor,
    y: Tensor,
    net: Callable[[Tensor, Tensor], Tensor],
    *,
    gray_to_rgb: bool = True,
    batch_size: int = 64,
) -> Tensor:
    """Perceptual distance per image pair ``(N,)`` from a user-supplied LPIPS network.

    Args:
        x, y: images ``(N, C, H, W)`` in [−1, 1] (the range ``lpips.LPIPS`` expects by default).
        net: ``net(x, y)`` returning one value per pair (any shape with N values, e.g. the
            ``(N, 1, 1, 1)`` of ``lpips.LPIPS``).
        gray_to_rgb: repeat single-channel images to 3 channels first (LPIPS nets need RGB).
        batch_size: pairs per call.

    Usable as the ``distance`` of :func:`nidiff.metrics.diversity.diversity` through
    ``functools.partial(lpips_distance, net=net)``.
    """
    check_images(x, "x")
    check_images(y, "y")
    _check_pair(x, y, 2.0)
    if not callable(net):
        raise ValueError(f"net must be callable, got {type(net).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    a, b = x.detach(), y.detach()
    if gray_to_rgb and a.shape[1] == 1:
        a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
    device = _device_of(net)
    out = []
    with torch.no_grad():
        for i in range(0, a.shape[0], batch_size):
            d = net(a[i : i + batch_size].to(device), b[i : i + batch_size].to(device))
            n = min(batch_size, a.shape[0] - i)
            d = torch.as_tensor(d).detach()
            if d.numel() != n:
                raise ValueError(f"net must return one value per pair ({n}), got {tuple(d.shape)}")
            out.append(d.reshape(n).cpu())
    return torch.cat(out).to(torch.float64)


def clip_pixel_values(
    images: Tensor,
    size: int,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> Tensor:
    """CLIP input ``(N, 3, size, size)`` from images ``(N, 1 or 3, H, W)`` in [−1, 1].

    Grey images are repeated to RGB; the shorter side is resized (bicubic, antialiased) to
    ``size`` and the centre ``size × size`` crop kept; values go to [0, 1], then
    ``(v − mean) / std`` per channel.
    """
    x = check_images(images).float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise ValueError(f"images must have 1 or 3 channels, got {x.shape[1]}")
    H, W = x.shape[-2:]
    s = size / min(H, W)
    h, w = max(size, round(H * s)), max(size, round(W * s))
    if (h, w) != (H, W):
        x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
    top, left = (h - size) // 2, (w - size) // 2
    x = ((x[..., top : top + size, left : left + size] + 1) / 2).clamp(0, 1)
    m = torch.tensor(mean, dtype=x.dtype)[None, :, None, None]
    sd = torch.tensor(std, dtype=x.dtype)[None, :, None, None]
    return (x - m) / sd


def _features(out) -> Tensor:
    """A ``get_*_features`` result as a tensor: newer transformers wrap it in a model output."""
    return out if isinstance(out, Tensor) else out.pooler_output


def clip_score(
    images: Tensor,
    texts: Sequence[str] | Tensor,
    model,
    processor=None,
    *,
    attention_mask: Tensor | None = None,
    weight: float = 100.0,
    batch_size: int = 64,
) -> Tensor:
    """CLIP score per image–text pair ``(N,)``: ``weight · max(cos(E_image, E_text), 0)``.

    Args:
        images: ``(N, 1 or 3, H, W)`` in [−1, 1]; preprocessed by :func:`clip_pixel_values` at
            the model's ``vision_config.image_size``, with the processor's ``image_mean`` /
            ``image_std`` when it has them (else OpenAI CLIP's).
        texts: N strings (tokenised by ``processor``, a ``CLIPProcessor`` or tokenizer), or
            token ids ``(N, L)`` used as they are (with the optional ``attention_mask``).
        model: a ``transformers.CLIPModel`` (or anything with ``get_image_features`` and
            ``get_text_features``), e.g. ``CLIPModel.from_pretrained(local_dir)``.
        processor: needed only for string ``texts``.
        weight: ``w``; 100 by default, 2.5 for Hessel et al.'s scale.
        batch_size: pairs per forward pass.
    """
    x = check_images(images)
    N = x.shape[0]
    if isinstance(texts, Tensor):
        input_ids = texts
        if input_ids.ndim != 2 or input_ids.shape[0] != N:
            raise ValueError(f"token ids must be ({N}, L), got {tuple(input_ids.shape)}")
    else:
        texts = list(texts)
        if len(texts) != N or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"texts must be {N} strings (one per image) or token ids ({N}, L)")
        if processor is None:
            raise ValueError("string texts need a processor (CLIPProcessor or tokenizer)")
        tok = getattr(processor, "tokenizer", processor)
        enc = tok(texts, padding=True, truncation=True, return_tensors="pt")
        input_ids, attention_mask = enc["input_ids"], enc.get("attention_mask")
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask {tuple(attention_mask.shape)} must match ids {tuple(input_ids.shape)}"
        )
    image_proc = getattr(processor, "image_processor", processor)
    mean = getattr(image_proc, "image_mean", None) or CLIP_MEAN
    std = getattr(image_proc, "image_std", None) or CLIP_STD
    size = int(model.config.vision_config.image_size)
    device = _device_of(model)
    scores = []
    with torch.no_grad():
        for i in range(0, N, batch_size):
            px = clip_pixel_values(x[i : i + batch_size], size, mean, std).to(device)
            ids = input_ids[i : i + batch_size].to(device)
            am = None if attention_mask is None else attention_mask[i : i + batch_size].to(device)
            e_img = _features(model.get_image_features(pixel_values=px))
            e_txt = _features(model.get_text_features(input_ids=ids, attention_mask=am))
            cos = F.cosine_similarity(e_img.double(), e_txt.double(), dim=-1)
            scores.append((weight * cos.clamp_min(0)).cpu())
    return torch.cat(scores)
