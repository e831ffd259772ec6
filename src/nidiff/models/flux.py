r"""FLUX.1 (Black Forest Labs, 2024) as nidiff parts: a :class:`Flux` space.

* **The space is the unpacked latent** ``(B, 16, h, w)`` (``h = H/8``): weighting maps, λ and
  masks live on the latent grid as for every other family. ``FluxTransformer2DModel`` takes 2×2
  patches packed into tokens ``(B, h/2 · w/2, 64)``; :class:`FluxDenoiser` packs its input and
  unpacks its output exactly as ``FluxPipeline._pack_latents``/``_unpack_latents`` do, with the
  pipeline's positional ids. Image sides are multiples of VAE factor 8 × packing 2 = 16.
* **Velocity on rectified flow**, ``timestep = sigma`` (the transformer multiplies by 1000).
* **Guidance-distilled** (FLUX.1-dev, ``guidance_embeds``): the guidance scale is an *input*,
  embedded like the time; :func:`~nidiff.models.contract.with_guidance` hands the scale to
  :meth:`FluxDevDenoiser.distilled_guidance` instead of mixing two passes, so every method's
  ``guidance`` is FLUX's guidance (3.5 by default). **True classifier-free guidance** on top
  (``true_cfg > 1``: two passes, the unconditional one with :meth:`Flux.null_cond`, the negative
  prompt's condition) as ``FluxPipeline(true_cfg_scale=…, negative_prompt=…)`` does. Without a
  guidance embedding (FLUX.1-schnell) ``guidance`` is classifier-free guidance (default 1: off).
* **Text** — CLIP's pooled output ``(B, 768)`` and T5's hidden states ``(B, 512, 4096)``.
* **Grid** — what ``FluxPipeline`` asks of its scheduler: sigmas ``linspace(1, 1/N, N)`` with
  the dynamic shift :math:`\mu` of the image's token count (:func:`nidiff.schedule.flux_mu`;
  a static shift for schedulers without dynamic shifting), computed in float32 as diffusers
  does, so nidiff's times are the pipeline's bit for bit.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..schedule import TimeGrid, custom_grid, dynamic_shift, static_shift
from .contract import _repeat
from .flow_pipeline import FlowPipeline, TransformerDenoiser
from .latent import check_prompts, load_components, read_index

__all__ = ["COMPONENTS", "DistilledGuidance", "Flux", "FluxDenoiser", "FluxDevDenoiser"]

#: Components the adapter needs (sub-folders of a saved ``FluxPipeline``).
COMPONENTS = (
    "transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2",
    "scheduler",
)  # fmt: skip


def pack(x: Tensor) -> Tensor:
    """``(B, C, h, w)`` → 2×2 patch tokens ``(B, h/2 · w/2, 4C)``
    (``FluxPipeline._pack_latents``)."""
    B, C, h, w = x.shape
    x = x.view(B, C, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B, (h // 2) * (w // 2), C * 4)


def unpack(tokens: Tensor, h: int, w: int) -> Tensor:
    """Inverse of :func:`pack`: ``(B, h/2 · w/2, 4C)`` → ``(B, C, h, w)``."""
    B, _, D = tokens.shape
    x = tokens.view(B, h // 2, w // 2, D // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(B, D // 4, h, w)


def image_ids(h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The pipeline's positional ids ``(h/2 · w/2, 3)`` of the packed tokens (row, column)."""
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] += torch.arange(h // 2)[:, None]
    ids[..., 2] += torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


class FluxDenoiser(TransformerDenoiser):
    """``FluxTransformer2DModel`` on unpacked latents ``(B, C, h, w)``: the velocity there.

    ``cond`` as :class:`TransformerDenoiser`, plus ``"guidance": (B,)`` for a guidance-distilled
    transformer (default :attr:`guidance`).
    """

    guidance = 3.5

    def _velocity(self, x_t: Tensor, t: Tensor | float, cond: Any) -> Tensor:
        x, sigma, states, pooled = self._inputs(x_t, t, cond)
        B, _, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"FLUX packs 2×2 patches: the latent's sides {h}x{w} must be even")
        net = self.transformer
        guidance = None
        if net.config.guidance_embeds:
            g = cond.get("guidance", torch.tensor(float(self.guidance)))
            guidance = torch.as_tensor(g, dtype=torch.float32, device=self.device).expand(B)
        txt_ids = torch.zeros(states.shape[1], 3, device=self.device, dtype=states.dtype)
        out = net(
            hidden_states=pack(x), timestep=(sigma * 1000).to(x.dtype) / 1000, guidance=guidance,
            pooled_projections=pooled, encoder_hidden_states=states, txt_ids=txt_ids,
            img_ids=image_ids(h, w, self.device, x.dtype), return_dict=False,
        )[0]  # fmt: skip
        return unpack(out, h, w)


class FluxDevDenoiser(FluxDenoiser):
    """A guidance-distilled FLUX transformer: guidance is its input (module docstring).

    Attributes:
        true_cfg: the true classifier-free guidance scale on top (1: off).
    """

    true_cfg = 1.0

    def distilled_guidance(self, scale: float, null_cond: Any) -> DistilledGuidance:
        """The model guided with ``scale`` (the hook of
        :func:`~nidiff.models.contract.with_guidance`)."""
        return DistilledGuidance(self, scale, self.true_cfg, null_cond)


class DistilledGuidance:
    r"""FLUX-dev under guidance ``scale`` (embedded) and true CFG ``true_cfg``:
    :math:`u = u(x, \varnothing) + s\,(u(x, c) - u(x, \varnothing))` with both passes at
    guidance ``scale`` when ``true_cfg = s > 1``, else :math:`u(x, c)`."""

    def __init__(self, model: FluxDenoiser, scale: float, true_cfg: float, null_cond: Any):
        self.model, self.scale, self.true_cfg = model, float(scale), float(true_cfg)
        if self.true_cfg != 1.0 and null_cond is None:
            raise ValueError("true classifier-free guidance needs null_cond (the negative prompt)")
        self.null_cond = null_cond

    def _with_scale(self, cond: Any) -> dict[str, Any]:
        return {**cond, "guidance": torch.tensor(self.scale)}

    def __call__(self, x_t: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        out = self.model(x_t, t, self._with_scale(cond))
        if self.true_cfg == 1.0:
            return out
        neg = self.model(x_t, t, self._with_scale(_repeat(self.null_cond, x_t.shape[0])))
        return neg + self.true_cfg * (out - neg)


class Flux(FlowPipeline):
    """A FLUX.1 pipeline's transformer, VAE, CLIP and T5 encoders and scheduler (module doc).

    Args:
        transformer, vae, scheduler: ``FluxTransformer2DModel``, ``AutoencoderKL``,
            ``FlowMatchEulerDiscreteScheduler``.
        text_encoder, tokenizer: CLIP (pooled output).
        text_encoder_2, tokenizer_2: T5 (hidden states).
        max_sequence_length: T5's padded length (512; FLUX.1-schnell: 256).
        true_cfg: true classifier-free guidance scale of a guidance-distilled model (1: off).
        negative_prompt: the unconditional prompt of true CFG (and :meth:`null_cond`).
        device, dtype, offload: as in :class:`~nidiff.models.stable_diffusion.StableDiffusion`.
    """

    family = "flux"
    patch = 2
    patch_name = "packing"

    def __init__(
        self,
        transformer: nn.Module,
        vae: nn.Module,
        text_encoder: nn.Module,
        text_encoder_2: nn.Module,
        tokenizer: Any,
        tokenizer_2: Any,
        scheduler: Any,
        *,
        max_sequence_length: int = 512,
        true_cfg: float = 1.0,
        negative_prompt: str = "",
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        offload: bool = False,
    ):
        self._init_latent(vae, device, dtype, offload, negative_prompt)
        self._init_flow(transformer, scheduler)
        self.text_encoder = self._network(text_encoder)
        self.text_encoder_2 = self._network(text_encoder_2)
        self.tokenizer, self.tokenizer_2 = tokenizer, tokenizer_2
        self.max_sequence_length = int(max_sequence_length)
        self.distilled = bool(self.transformer.config.guidance_embeds)
        cls = FluxDevDenoiser if self.distilled else FluxDenoiser
        self.denoiser = cls(self.transformer, self.device, self.train_steps)
        if true_cfg != 1.0:
            if not self.distilled:
                raise ValueError("true_cfg is for guidance-distilled FLUX; use guidance instead")
            self.denoiser.true_cfg = float(true_cfg)
        self.offload.attach(self.denoiser, self.transformer)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        offload: bool = False,
        **options: Any,
    ) -> Flux:
        """Load a saved FLUX.1 pipeline from a local directory (``local_files_only``);
        ``options`` as in the constructor."""
        root, index = read_index(path)
        parts = load_components(root, index, COMPONENTS, dtype=dtype, family="FLUX")
        return cls(**parts, device=device, dtype=dtype, offload=offload, **options)

    @property
    def default_guidance(self) -> float:
        """FLUX-dev's guidance 3.5 (embedded); 1.0 (no classifier-free guidance) without a
        guidance embedding."""
        return FluxDenoiser.guidance if self.distilled else 1.0

    # ------------------------------------------------------------ the ModelSpace contract
    def grid(self, steps: int, size: int | None = None) -> TimeGrid:
        """The grid ``FluxPipeline`` walks for ``size × size`` images (module docstring)."""
        if int(steps) != steps or steps < 1:
            raise ValueError(f"steps={steps!r} must be a positive integer")
        size = self.default_image_size if size is None else int(size)
        self.check_image_size(size, size)
        tokens = (size // (self.vae_scale_factor * 2)) ** 2
        sigmas = np.linspace(1.0, 1 / steps, int(steps)).astype(np.float32)
        mu = self._scheduler_mu(tokens, 1.15)
        shifted = static_shift(sigmas, self.shift) if mu is None else dynamic_shift(sigmas, mu)
        return custom_grid(np.asarray(shifted, dtype=np.float32).astype(np.float64))

    @property
    def default_image_size(self) -> int:
        """``FluxPipeline``'s default: 128 latent elements × the VAE factor (1024)."""
        return 128 * self.vae_scale_factor

    def encode_prompt(self, prompts: list[str] | tuple[str, ...]) -> dict[str, Tensor]:
        """``{"encoder_hidden_states": (B, L_T5, D_T5), "pooled_projections": (B, D_CLIP)}``
        (float32, on :attr:`device`) as ``FluxPipeline.encode_prompt`` makes them.

        Warns:
            UserWarning: for each prompt longer than an encoder's context; it is truncated.
        """
        prompts = check_prompts(prompts)
        out = self._clip(self.tokenizer, self.text_encoder, prompts, "text_encoder")
        width = int(self.transformer.config.joint_attention_dim)
        t5 = self._t5(self.tokenizer_2, self.text_encoder_2, prompts, width)
        return {"encoder_hidden_states": t5, "pooled_projections": out.pooler_output.float()}

    def __repr__(self) -> str:
        return (
            f"Flux(f={self.vae_scale_factor}, distilled={self.distilled}, device={self.device}, "
            f"dtype={self.dtype})"
        )
