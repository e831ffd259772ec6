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

Only this module (and :mod:`nidiff.models.diffusers_unet`) imports ``diffusers`` and
``transformers``, inside functions. Weights are read from a local directory only
(``local_files_only=True``); nothing is downloaded.
"""

from __future__ import annotations

import importlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..noise import IsotropicNoise
from ..schedule import DiscreteSchedule, TimeGrid, leading_grid
from .contract import ClassifierFreeGuidance
from .diffusers_unet import ConditionalUNetDenoiser

__all__ = ["COMPONENTS", "StableDiffusion"]

#: The pipeline components the adapter needs (sub-folders of a saved diffusers pipeline).
COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
_WITH_DTYPE = ("unet", "vae", "text_encoder")


class StableDiffusion:
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
    ):
        self.device = torch.device(device)
        self.dtype = dtype
        self.unet = _place(unet, self.device, dtype)
        self.vae = _place(vae, self.device, dtype)
        self.text_encoder = _place(text_encoder, self.device, dtype)
        self.tokenizer = tokenizer
        self.scheduler = scheduler
        schedule = DiscreteSchedule.from_diffusers(scheduler)
        prediction = getattr(scheduler.config, "prediction_type", "epsilon") or "epsilon"
        # Imported here: nidiff.process imports the samplers, which import nidiff.models.
        from ..process import Process

        self.process = Process(schedule, IsotropicNoise())
        self.denoiser = ConditionalUNetDenoiser(self.unet, prediction, schedule)
        cfg = self.vae.config
        self.vae_scale_factor = 2 ** (len(cfg.block_out_channels) - 1)
        self.scaling_factor = float(getattr(cfg, "scaling_factor", 1.0) or 1.0)
        shift = getattr(cfg, "shift_factor", None)
        self.shift_factor = 0.0 if shift is None else float(shift)
        self._null: Tensor | None = None

    # ------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
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
        root = Path(path)
        if not root.is_dir():
            raise ValueError(f"{root} is not a directory (expected a saved diffusers pipeline)")
        index_file = root / "model_index.json"
        if not index_file.is_file():
            raise ValueError(
                f"{root} is not a diffusers pipeline directory: it has no model_index.json"
            )
        try:
            index = json.loads(index_file.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{index_file} is not readable JSON ({err})") from err
        missing = [
            name
            for name in COMPONENTS
            if not _declared(index.get(name)) or not (root / name).is_dir()
        ]
        if missing:
            raise ValueError(
                f"the pipeline in {root} lacks the component(s) {', '.join(missing)} "
                f"(Stable Diffusion needs {', '.join(COMPONENTS)})"
            )
        parts = {name: _load_component(root, name, index[name], dtype) for name in COMPONENTS}
        return cls(**parts, device=device, dtype=dtype)

    # -------------------------------------------------------------------------- images
    def check_image_size(self, height: int, width: int) -> None:
        """Raise ``ValueError`` unless both sides are positive multiples of the VAE factor."""
        f = self.vae_scale_factor
        if height <= 0 or width <= 0 or height % f or width % f:
            raise ValueError(
                f"image size {height}x{width} must be a positive multiple of the VAE's "
                f"downsampling factor {f} on both sides (e.g. {max(f, height // f * f)}x"
                f"{max(f, width // f * f)})"
            )

    # ------------------------------------------------------------ the ModelSpace contract
    factor = property(lambda self: self.vae_scale_factor, doc="VAE factor (ModelSpace).")

    def encode(self, images: Tensor) -> Tensor:
        """:meth:`encode_image` (the :class:`~nidiff.models.space.ModelSpace` contract)."""
        return self.encode_image(images)

    def decode(self, x0: Tensor) -> Tensor:
        """:meth:`decode_latents` (the :class:`~nidiff.models.space.ModelSpace` contract)."""
        return self.decode_latents(x0)

    def condition(self, names) -> list:
        """Prompt embeddings ``(1, L, D)`` (``None`` stays ``None``); one batched encode."""
        prompts = [n for n in names if n is not None]
        if not prompts:
            return [None for _ in names]
        it = iter(self.encode_prompt([str(p) for p in prompts]).split(1))
        return [None if n is None else next(it) for n in names]

    def grid(self, steps: int) -> TimeGrid:
        """:meth:`leading_grid`: the pipeline's own grid (``steps_offset`` included)."""
        return self.leading_grid(steps)

    def leading_grid(self, steps: int) -> TimeGrid:
        """The pipeline's own ``steps``-step grid: "leading" spacing with its scheduler's
        ``steps_offset`` (1 for SD 1.x), the times diffusers' pipeline visits."""
        offset = int(getattr(self.scheduler.config, "steps_offset", 0) or 0)
        return leading_grid(self.process.schedule, steps, offset=offset)

    @property
    def default_image_size(self) -> int:
        """The side the UNet was trained for in pixels (``sample_size × f``; 512 for SD 1.x)."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @torch.no_grad()
    def encode_image(self, images: Tensor) -> Tensor:
        r"""Images ``(B, 3, H, W)`` in ``[-1, 1]`` → latents :math:`z_0` ``(B, C_z, H/f, W/f)``.

        :math:`z_0 = (\mathrm{mode}(q(z \mid x)) - \text{shift})\cdot\text{scaling\_factor}`:
        the posterior mode (deterministic), scaled like the latents the UNet was trained on.
        Returned as float32 on :attr:`device`; ``images`` is not modified.

        Raises:
            ValueError: for a non-floating or wrongly shaped tensor, or sides that are not
                multiples of :attr:`vae_scale_factor`.
        """
        if not isinstance(images, Tensor) or not images.is_floating_point() or images.ndim != 4:
            raise ValueError("images must be a floating tensor (B, 3, H, W) in [-1, 1]")
        if images.shape[1] != self.vae.config.in_channels:
            raise ValueError(
                f"images have {images.shape[1]} channels; the VAE takes "
                f"{self.vae.config.in_channels}"
            )
        self.check_image_size(int(images.shape[2]), int(images.shape[3]))
        x = images.to(device=self.device, dtype=self.dtype)
        mode = self.vae.encode(x).latent_dist.mode()
        return ((mode.float() - self.shift_factor) * self.scaling_factor).contiguous()

    @torch.no_grad()
    def decode_latents(self, z: Tensor) -> Tensor:
        """Latents ``(B, C_z, h, w)`` → images ``(B, 3, h·f, w·f)``, float32, clamped to
        ``[-1, 1]`` (the inverse scaling of :meth:`encode_image`, then the VAE decoder)."""
        if not isinstance(z, Tensor) or not z.is_floating_point() or z.ndim != 4:
            raise ValueError("z must be a floating latent tensor (B, C, h, w)")
        if z.shape[1] != self.vae.config.latent_channels:
            raise ValueError(
                f"z has {z.shape[1]} channels; the VAE's latents have "
                f"{self.vae.config.latent_channels}"
            )
        x = z.to(device=self.device, dtype=torch.float32) / self.scaling_factor
        x = x + self.shift_factor
        return self.vae.decode(x.to(self.dtype)).sample.float().clamp(-1.0, 1.0)

    def load_image(self, path: str | os.PathLike, size: int | None = None) -> Tensor:
        """Read an image file as ``(1, 3, size, size)`` in ``[-1, 1]`` on :attr:`device`.

        The image is turned upright (EXIF), converted to RGB, **centre-cropped to the largest
        square and resized** to ``size × size`` with bicubic resampling
        (:func:`nidiff.data.folder.load_image`). ``size`` defaults to
        :attr:`default_image_size` and must be a multiple of :attr:`vae_scale_factor`.

        Raises:
            FileNotFoundError: if ``path`` does not exist.
            ValueError: for an unreadable file or an unsupported ``size``.
        """
        from ..data.folder import load_image

        size = self.default_image_size if size is None else size
        if isinstance(size, bool) or int(size) != size:
            raise ValueError(f"size={size!r} must be an integer")
        self.check_image_size(int(size), int(size))
        return load_image(path, int(size), channels=3).unsqueeze(0).to(self.device)

    # --------------------------------------------------------------------------- text
    def encode_prompt(self, prompts: list[str] | tuple[str, ...]) -> Tensor:
        """Text embeddings ``(B, L, D)`` (float32, on :attr:`device`) for ``B`` prompts.

        Prompts are padded to the tokenizer's ``model_max_length`` ``L`` (77 for SD 1.x), and
        the text encoder's last hidden state is returned, as the diffusers pipeline does.

        Warns:
            UserWarning: for each prompt longer than ``L`` tokens; it is truncated.
        """
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompts must be a list of strings (wrap a single prompt in [...])")
        if len(prompts) == 0:
            raise ValueError("prompts must not be empty")
        prompts = list(prompts)
        L = int(self.tokenizer.model_max_length)
        full = self.tokenizer(prompts, padding=False, truncation=False, verbose=False).input_ids
        for i, ids in enumerate(full):
            if len(ids) > L:
                kept = self.tokenizer.decode(ids[1 : L - 1])
                warnings.warn(
                    f"prompt {i} has {len(ids)} tokens, more than the text encoder's {L}: it is "
                    f"truncated to {kept!r}",
                    stacklevel=2,
                )
        tok = self.tokenizer(
            prompts, padding="max_length", max_length=L, truncation=True, return_tensors="pt"
        )
        mask = None
        if getattr(self.text_encoder.config, "use_attention_mask", False):
            mask = tok.attention_mask.to(self.device)
        with torch.no_grad():
            states = self.text_encoder(tok.input_ids.to(self.device), attention_mask=mask)[0]
        return states.float()

    def null_cond(self) -> Tensor:
        """The empty-prompt embedding ``(1, L, D)``: the unconditional branch of guidance
        (computed once, cached; a new tensor is returned each call)."""
        if self._null is None:
            self._null = self.encode_prompt([""])
        return self._null.clone()

    def guided(self, scale: float) -> ClassifierFreeGuidance:
        """:attr:`denoiser` under classifier-free guidance ``scale`` with :meth:`null_cond`."""
        return ClassifierFreeGuidance(self.denoiser, scale, self.null_cond())

    def __repr__(self) -> str:
        return (
            f"StableDiffusion(latent_channels={self.vae.config.latent_channels}, "
            f"f={self.vae_scale_factor}, T={self.process.schedule.T}, "
            f"prediction={self.denoiser.prediction!r}, device={self.device}, dtype={self.dtype})"
        )


def _place(module: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """Frozen eval-mode ``module`` on ``device`` in ``dtype`` (cast only if it differs)."""
    if next(module.parameters()).dtype != dtype:
        module = module.to(dtype=dtype)
    return module.to(device=device).eval().requires_grad_(False)


def _declared(entry: Any) -> bool:
    """Whether a ``model_index.json`` entry names a class (``[library, class]``, not nulls)."""
    return (
        isinstance(entry, (list, tuple))
        and len(entry) == 2
        and all(isinstance(v, str) and v for v in entry)
    )


def _load_component(root: Path, name: str, entry: list[str], dtype: torch.dtype) -> Any:
    """Load component ``name`` with the ``[library, class]`` of ``model_index.json``."""
    library, class_name = entry
    if library not in ("diffusers", "transformers"):
        raise ValueError(
            f"component {name!r} comes from {library!r}; expected diffusers or transformers"
        )
    cls = getattr(importlib.import_module(library), class_name, None)
    if cls is None:
        raise ValueError(f"component {name!r}: {library} has no class {class_name!r}")
    kwargs: dict[str, Any] = {"subfolder": name, "local_files_only": True}
    if name in _WITH_DTYPE:
        kwargs["torch_dtype"] = dtype
    try:
        return cls.from_pretrained(str(root), **kwargs)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"cannot load component {name!r} from {root / name}: {err}") from err
