r"""Stable Diffusion 3 / 3.5 (Esser et al., 2024) as nidiff parts: a :class:`StableDiffusion3`
space.

* **MMDiT** — ``SD3Transformer2DModel`` on the 16-channel latent, patch 2 (image sides must be
  multiples of VAE factor 8 × patch 2 = 16), velocity prediction on rectified flow
  (:mod:`nidiff.models.flow_pipeline`); it takes ``timestep = sigma × 1000``;
* **three text encoders** — two CLIP encoders with projection (penultimate hidden states,
  concatenated and zero-padded to T5's width; pooled projections concatenated) and T5-XXL
  (``max_sequence_length`` = 256 tokens), whose states follow CLIP's along the sequence:
  ``encoder_hidden_states (B, 77 + 256, 4096)``, ``pooled_projections (B, 2048)``. T5 is
  optional, as diffusers allows: without it its part is zeros;
* **VAE** — 16 channels, :math:`z_0 = (\mathrm{mode} - \text{shift\_factor})\cdot
  \text{scaling\_factor}`;
* **grid** — ``FlowMatchEulerDiscreteScheduler.set_timesteps`` with the scheduler's static shift
  (3.0) or, if it says so, the dynamic shift of the image's token count.

The unconditional condition is the empty prompt's, as ``StableDiffusion3Pipeline`` encodes it.
``flow-euler`` is the pipeline's own sampler; ``ddpm`` the stochastic one for edit-friendly
inversion.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor, nn

from ..schedule import TimeGrid, flow_grid
from .flow_pipeline import FlowPipeline, TransformerDenoiser
from .latent import check_prompts, load_components, read_index

__all__ = ["COMPONENTS", "OPTIONAL", "SD3Denoiser", "StableDiffusion3"]

#: Components the adapter needs, and the optional T5 encoder.
COMPONENTS = (
    "transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2",
    "scheduler",
)  # fmt: skip
OPTIONAL = ("text_encoder_3", "tokenizer_3")


class SD3Denoiser(TransformerDenoiser):
    """``SD3Transformer2DModel`` as a nidiff model: the velocity at ``(x_t, sigma)``."""

    def _velocity(self, x_t: Tensor, t: Tensor | float, cond: Any) -> Tensor:
        x, sigma, states, pooled = self._inputs(x_t, t, cond)
        return self.transformer(
            hidden_states=x, timestep=sigma * self.train_steps, encoder_hidden_states=states,
            pooled_projections=pooled, return_dict=False,
        )[0]  # fmt: skip


class StableDiffusion3(FlowPipeline):
    """An SD3/3.5 pipeline's transformer, VAE, text encoders and scheduler (module docstring).

    Args:
        transformer, vae, scheduler: ``SD3Transformer2DModel``, ``AutoencoderKL``,
            ``FlowMatchEulerDiscreteScheduler``.
        text_encoder, text_encoder_2: ``CLIPTextModelWithProjection`` (L and bigG).
        tokenizer, tokenizer_2: their tokenizers.
        text_encoder_3, tokenizer_3: T5 and its tokenizer, or ``None`` (zeros in its place).
        max_sequence_length: T5's padded length (the pipeline's default 256).
        device, dtype, offload: as in :class:`~nidiff.models.stable_diffusion.StableDiffusion`.
    """

    family = "sd3"
    patch_name = "patch"
    default_guidance = 7.0

    def __init__(
        self,
        transformer: nn.Module,
        vae: nn.Module,
        text_encoder: nn.Module,
        text_encoder_2: nn.Module,
        tokenizer: Any,
        tokenizer_2: Any,
        scheduler: Any,
        text_encoder_3: nn.Module | None = None,
        tokenizer_3: Any = None,
        *,
        max_sequence_length: int = 256,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        offload: bool = False,
        negative_prompt: str = "",
    ):
        if (text_encoder_3 is None) != (tokenizer_3 is None):
            raise ValueError("give the T5 encoder text_encoder_3 with its tokenizer_3, or neither")
        self._init_latent(vae, device, dtype, offload, negative_prompt)
        self._init_flow(transformer, scheduler)
        self.patch = int(self.transformer.config.patch_size)
        self.text_encoder = self._network(text_encoder)
        self.text_encoder_2 = self._network(text_encoder_2)
        self.text_encoder_3 = None if text_encoder_3 is None else self._network(text_encoder_3)
        self.tokenizer, self.tokenizer_2, self.tokenizer_3 = tokenizer, tokenizer_2, tokenizer_3
        self.max_sequence_length = int(max_sequence_length)
        self.denoiser = SD3Denoiser(self.transformer, self.device, self.train_steps)
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
    ) -> StableDiffusion3:
        """Load a saved SD3/3.5 pipeline from a local directory (``local_files_only``); a
        pipeline saved without T5 (``text_encoder_3`` null) runs without it."""
        root, index = read_index(path)
        parts = load_components(root, index, COMPONENTS, OPTIONAL, dtype=dtype, family="SD3")
        if (parts["text_encoder_3"] is None) != (parts["tokenizer_3"] is None):
            parts["text_encoder_3"] = parts["tokenizer_3"] = None
        return cls(**parts, device=device, dtype=dtype, offload=offload, **options)

    # ------------------------------------------------------------ the ModelSpace contract
    def grid(self, steps: int, size: int | None = None) -> TimeGrid:
        """``set_timesteps(steps)`` of the pipeline's scheduler: static shift, or the dynamic
        shift of the token count of ``size × size`` images (default
        :attr:`default_image_size`)."""
        size = self.default_image_size if size is None else int(size)
        tokens = (size // (self.vae_scale_factor * self.patch)) ** 2
        mu = self._scheduler_mu(tokens, 1.16)
        if mu is not None:
            return flow_grid(steps, mu=mu, train_steps=self.train_steps)
        return flow_grid(steps, shift=self.shift, train_steps=self.train_steps)

    @property
    def default_image_size(self) -> int:
        """The transformer's training side (``sample_size × f``; 1024 for SD3)."""
        return int(self.transformer.config.sample_size) * self.vae_scale_factor

    def encode_prompt(self, prompts: list[str] | tuple[str, ...]) -> dict[str, Tensor]:
        """``{"encoder_hidden_states": (B, 77 + L_T5, D_T5), "pooled_projections": (B, P)}``
        (float32, on :attr:`device`) as ``StableDiffusion3Pipeline.encode_prompt`` makes them.

        Warns:
            UserWarning: for each prompt longer than an encoder's context; it is truncated.
        """
        prompts = check_prompts(prompts)
        outs = [
            self._clip(self.tokenizer, self.text_encoder, prompts, "text_encoder"),
            self._clip(self.tokenizer_2, self.text_encoder_2, prompts, "text_encoder_2"),
        ]
        clip = torch.cat([o.hidden_states[-2].float() for o in outs], dim=-1)
        pooled = torch.cat([o[0].float() for o in outs], dim=-1)
        width = int(self.transformer.config.joint_attention_dim)
        t5 = self._t5(self.tokenizer_3, self.text_encoder_3, prompts, width)
        clip = torch.nn.functional.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
        states = torch.cat([clip, t5], dim=-2)
        return {"encoder_hidden_states": states, "pooled_projections": pooled}

    def __repr__(self) -> str:
        return (
            f"StableDiffusion3(f={self.vae_scale_factor}, patch={self.patch}, shift="
            f"{self.shift:g}, t5={self.text_encoder_3 is not None}, device={self.device}, "
            f"dtype={self.dtype})"
        )
