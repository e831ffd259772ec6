r"""The model every command runs: one protocol, two implementations.

A command sees a model only through :class:`LoadedCli`. Every method of nidiff then runs in
the model's own space :math:`\mathcal X` (pixels for the bundled models, VAE latents for Stable
Diffusion), with the same code:

.. math:: x_0 = \mathrm{load\_image}(\text{file}) \in \mathcal X, \qquad
          \hat x_0 = \mathrm{method}(\text{denoiser}, x_0, \text{process}, \dots), \qquad
          \text{image} = \mathrm{to\_image}(\hat x_0) \in [-1, 1]^{3\times H\times W}.

* :class:`~nidiff.cli.pixel.PixelModel` — a nidiff model directory (bundled or trained):
  :math:`\mathcal X` is the image itself, conditions are class names;
* :class:`~nidiff.cli.vae_model.VaeModel` — a nidiff model trained on VAE latents
  (``nidiff train --vae``): a pixel model whose :math:`\mathcal X` is its VAE's latent;
* :class:`~nidiff.cli.latent.LatentModel` — a diffusers pipeline of any family of
  :data:`nidiff.models.families.FAMILIES` (SD 1.x/2.x, SDXL, SD3/3.5, FLUX): :math:`\mathcal X`
  is the VAE latent :math:`z_0 = \mathcal E(x)` (``H/f × W/f``), conditions are text prompts,
  the unconditional condition is the empty prompt.

:func:`load_cli_model` tells them apart: a directory holding ``model_index.json`` is a diffusers
pipeline (its family from ``_class_name``), anything else a nidiff model (name or directory
with ``config.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from ..bundled import MODELS
from .common import DTYPES, InputError, input_errors, resolve_device, resolve_dtype

__all__ = ["LoadedCli", "load_cli_model"]


class LoadedCli(Protocol):
    """What the CLI needs from a model, in the model's space :math:`\\mathcal X` (module doc).

    Attributes:
        name: as given on the command line.
        size: image side in pixels; ``factor``: pixels per element of :math:`\\mathcal X` (1 for
            pixel models, the VAE factor ``f`` for latent ones).
        device: where the networks run (tensors of :math:`\\mathcal X` live there).
        denoiser: ``out = denoiser(x_t, t, cond)``; ``process``: its
            :class:`~nidiff.process.Process`; ``null``: the unconditional condition (or ``None``).
        sd: the adapter of a latent text-to-image model (any family:
            :class:`~nidiff.models.stable_diffusion.StableDiffusion`, SDXL, SD3, FLUX), ``None``
            for pixel models.
        space: the library's :class:`~nidiff.models.space.ModelSpace` of the model.
        conditional: whether it takes classes or prompts (a pixel model trained on an image
            folder does not: :func:`nidiff.methods.check_conditions`).
    """

    name: str
    size: int
    factor: int
    device: torch.device
    denoiser: Any
    process: Any
    null: Any
    sd: Any
    space: Any
    conditional: bool

    def grid(self, steps: int) -> Any:
        """The model's own time grid of ``steps`` steps (``space.grid``: the pipeline's own for
        Stable Diffusion, ``steps_offset`` included)."""
        ...

    def load_image(self, path: Path, resize: bool) -> Tensor:
        """An image file as :math:`x_0` ``(1, C, size/factor, size/factor)`` on ``device``."""
        ...

    def load_mask(self, path: Path, resize: bool) -> Tensor:
        """A grey image as a mask ``(1, 1, size/factor, size/factor)`` in ``[0, 1]``."""
        ...

    def to_image(self, x: Tensor) -> Tensor:
        """:math:`x_0` ``(B, C, h, w)`` → images ``(B, channels, size, size)`` in ``[-1, 1]``."""
        ...

    def conditions(self, *names: str | None) -> list[Any]:
        """The model conditions of class names or prompts (``None`` stays ``None``)."""
        ...

    def condition_record(self, role: str, name: str | None, cond: Any) -> dict[str, Any]:
        """What a provenance record keeps of a condition (``{role}_class`` / ``{role}_prompt``)."""
        ...

    def sampling(self, name: str | None, num: int, guidance: float) -> tuple[Any, Any, dict]:
        """``(model, cond, record)`` to draw ``num`` samples of class/prompt ``name``."""
        ...

    def shape(self, num: int) -> tuple[int, ...]:
        """The shape of ``num`` samples in :math:`\\mathcal X`."""
        ...

    def defaults(self, method: str) -> dict[str, Any]:
        """Option defaults of ``method`` that differ from the CLI's (e.g. the EF paper's for SD)."""
        ...

    def describe(self) -> dict[str, Any]:
        """The model as the provenance record names it (``name``, ``dir``, ``kind``, ...)."""
        ...


def load_cli_model(
    name: str,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    size: int | None = None,
    offload: bool = False,
    negative_prompt: str | None = None,
    true_cfg: float | None = None,
) -> LoadedCli:
    """Load ``default``, a bundled name, a nidiff model directory or a diffusers pipeline
    directory on ``device`` (``auto`` allowed) in ``dtype``; errors → exit 2.

    ``size`` is the image side: for a pipeline any size its family's rule allows (default: the
    family's, e.g. 512 for SD 1.x, 1024 for SDXL/SD3/FLUX); for a pixel model it must be the
    model's own size. ``offload`` keeps a pipeline's networks on the CPU, each moved to
    ``device`` while it is used (pixel models refuse it: they are small). ``negative_prompt``
    and ``true_cfg`` (``--negative-prompt``, ``--true-cfg``) are for text-to-image pipelines.
    """
    if dtype not in DTYPES:
        raise InputError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    text = {"negative_prompt": negative_prompt, "true_cfg": true_cfg}
    text = {k: v for k, v in text.items() if v is not None}
    if text and not (Path(name) / "model_index.json").is_file():
        flag = "--" + next(iter(text)).replace("_", "-")
        raise InputError(
            f"{flag} is for text-to-image pipelines (--model DIR of a diffusers pipeline); "
            f"{name} is a pixel model (guidance there uses its null class)"
        )
    if name == "default" or name in MODELS:
        return _pixel(name, dev, torch_dtype, size, offload)
    path = Path(name)
    if not path.exists():
        raise InputError(
            f"model {name!r} does not exist: it is neither a bundled model "
            f"({', '.join(MODELS)}) nor a directory"
        )
    if not path.is_dir():
        raise InputError(f"model {name} is a file; give a model or pipeline directory")
    if (path / "model_index.json").is_file():
        from .latent import LatentModel

        load = input_errors(LatentModel)
        return load(path, device=dev, dtype=torch_dtype, size=size, offload=offload, **text)
    if not (path / "config.json").is_file():
        raise InputError(
            f"{path} is neither a nidiff model directory (config.json) nor a diffusers "
            "pipeline directory (model_index.json)"
        )
    return _pixel(name, dev, torch_dtype, size, offload)


def _pixel(
    name: str, device: str, dtype: torch.dtype, size: int | None, offload: bool
) -> LoadedCli:
    from .pixel import PixelModel

    if offload:
        raise InputError(f"--offload is for diffusers pipelines; {name} is a small pixel model")
    cls = PixelModel
    if name != "default" and name not in MODELS and _trained_on_latents(Path(name)):
        from .vae_model import VaeModel  # nidiff train --vae: decodes through its VAE

        cls = VaeModel
    return input_errors(cls)(name, device=device, dtype=dtype, size=size)


def _trained_on_latents(path: Path) -> bool:
    """Whether ``path/config.json`` records a VAE (an unreadable one is left to the loader,
    which says what is wrong with it)."""
    import json

    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("vae") is not None
