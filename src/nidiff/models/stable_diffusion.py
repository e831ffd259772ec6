r"""A latent diffusion model (a diffusers Stable Diffusion pipeline) as nidiff parts.

:class:`StableDiffusion` splits a saved pipeline into what nidiff's methods take:

* :attr:`~StableDiffusion.denoiser` — the UNet as a model ``out = model(z_t, t, cond)``
  (:class:`~nidiff.models.diffusers_unet.ConditionalUNetDenoiser`, ε-prediction or converted),
  with ``cond`` the text embedding ``(B, L, D)`` of :meth:`~StableDiffusion.encode_prompt`;
* :attr:`~StableDiffusion.process` — ``Process(DiscreteSchedule.from_diffusers(scheduler),
  IsotropicNoise())``: the pipeline's own :math:`\bar\alpha` table, in paper time
  (``t`` = diffusers timestep + 1);
* :meth:`~StableDiffusion.encode_image` / :meth:`~StableDiffusion.decode_latents` — the VAE
  between images in ``[-1, 1]`` and latents :math:`z_0`;
* :meth:`~StableDiffusion.null_cond` — the empty-prompt embedding, the unconditional branch of
  classifier-free guidance.

Every method of nidiff (NGDM, edit-friendly inversion, SDEdit, DDIM inversion, …) then runs on
latents exactly as on pixels: weighting maps and :math:`\lambda` live at latent resolution
(``H / f × W / f`` for the VAE's downsampling factor ``f``, 64×64 for 512² in SD 1.x), shared by
the latent channels. Prompt-to-Prompt attention control lives in :mod:`nidiff.models.attention`
(processors installed on :attr:`StableDiffusion.unet` for the duration of a call) and
:func:`nidiff.editing.p2p_edit_friendly`.

Latents. ``encode_image`` returns the **mode** (mean) of the VAE's posterior times the
scaling factor (``(mode - shift_factor) * scaling_factor`` where the VAE defines a shift), not
a sample: encoding is deterministic, so inversions and edits depend only on their own noise.

The VAE, the size rule, image files and loading are shared with the other latent families
(:class:`~nidiff.models.latent.LatentPipeline`: SDXL, SD3, FLUX). The adapters import
``diffusers`` and ``transformers`` inside functions only. Weights are read from a local
directory only (``local_files_only=True``); nothing is downloaded.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor, nn

from ..noise import IsotropicNoise
from ..schedule import DiscreteSchedule, TimeGrid, leading_grid
from .diffusers_unet import ConditionalUNetDenoiser
from .latent import LatentPipeline, check_prompts, load_components, read_index, tokenize

__all__ = ["COMPONENTS", "StableDiffusion"]

#: The pipeline components the adapter needs (sub-folders of a saved diffusers pipeline).
COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


class StableDiffusion(LatentPipeline):
    """A Stable Diffusion pipeline's UNet, VAE, text encoder and schedule (module docstring).

    Build it with :meth:`from_pretrained` (a saved pipeline directory) or directly from loaded
    components. The networks are put in eval mode on ``device``; nidiff never trains them.

    Args:
        unet: a ``diffusers.UNet2DConditionModel``.
        vae: a ``diffusers.AutoencoderKL``.
        text_encoder: a ``transformers.CLIPTextModel`` (or compatible).
        tokenizer: its tokenizer (``model_max_length`` is the context length ``L``).
        scheduler: any diffusers scheduler with ``alphas_cumprod``; its
            ``config.prediction_type`` (``epsilon``, ``v_prediction``, ``sample``) tells how to
            read the UNet's output.
        device, dtype: where and in which precision the networks run. Latents, images and
            embeddings returned by the methods are float32 on ``device`` whatever ``dtype`` is.
        offload: keep the networks on the CPU and move each to ``device`` only while it is used
            (:class:`~nidiff.models.latent.Offload`).

    Attributes:
        denoiser: the UNet as a nidiff model (:class:`ConditionalUNetDenoiser`).
        process: the pipeline's diffusion process (its own ᾱ, isotropic noise).
        vae_scale_factor: the VAE's downsampling factor ``f = 2**(len(block_out_channels)-1)``.
        scaling_factor, shift_factor: the latent normalisation of the VAE config.
    """

    def __init__(
        self,
        unet: nn.Module,
        vae: nn.Module,
        text_encoder: nn.Module,
        tokenizer: Any,
        scheduler: Any,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        offload: bool = False,
        negative_prompt: str = "",
    ):
        self._init_latent(vae, device, dtype, offload, negative_prompt)
        self.unet = self._network(unet)
        self.text_encoder = self._network(text_encoder)
        self.tokenizer = tokenizer
        self.scheduler = scheduler
        schedule = DiscreteSchedule.from_diffusers(scheduler)
        prediction = getattr(scheduler.config, "prediction_type", "epsilon") or "epsilon"
        # Imported here: nidiff.process imports the samplers, which import nidiff.models.
        from ..process import Process

        self.process = Process(schedule, IsotropicNoise())
        self.denoiser = ConditionalUNetDenoiser(self.unet, prediction, schedule)
        self.offload.attach(self.denoiser, self.unet)

    # ------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        offload: bool = False,
        **options: Any,
    ) -> StableDiffusion:
        """Load a pipeline saved with ``save_pretrained`` from a **local directory** (never the
        Hub: ``local_files_only=True``).

        Each component is loaded with the class named in ``model_index.json``, from its
        sub-folder; other components (safety checker, feature extractor) are ignored.

        Raises:
            ValueError: if ``path`` is not a directory holding a diffusers pipeline
                (``model_index.json``), if a component of :data:`COMPONENTS` is missing from the
                index or from disk, or if a component cannot be loaded (the message names it).
        """
        root, index = read_index(path)
        parts = load_components(root, index, COMPONENTS, dtype=dtype)
        return cls(**parts, device=device, dtype=dtype, offload=offload, **options)

    #: Stable Diffusion's usual guidance scale.
    default_guidance = 7.5

    # ------------------------------------------------------------ the ModelSpace contract
    def grid(self, steps: int, size: int | None = None) -> TimeGrid:
        """:meth:`leading_grid`: the pipeline's own grid (``steps_offset`` included); ``size``
        plays no part."""
        return self.leading_grid(steps)

    def pipeline_grid(self, steps: int) -> TimeGrid:
        """:meth:`grid` with diffusers' own last step: with ``set_alpha_to_one=False`` (SD 1.x's
        DDIM scheduler) the pipeline's final step lands on ᾱ of the first training step, paper
        time 1, and returns that state; this grid does the same, so a DDIM run reproduces the
        pipeline exactly. Edit-friendly inversion needs the clean end (:meth:`grid`)."""
        grid = self.grid(steps)
        if getattr(self.scheduler.config, "set_alpha_to_one", True):
            return grid
        return grid.ending_at(1.0)

    def leading_grid(self, steps: int) -> TimeGrid:
        """The pipeline's own ``steps``-step grid: "leading" spacing with its scheduler's
        ``steps_offset`` (1 for SD 1.x), the times diffusers' pipeline visits."""
        offset = int(getattr(self.scheduler.config, "steps_offset", 0) or 0)
        return leading_grid(self.process.schedule, steps, offset=offset)

    @property
    def default_image_size(self) -> int:
        """The side the UNet was trained for in pixels (``sample_size × f``; 512 for SD 1.x)."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    # --------------------------------------------------------------------------- text
    def encode_prompt(self, prompts: list[str] | tuple[str, ...]) -> Tensor:
        """Text embeddings ``(B, L, D)`` (float32, on :attr:`device`) for ``B`` prompts.

        Prompts are padded to the tokenizer's ``model_max_length`` ``L`` (77 for SD 1.x), and
        the text encoder's last hidden state is returned, as the diffusers pipeline does.

        Warns:
            UserWarning: for each prompt longer than ``L`` tokens; it is truncated.
        """
        prompts = check_prompts(prompts)
        L = int(self.tokenizer.model_max_length)
        tok = tokenize(self.tokenizer, prompts, L, "the text encoder")
        mask = None
        if getattr(self.text_encoder.config, "use_attention_mask", False):
            mask = tok.attention_mask.to(self.device)
        self.offload.use(self.text_encoder)
        with torch.no_grad():
            states = self.text_encoder(tok.input_ids.to(self.device), attention_mask=mask)[0]
        return states.float()

    def __repr__(self) -> str:
        return (
            f"StableDiffusion(latent_channels={self.vae.config.latent_channels}, "
            f"f={self.vae_scale_factor}, T={self.process.schedule.T}, "
            f"prediction={self.denoiser.prediction!r}, device={self.device}, dtype={self.dtype})"
        )
