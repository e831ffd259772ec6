r"""What every latent text-to-image adapter shares (SD 1.x/2.x, SDXL, SD3, FLUX).

* :class:`LatentPipeline` — the base of the adapters: the VAE between images in ``[-1, 1]`` and
  latents :math:`z_0` (posterior **mode**, then the VAE's shift and scale), the family's size
  rule, image files, the cached unconditional condition;
* :func:`tokenize` — prompts padded to a text encoder's context, truncated with a warning;
* :class:`Offload` — ``enable_model_cpu_offload``-like: with ``offload=True`` every network lives
  on the CPU and is moved to the execution device when it is used, evicting the one used before
  (one network on the device at a time).

Loading a saved pipeline directory is :mod:`nidiff.models.pipeline_dir`; ``diffusers`` and
``transformers`` are imported inside functions only.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .contract import ClassifierFreeGuidance
from .pipeline_dir import load_components, place, read_index

__all__ = [
    "LatentPipeline",
    "Offload",
    "clone_cond",
    "load_components",
    "read_index",
    "repeat_cond",
    "slice_cond",
    "split_cond",
    "tokenize",
]


class Offload:
    """Which network is on the execution device (``diffusers``' ``enable_model_cpu_offload``).

    Disabled, every network is placed on ``device`` once and :meth:`use` does nothing. Enabled,
    networks are kept on the CPU; :meth:`use` moves one to ``device`` and the previously used one
    back, so the device holds the largest network plus activations, at the price of one
    host-device copy per switch (text encoders → denoiser once per prompt encoding, not per step).

    Attributes:
        resident: the network now on the device (``None`` before the first use).
        moves: how many networks were moved onto the device (for tests and reports).
    """

    def __init__(self, device: torch.device, enabled: bool = False):
        self.device, self.enabled = torch.device(device), bool(enabled)
        self.resident: nn.Module | None = None
        self.moves = 0

    @property
    def home(self) -> torch.device:
        """Where networks live between uses: the CPU with offload, else the device."""
        return torch.device("cpu") if self.enabled else self.device

    def use(self, module: nn.Module | None) -> None:
        """Put ``module`` on the device (and, with offload, the one used before back home)."""
        if not self.enabled or module is None or module is self.resident:
            return
        if self.resident is not None:
            self.resident.to(self.home)
        module.to(self.device)
        self.resident, self.moves = module, self.moves + 1

    def attach(self, denoiser: nn.Module, network: nn.Module) -> None:
        """Move ``network`` to the device whenever ``denoiser`` is called (a forward pre-hook)."""
        if self.enabled:
            denoiser.register_forward_pre_hook(lambda _module, _args: self.use(network))


def tokenize(tokenizer: Any, prompts: Sequence[str], max_length: int, name: str) -> Any:
    """The tokenizer's encoding of ``prompts`` (``input_ids`` and ``attention_mask``
    ``(B, max_length)``), padded and truncated to ``max_length`` as the diffusers pipelines do.

    Warns:
        UserWarning: for each prompt longer than ``max_length`` tokens, naming the encoder
            ``name`` and the text that is kept.
    """
    full = tokenizer(list(prompts), padding=False, truncation=False, verbose=False).input_ids
    tok = tokenizer(
        list(prompts), padding="max_length", max_length=max_length, truncation=True,
        return_tensors="pt",
    )  # fmt: skip
    for i, ids in enumerate(full):
        if len(ids) > max_length:
            kept = tokenizer.decode(tok.input_ids[i], skip_special_tokens=True)
            warnings.warn(
                f"prompt {i} has {len(ids)} tokens, more than the {max_length} of {name}: it is "
                f"truncated to {kept!r}",
                stacklevel=3,
            )
    return tok


def check_prompts(prompts: Sequence[str]) -> list[str]:
    """``prompts`` as a non-empty list of strings (``ValueError`` otherwise)."""
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts must be a list of strings (wrap a single prompt in [...])")
    if len(prompts) == 0:
        raise ValueError("prompts must not be empty")
    return list(prompts)


class LatentPipeline:
    """The VAE, size rule, images and unconditional condition of a latent adapter.

    Subclasses call :meth:`_init_latent` and implement ``encode_prompt(prompts)`` (one condition
    for ``B`` prompts, batched along dim 0: a tensor or a flat dict of tensors, so that
    :func:`~nidiff.models.contract.concat_cond` and inversion files take it), ``grid(steps)``
    and set ``denoiser``, ``process`` and :attr:`family`.

    Attributes:
        family: the family's name in :data:`nidiff.models.families.FAMILIES`.
        patch: latent elements per token along a side (SD3's patch 2, FLUX's 2×2 packing; 1
            for UNets), so images must be multiples of :attr:`size_multiple` =
            ``vae_scale_factor × patch``.
        upcast_vae: run a ``force_upcast`` VAE in float32 when the networks are float16 (SDXL).
    """

    family = "sd"
    patch = 1
    patch_name = "patch"
    upcast_vae = False

    def _init_latent(
        self,
        vae: nn.Module,
        device: str | torch.device,
        dtype: torch.dtype,
        offload: bool,
        negative_prompt: str = "",
    ) -> None:
        if not isinstance(negative_prompt, str):
            raise ValueError(f"negative_prompt must be a string, not {negative_prompt!r}")
        self.negative_prompt = negative_prompt
        self.device = torch.device(device)
        self.dtype = dtype
        self.offload = Offload(self.device, offload)
        cfg = vae.config
        upcast = self.upcast_vae and dtype == torch.float16 and getattr(cfg, "force_upcast", False)
        self.vae_dtype = torch.float32 if upcast else dtype
        self.vae = place(vae, self.offload.home, self.vae_dtype)
        self.vae_scale_factor = 2 ** (len(cfg.block_out_channels) - 1)
        self.scaling_factor = float(getattr(cfg, "scaling_factor", 1.0) or 1.0)
        shift = getattr(cfg, "shift_factor", None)
        self.shift_factor = 0.0 if shift is None else float(shift)
        mean, std = getattr(cfg, "latents_mean", None), getattr(cfg, "latents_std", None)
        self._mean_std = None
        if mean is not None and std is not None:  # per-channel statistics (some SDXL VAEs)
            self._mean_std = tuple(torch.tensor(v).view(1, -1, 1, 1) for v in (mean, std))
        self._null: Any = None

    def _network(self, module: nn.Module) -> nn.Module:
        """A network placed where :attr:`offload` keeps it, in :attr:`dtype`."""
        return place(module, self.offload.home, self.dtype)

    # ------------------------------------------------------------------ sizes and images
    factor = property(lambda self: self.vae_scale_factor, doc="VAE factor (ModelSpace).")

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this: the VAE factor times :attr:`patch`."""
        return self.vae_scale_factor * self.patch

    def check_image_size(self, height: int, width: int) -> None:
        """Raise ``ValueError`` unless both sides are positive multiples of
        :attr:`size_multiple`."""
        f, m = self.vae_scale_factor, self.size_multiple
        if height <= 0 or width <= 0 or height % m or width % m:
            example = f"e.g. {max(m, height // m * m)}x{max(m, width // m * m)}"
            rule = f"the VAE's downsampling factor {f} on both sides ({example})"
            if self.patch > 1:
                rule = (
                    f"{m} on both sides for {self.family} (the VAE's downsampling factor {f} × "
                    f"{self.patch_name} {self.patch}; {example})"
                )
            raise ValueError(f"image size {height}x{width} must be a positive multiple of {rule}")

    def latent_shape(self, num: int, size: int) -> tuple[int, int, int, int]:
        """The shape of ``num`` latents :math:`z_0` of ``size × size`` images."""
        self.check_image_size(size, size)
        h = size // self.vae_scale_factor
        return (num, int(self.vae.config.latent_channels), h, h)

    def encode(self, images: Tensor) -> Tensor:
        """:meth:`encode_image` (the :class:`~nidiff.models.space.ModelSpace` contract)."""
        return self.encode_image(images)

    def decode(self, x0: Tensor) -> Tensor:
        """:meth:`decode_latents` (the :class:`~nidiff.models.space.ModelSpace` contract)."""
        return self.decode_latents(x0)

    @torch.no_grad()
    def encode_image(self, images: Tensor) -> Tensor:
        r"""Images ``(B, 3, H, W)`` in ``[-1, 1]`` → latents :math:`z_0` ``(B, C_z, H/f, W/f)``.

        :math:`z_0 = (\mathrm{mode}(q(z \mid x)) - \text{shift})\cdot\text{scaling\_factor}`
        (per-channel ``(mode - mean)·scale/std`` for VAEs with latent statistics): the posterior
        mode (deterministic), scaled like the latents the denoiser was trained on. Returned as
        float32 on :attr:`device`; ``images`` is not modified.

        Raises:
            ValueError: for a non-floating or wrongly shaped tensor, or sides that break the
                family's size rule (:meth:`check_image_size`).
        """
        if not isinstance(images, Tensor) or not images.is_floating_point() or images.ndim != 4:
            raise ValueError("images must be a floating tensor (B, 3, H, W) in [-1, 1]")
        if images.shape[1] != self.vae.config.in_channels:
            raise ValueError(
                f"images have {images.shape[1]} channels; the VAE takes "
                f"{self.vae.config.in_channels}"
            )
        self.check_image_size(int(images.shape[2]), int(images.shape[3]))
        self.offload.use(self.vae)
        x = images.to(device=self.device, dtype=self.vae_dtype)
        mode = self.vae.encode(x).latent_dist.mode().float()
        if self._mean_std is not None:
            mean, std = (v.to(mode.device) for v in self._mean_std)
            return ((mode - mean) * self.scaling_factor / std).contiguous()
        return ((mode - self.shift_factor) * self.scaling_factor).contiguous()

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
        self.offload.use(self.vae)
        x = z.to(device=self.device, dtype=torch.float32)
        if self._mean_std is not None:
            mean, std = (v.to(x.device) for v in self._mean_std)
            x = x * std / self.scaling_factor + mean
        else:
            x = x / self.scaling_factor + self.shift_factor
        return self.vae.decode(x.to(self.vae_dtype)).sample.float().clamp(-1.0, 1.0)

    def load_image(self, path: str | os.PathLike, size: int | None = None) -> Tensor:
        """Read an image file as ``(1, 3, size, size)`` in ``[-1, 1]`` on :attr:`device`.

        The image is turned upright (EXIF), converted to RGB, **centre-cropped to the largest
        square and resized** to ``size × size`` with bicubic resampling
        (:func:`nidiff.data.folder.load_image`). ``size`` defaults to
        :attr:`default_image_size` and must follow the family's size rule.

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

    # -------------------------------------------------------------------- conditions
    def condition(self, names) -> list:
        """Prompt conditions of batch 1 (``None`` stays ``None``); one batched encode."""
        prompts = [n for n in names if n is not None]
        if not prompts:
            return [None for _ in names]
        it = iter(split_cond(self.encode_prompt([str(p) for p in prompts])))
        return [None if n is None else next(it) for n in names]

    def null_cond(self) -> Any:
        r"""The unconditional condition of guidance: the negative prompt's (``negative_prompt``
        of the constructor; default the empty prompt, as diffusers'), computed once and cached;
        a new copy is returned each call. Classifier-free guidance then moves away from the
        negative prompt, :math:`\hat\epsilon = \epsilon(x, c_-) + w\,(\epsilon(x, c) -
        \epsilon(x, c_-))`, as diffusers' ``negative_prompt`` does."""
        if self._null is None:
            self._null = self._encode_null()
        return clone_cond(self._null)

    def _encode_null(self) -> Any:
        return self.encode_prompt([self.negative_prompt])

    def guided(self, scale: float) -> ClassifierFreeGuidance:
        """:attr:`denoiser` under classifier-free guidance ``scale`` with :meth:`null_cond`."""
        return ClassifierFreeGuidance(self.denoiser, scale, self.null_cond())


def split_cond(cond: Any) -> list[Any]:
    """A batched condition (a tensor or a dict of tensors) as one condition per sample."""
    if isinstance(cond, dict):
        parts = {k: v.split(1) for k, v in cond.items()}
        return [{k: v[i] for k, v in parts.items()} for i in range(len(next(iter(parts.values()))))]
    return list(cond.split(1))


def clone_cond(cond: Any) -> Any:
    """A copy of a condition (a tensor or a dict of tensors)."""
    return {k: v.clone() for k, v in cond.items()} if isinstance(cond, dict) else cond.clone()


def slice_cond(cond: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of a batched condition (a tensor or a dict of tensors)."""
    if isinstance(cond, dict):
        return {k: v[start:stop] for k, v in cond.items()}
    return cond[start:stop]


def repeat_cond(cond: Any, n: int) -> Any:
    """A batch-1 condition repeated ``n`` times along the batch (views, no copies)."""
    if isinstance(cond, dict):
        return {k: repeat_cond(v, n) for k, v in cond.items()}
    return cond.expand(n, *cond.shape[1:])
