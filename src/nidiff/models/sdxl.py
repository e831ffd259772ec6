r"""Stable Diffusion XL (Podell et al., 2023) as nidiff parts: a :class:`StableDiffusionXL` space.

What differs from SD 1.x/2.x (:mod:`nidiff.models.stable_diffusion`, whose VP process, paper
time ``t`` = diffusers timestep + 1 and UNet adapter it shares):

* **two text encoders** — CLIP ViT-L and OpenCLIP bigG; the prompt embedding is the
  concatenation of both penultimate hidden states ``(B, 77, 768 + 1280)``, and the second
  encoder's projected final token is the **pooled embedding** ``(B, 1280)``;
* **size/crop time ids** — base-model conditioning ``(H, W, 0, 0, H, W)``: original size =
  target size = the image's, no crop (what ``StableDiffusionXLPipeline`` sends by default),
  computed by the denoiser from the latent's size unless the condition holds ``time_ids``;
* **the unconditional condition** — zeros for both embeddings when the pipeline says
  ``force_zeros_for_empty_prompt`` (SDXL base), else the empty prompt's;
* **the VAE** — runs in float32 when the networks are float16 and its config asks
  ``force_upcast`` (SDXL's VAE overflows in half precision).

A condition is the flat dict ``{"encoder_hidden_states": (B, L, D), "text_embeds": (B, P)}``
(optionally ``"time_ids": (B, 6)``), batchable by :func:`~nidiff.models.contract.concat_cond`
and storable in inversion files. The grid is the scheduler's own (``leading`` spacing with
``steps_offset``, or ``trailing``); SDXL's ``EulerDiscreteScheduler`` is, step for step, DDIM
with η = 0 in nidiff (Euler on the probability-flow ODE in :math:`\sigma = \sqrt{(1-\bar\alpha)
/\bar\alpha}` is DDIM), so ``--sampler ddim`` reproduces the pipeline. The refiner (text encoder
2 only, aesthetic-score conditioning) is not supported.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor, nn

from ..noise import IsotropicNoise
from ..schedule import DiscreteSchedule, TimeGrid, leading_grid, trailing_grid
from .diffusers_unet import ConditionalUNetDenoiser
from .latent import LatentPipeline, check_prompts, load_components, read_index, tokenize

__all__ = ["COMPONENTS", "SDXLUNetDenoiser", "StableDiffusionXL", "discrete_grid"]

#: The components the adapter needs (sub-folders of a saved ``StableDiffusionXLPipeline``).
COMPONENTS = (
    "unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler",
)  # fmt: skip
_SIGMA_OPTIONS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")


class SDXLUNetDenoiser(ConditionalUNetDenoiser):
    """SDXL's UNet as a nidiff model (ε, v or x0 prediction as its scheduler says).

    ``cond``: ``{"encoder_hidden_states": (B, L, D), "text_embeds": (B, P)}``, optionally
    ``"time_ids": (B, 6)``; without them the base model's ``(H, W, 0, 0, H, W)`` with
    ``H, W`` = the latent's size × ``factor``. Other keys are passed to the UNet as they are.
    """

    def __init__(self, unet: nn.Module, prediction: str, schedule: Any, factor: int):
        super().__init__(unet, prediction, schedule)
        self.factor = int(factor)

    def forward(self, x_t: Tensor, t: Tensor | float, cond: Any = None) -> Tensor:
        if isinstance(cond, dict) and "time_ids" not in cond:
            H, W = (int(s) * self.factor for s in x_t.shape[-2:])
            ids = torch.tensor([H, W, 0, 0, H, W], dtype=torch.float32, device=x_t.device)
            cond = {**cond, "time_ids": ids.expand(x_t.shape[0], 6)}
        return super().forward(x_t, t, cond)

    def _cond_kwargs(self, cond: Any, B: int, device: torch.device) -> dict[str, Any]:
        if not isinstance(cond, dict) or "text_embeds" not in cond:
            raise ValueError(
                "SDXL's UNet takes cond = {'encoder_hidden_states': (B, L, D), 'text_embeds': "
                "(B, P)} (StableDiffusionXL.encode_prompt)"
            )
        rest = dict(cond)
        added = {}
        for key in ("text_embeds", "time_ids"):
            v = rest.pop(key)
            if v.shape[0] != B:
                raise ValueError(f"{key} of batch {v.shape[0]} does not fit batch {B}")
            added[key] = v.to(device=device, dtype=self._net.dtype)
        kwargs = super()._cond_kwargs(rest, B, device)
        kwargs["added_cond_kwargs"] = added
        return kwargs


class StableDiffusionXL(LatentPipeline):
    """An SDXL base pipeline's UNet, VAE, two text encoders and schedule (module docstring).

    Args:
        unet, vae: ``diffusers.UNet2DConditionModel`` (``addition_embed_type="text_time"``) and
            ``AutoencoderKL``.
        text_encoder, text_encoder_2: ``CLIPTextModel`` and ``CLIPTextModelWithProjection``.
        tokenizer, tokenizer_2: their tokenizers (context length ``model_max_length``).
        scheduler: the pipeline's scheduler (``alphas_cumprod``, ``prediction_type``, spacing).
        force_zeros_for_empty_prompt: zero embeddings as the unconditional condition (SDXL
            base's ``model_index.json`` says ``true``).
        device, dtype, offload: as in :class:`~nidiff.models.stable_diffusion.StableDiffusion`.
    """

    family = "sdxl"
    upcast_vae = True
    default_guidance = 5.0

    def __init__(
        self,
        unet: nn.Module,
        vae: nn.Module,
        text_encoder: nn.Module,
        text_encoder_2: nn.Module,
        tokenizer: Any,
        tokenizer_2: Any,
        scheduler: Any,
        *,
        force_zeros_for_empty_prompt: bool = True,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        offload: bool = False,
        negative_prompt: str = "",
    ):
        from ..process import Process

        self._init_latent(vae, device, dtype, offload, negative_prompt)
        self.unet = self._network(unet)
        self.text_encoder = self._network(text_encoder)
        self.text_encoder_2 = self._network(text_encoder_2)
        self.tokenizer, self.tokenizer_2, self.scheduler = tokenizer, tokenizer_2, scheduler
        self.force_zeros = bool(force_zeros_for_empty_prompt)
        for flag in _SIGMA_OPTIONS:
            if getattr(scheduler.config, flag, False):
                raise ValueError(
                    f"the scheduler's {flag}=True is not supported: nidiff walks the ᾱ table at "
                    "the scheduler's timesteps (leading or trailing spacing)"
                )
        schedule = DiscreteSchedule.from_diffusers(scheduler)
        prediction = getattr(scheduler.config, "prediction_type", "epsilon") or "epsilon"
        self.process = Process(schedule, IsotropicNoise())
        self.denoiser = SDXLUNetDenoiser(self.unet, prediction, schedule, self.vae_scale_factor)
        self.offload.attach(self.denoiser, self.unet)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        offload: bool = False,
        **options: Any,
    ) -> StableDiffusionXL:
        """Load a saved SDXL base pipeline from a local directory (``local_files_only``).

        Raises:
            ValueError: not a pipeline directory, a refiner (no first text encoder, aesthetic
                score conditioning), a missing component, or one that cannot be loaded.
        """
        root, index = read_index(path)
        refiner = index.get("text_encoder") in (None, [None, None])
        if refiner or index.get("requires_aesthetics_score"):
            raise ValueError(
                f"{root} is an SDXL refiner (aesthetic-score conditioning, one text encoder); "
                "nidiff supports the SDXL base model"
            )
        parts = load_components(root, index, COMPONENTS, dtype=dtype, family="SDXL")
        zeros = bool(index.get("force_zeros_for_empty_prompt", True))
        return cls(
            **parts, force_zeros_for_empty_prompt=zeros, device=device, dtype=dtype,
            offload=offload, **options,
        )  # fmt: skip

    # ------------------------------------------------------------ the ModelSpace contract
    def grid(self, steps: int, size: int | None = None) -> TimeGrid:
        """The scheduler's own grid (:func:`discrete_grid`); ``size`` plays no part."""
        return discrete_grid(self.process.schedule, self.scheduler, steps)

    @property
    def default_image_size(self) -> int:
        """The UNet's training side in pixels (``sample_size × f``; 1024 for SDXL)."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    def encode_prompt(self, prompts: list[str] | tuple[str, ...]) -> dict[str, Tensor]:
        """``{"encoder_hidden_states": (B, L, D1 + D2), "text_embeds": (B, P)}`` (float32, on
        :attr:`device`): both encoders' penultimate hidden states, concatenated, and the second
        encoder's pooled projection, as ``StableDiffusionXLPipeline.encode_prompt`` makes them.

        Warns:
            UserWarning: for each prompt longer than an encoder's context; it is truncated.
        """
        prompts = check_prompts(prompts)
        states, pooled = [], None
        pairs = ((self.tokenizer, self.text_encoder), (self.tokenizer_2, self.text_encoder_2))
        for i, (tok, enc) in enumerate(pairs):
            name = "text_encoder" + ("_2" if i else "")
            ids = tokenize(tok, prompts, int(tok.model_max_length), name).input_ids
            self.offload.use(enc)
            with torch.no_grad():
                out = enc(ids.to(self.device), output_hidden_states=True)
            states.append(out.hidden_states[-2].float())
            pooled = out[0].float()  # the second encoder's projected text embedding
        return {"encoder_hidden_states": torch.cat(states, dim=-1), "text_embeds": pooled}

    def _encode_null(self) -> dict[str, Tensor]:
        cond = self.encode_prompt([self.negative_prompt])
        zeros = self.force_zeros and not self.negative_prompt  # diffusers': only with none
        return {k: torch.zeros_like(v) for k, v in cond.items()} if zeros else cond

    def __repr__(self) -> str:
        return (
            f"StableDiffusionXL(f={self.vae_scale_factor}, T={self.process.schedule.T}, "
            f"prediction={self.denoiser.prediction!r}, device={self.device}, dtype={self.dtype})"
        )


def discrete_grid(schedule: DiscreteSchedule, scheduler: Any, steps: int) -> TimeGrid:
    """The times a discrete diffusers scheduler visits for ``steps`` steps, in paper time:
    ``leading`` spacing with its ``steps_offset`` (SDXL), or ``trailing``.

    Raises:
        ValueError: for another ``timestep_spacing`` (``linspace`` gives non-integer
            timesteps in the Euler schedulers).
    """
    cfg = scheduler.config
    spacing = getattr(cfg, "timestep_spacing", "leading") or "leading"
    if spacing == "leading":
        offset = int(getattr(cfg, "steps_offset", 0) or 0)
        return leading_grid(schedule, steps, offset=offset)
    if spacing == "trailing":
        return trailing_grid(schedule, steps)
    raise ValueError(
        f"the scheduler's timestep_spacing={spacing!r} is not supported; use 'leading' or "
        "'trailing'"
    )
