r"""The diffusion families ``nidiff train --process`` trains, and how each draws its times.

* ``ddpm`` (NI-DDPM, GFF paper Sec. 3): the bundled models' linear 1000-step VP schedule,
  integer times :math:`t \sim \mathcal U\{1..T\}`;
* ``smld`` (NI-SMLD, GFF paper Sec. 3 and App. E; Song & Ermon 2019): the variance-exploding
  schedule :math:`x_\sigma = x_0 + \sigma\Sigma^{1/2}\varepsilon` between :data:`SMLD_SIGMAS`,
  trained on :math:`\sigma` drawn log-uniformly in :math:`[\sigma_{min}, \sigma_{max}]` — the
  continuum of SMLD's geometric levels, so that a model serves a geometric ladder of any length
  (:func:`~nidiff.schedule.own_grid`) — with the white-ε loss, which is the
  :math:`\sigma^2\Sigma`-weighted denoising score matching of :func:`nidiff.smld.smld_loss`.
  Sampled by annealed Langevin (:class:`~nidiff.samplers.langevin.Langevin`).

Both take isotropic or GFF noise; the edge-preserving noise is defined on a VP schedule only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..schedule import Schedule, VESchedule
from .spec import ProcessSpec

__all__ = ["PROCESSES", "SMLD_SIGMAS", "draw_times", "training_spec"]

#: ``--process`` names and what they are.
PROCESSES: dict[str, str] = {
    "ddpm": "NI-DDPM: linear 1000-step VP schedule",
    "smld": "NI-SMLD: variance exploding, σ log-uniform in [0.01, 50], annealed Langevin",
}
#: :math:`(\sigma_{max}, \sigma_{min})` of NI-SMLD: Song & Ermon's CIFAR-10 σ_1 = 50 (about
#: the largest distance between two Fashion-MNIST images in [-1, 1]) and σ_L = 0.01.
SMLD_SIGMAS = (50.0, 0.01)
_DDPM_SCHEDULE = {"kind": "linear", "T": 1000}


def training_spec(process: str, noise: dict[str, Any]) -> ProcessSpec:
    """The :class:`ProcessSpec` of ``process`` (a :data:`PROCESSES` name) with ``noise`` (a
    noise spec, e.g. :data:`~nidiff.training.fashion.FASHION_PROCESSES`' entries).

    Raises:
        ValueError: an unknown process, or edge-preserving noise with ``smld``.
    """
    if process not in PROCESSES:
        raise ValueError(f"unknown process {process!r}; use one of {list(PROCESSES)}")
    if process == "ddpm":
        return ProcessSpec(schedule=dict(_DDPM_SCHEDULE), noise=dict(noise))
    if noise.get("kind") == "edge":
        raise ValueError(
            "--process smld takes isotropic or GFF noise: the edge-preserving noise is defined "
            "on a variance-preserving schedule (use --process ddpm)"
        )
    sigma_max, sigma_min = SMLD_SIGMAS
    schedule = {"kind": "ve", "sigma_max": sigma_max, "sigma_min": sigma_min}
    return ProcessSpec(schedule=schedule, noise=dict(noise))


def draw_times(schedule: Schedule, batch: int, generator: torch.Generator) -> Tensor:
    """Training times ``(batch,)`` float64: log-uniform σ on a VE schedule, integers
    :math:`\\mathcal U\\{1..T\\}` on a discrete one (the same draws as before VE existed)."""
    if isinstance(schedule, VESchedule):
        u = torch.rand(batch, generator=generator, dtype=torch.float64)
        lo, hi = schedule.sigma_min, schedule.t_max
        return lo * (hi / lo) ** u
    return torch.randint(1, schedule.T + 1, (batch,), generator=generator).to(torch.float64)
