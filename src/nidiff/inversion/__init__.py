"""Inversion of real images into a diffusion latent code, and edits made from it.

* :func:`edit_friendly_invert` / :func:`edit_friendly_regenerate`: edit-friendly DDPM inversion
  (EF Alg. 1), exact reconstruction, text/class edits with ``skip``;
* :func:`shift_maps`, :func:`flip_maps`, :func:`color_edit`: EF Sec. 5 manipulations;
* :func:`save_inversion` / :func:`load_inversion`: one ``.safetensors`` file per inversion;
* baselines of EF Table 1: :func:`ddim_invert` / :func:`ddim_edit` (deterministic DDIM) and
  :func:`cycle_invert` / :func:`cycle_edit` (CycleDiffusion's DPM-Encoder).
"""

from .cycle import cycle_edit, cycle_invert
from .ddim import DDIMInversion, ddim_edit, ddim_invert
from .edit_friendly import edit_friendly_invert, edit_friendly_regenerate
from .io import Inversion, check_process, describe_process, load_inversion, save_inversion
from .manipulate import color_edit, flip_maps, shift_maps

__all__ = [
    "DDIMInversion",
    "Inversion",
    "check_process",
    "color_edit",
    "cycle_edit",
    "cycle_invert",
    "ddim_edit",
    "ddim_invert",
    "describe_process",
    "edit_friendly_invert",
    "edit_friendly_regenerate",
    "flip_maps",
    "load_inversion",
    "save_inversion",
    "shift_maps",
]
