"""Editing real images: NGDM (weighting map + per-pixel start times), NGDM with edit-friendly
maps, SDEdit, ILVR, DiffEdit, and Prompt-to-Prompt, Zero-Shot I2I and Plug-and-Play with
edit-friendly maps (the last two also from DDIM inversion); every method returns an
:class:`EditResult`."""

from ..result import EditResult
from .diffedit import diffedit, diffedit_mask
from .ilvr import ilvr
from .ngdm import check_lam, ngdm, rounded_start
from .ngdm_ef import ngdm_edit_friendly
from .p2p import P2PResult, RowGuidance, p2p_edit_friendly, p2p_generate, p2p_token_map
from .pnp import pnp_edit
from .sdedit import sdedit
from .weighting import WeightMap, gaussian_blur, lam_from_map, weighting_map
from .zero_shot import edit_direction, zero_shot_edit

__all__ = [
    "EditResult",
    "P2PResult",
    "RowGuidance",
    "WeightMap",
    "check_lam",
    "diffedit",
    "diffedit_mask",
    "edit_direction",
    "gaussian_blur",
    "ilvr",
    "lam_from_map",
    "ngdm",
    "ngdm_edit_friendly",
    "p2p_edit_friendly",
    "p2p_generate",
    "p2p_token_map",
    "pnp_edit",
    "rounded_start",
    "sdedit",
    "weighting_map",
    "zero_shot_edit",
]
