"""Every latent model family nidiff runs, by name: one table the CLI, the benchmarks and the
README read.

A saved diffusers pipeline directory names its pipeline class in ``model_index.json``
(``_class_name``); :func:`detect_family` maps it to a :class:`Family`, whose adapter (a
:class:`~nidiff.models.space.ModelSpace`) :func:`load_pipeline` builds. Each row also holds the
family's defaults: image size, guidance, steps, the samplers.

**Adding a family**: write its adapter (a :class:`~nidiff.models.latent.LatentPipeline` with
``from_pretrained``, ``encode_prompt``, ``grid`` and a ``denoiser`` of the model contract) in its
own module and add a row here; the CLI's ``--model DIR`` and the defaults follow.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["FAMILIES", "SCHEDULER_SAMPLERS", "Family", "detect_family", "load_pipeline",
           "pipeline_sampler"]  # fmt: skip


@dataclass(frozen=True)
class Family:
    """A row of :data:`FAMILIES`.

    Attributes:
        name: the short name (``sd``, ``sdxl``, ``sd3``, ``flux``), recorded in ``OUT.json``.
        label: the name in messages and tables.
        pipelines: the ``_class_name`` values of ``model_index.json`` that are this family.
        adapter: ``"module:Class"`` of the adapter, imported when a pipeline is loaded.
        size: the nominal image side (the adapter's ``default_image_size`` reads the config).
        size_rule: what image sides must be multiples of, in words.
        guidance: the default guidance scale (FLUX: the distilled guidance).
        source_guidance: the default guidance of inversions.
        steps: the pipeline's default number of steps.
        sampler: the deterministic sampler equal to the pipeline's own scheduler (``None``: the
            process's own rule, DDPM, as nidiff has always sampled SD 1/2).
        ef_sampler: the stochastic sampler of edit-friendly inversion.
        kind: ``OUT.json``'s ``model.kind``.
        attention_control: whether Prompt-to-Prompt attention control runs on it (UNet
            cross-attention processors).
    """

    name: str
    label: str
    pipelines: tuple[str, ...]
    adapter: str
    size: int
    size_rule: str
    guidance: float
    source_guidance: float
    steps: int
    sampler: str | None
    ef_sampler: str
    kind: str
    attention_control: bool = False

    def adapter_class(self) -> type:
        """The adapter class (imports diffusers' and transformers' users only now)."""
        module, name = self.adapter.split(":")
        return getattr(importlib.import_module(module), name)


#: Every family, by name.
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("sd", "Stable Diffusion 1.x/2.x",
               ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
               "nidiff.models.stable_diffusion:StableDiffusion", 512,
               "multiples of 8 (the VAE factor)", 7.5, 3.5, 50, None, "ddpm",
               "stable-diffusion", attention_control=True),
        Family("sdxl", "Stable Diffusion XL",
               ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline"),
               "nidiff.models.sdxl:StableDiffusionXL", 1024, "multiples of 8 (the VAE factor)",
               5.0, 3.5, 50, "ddim", "ddpm", "sdxl", attention_control=True),
        Family("sd3", "Stable Diffusion 3/3.5",
               ("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline"),
               "nidiff.models.sd3:StableDiffusion3", 1024,
               "multiples of 16 (VAE factor 8 × patch 2)", 7.0, 3.5, 28, "flow-euler", "ddpm",
               "sd3"),
        Family("flux", "FLUX.1", ("FluxPipeline", "FluxImg2ImgPipeline"),
               "nidiff.models.flux:Flux", 1024, "multiples of 16 (VAE factor 8 × packing 2)",
               3.5, 1.5, 28, "flow-euler", "ddpm", "flux"),
    )
}  # fmt: skip


#: The nidiff sampler that takes the same steps as a diffusers scheduler (tested against each
#: in ``tests/samplers/test_diffusers_crosscheck.py``; Euler on the ε-ODE in σ is DDIM(η=0)).
SCHEDULER_SAMPLERS: dict[str, str] = {
    "DDIMScheduler": "ddim",
    "EulerDiscreteScheduler": "ddim",
    "DDPMScheduler": "ddpm",
    "DPMSolverMultistepScheduler": "dpm++2m",
    "EulerAncestralDiscreteScheduler": "euler-ancestral",
    "HeunDiscreteScheduler": "heun",
    "FlowMatchEulerDiscreteScheduler": "flow-euler",
    "FlowMatchHeunDiscreteScheduler": "flow-heun",
}


def pipeline_sampler(space: Any, family: Family) -> str | None:
    """The sampler of :data:`SCHEDULER_SAMPLERS` for the loaded pipeline's scheduler, else the
    family's own (:attr:`Family.sampler`)."""
    scheduler = getattr(space, "scheduler", None)
    return SCHEDULER_SAMPLERS.get(type(scheduler).__name__, family.sampler)


def supported() -> str:
    """The families and their pipeline classes, for messages."""
    return "; ".join(f"{f.name} ({', '.join(f.pipelines)})" for f in FAMILIES.values())


def detect_family(path: str | os.PathLike) -> Family:
    """The family of the saved pipeline in ``path`` (``model_index.json``'s ``_class_name``).

    Raises:
        ValueError: not a pipeline directory, or a pipeline of no supported family (the message
            names the supported ones).
    """
    from .latent import read_index

    root, index = read_index(path)
    name = index.get("_class_name")
    for family in FAMILIES.values():
        if name in family.pipelines:
            return family
    what = f"a {name}" if isinstance(name, str) else "a pipeline that names no _class_name"
    raise ValueError(
        f"{root} holds {what}, which nidiff does not support; supported: {supported()}"
    )


def load_pipeline(
    path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    offload: bool = False,
) -> Any:
    """The adapter of the pipeline saved in ``path``, for its family (:func:`detect_family`),
    loaded from local files only.

    Raises:
        ValueError: an unsupported family, a missing component, a component that cannot be
            loaded (messages name them).
    """
    family = detect_family(path)
    return family.adapter_class().from_pretrained(path, device=device, dtype=dtype, offload=offload)
