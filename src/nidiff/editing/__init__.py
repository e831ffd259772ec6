"""Editing real images: NGDM (weighting map + per-pixel start times), NGDM with edit-friendly
maps, SDEdit, ILVR and DiffEdit; every method returns an :class:`EditResult`."""

from .diffedit import diffedit, diffedit_mask
from .ilvr import ilvr
from .ngdm import check_lam, ngdm, rounded_start
from .ngdm_ef import ngdm_edit_friendly
from .result import EditResult
from .sdedit import sdedit
from .weighting import WeightMap, gaussian_blur, lam_from_map, weighting_map

__all__ = [
    "EditResult",
    "WeightMap",
    "check_lam",
    "diffedit",
    "diffedit_mask",
    "gaussian_blur",
    "ilvr",
    "lam_from_map",
    "ngdm",
    "ngdm_edit_friendly",
    "rounded_start",
    "sdedit",
    "weighting_map",
]
