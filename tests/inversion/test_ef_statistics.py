"""The statistics of edit-friendly noise maps (EF Sec. 5, Fig. 5 set-up).

Data ``N((10, 10), I)`` in 2-D with its exact denoiser, DDPM (``η = 1``) on the 40-step leading
grid of the linear 1000-step schedule. Native sampling draws i.i.d. white maps, so the angle
between consecutive noise vectors is uniform on ``[0°, 180°]`` (mean 90°, s.d. 180°/√12 ≈ 52°,
consecutive angles independent). Edit-friendly maps of an image have variance > 1 and point
against each other from one step to the next (mean angle > 90°, a peak near 180°).

Only the 39 stochastic steps are compared: the last step (``t = 1 → 0``) is deterministic in
nidiff and its EF map follows the ``σ² = β`` convention of the inversion module.
"""

from __future__ import annotations

import math

import torch

from nidiff.inversion import edit_friendly_invert
from nidiff.models import GaussianDenoiser
from nidiff.process import Process
from nidiff.samplers import sample
from nidiff.schedule import DiscreteSchedule, leading_grid

SCHED = DiscreteSchedule.linear(1000)
GRID = leading_grid(SCHED, 40)
MODEL = GaussianDenoiser(torch.tensor([10.0, 10.0]), torch.eye(2), SCHED)
PROCESS = Process(SCHED)
B = 1000
ANGLE_SD = 180 / math.sqrt(12)  # degrees, uniform angle


def angles(zs: list[torch.Tensor]) -> torch.Tensor:
    """Angles (degrees) between consecutive noise vectors, ``(N - 1, B)``."""
    z = torch.stack(zs).double()
    cos = (z[:-1] * z[1:]).sum(-1) / (z[:-1].norm(dim=-1) * z[1:].norm(dim=-1))
    return torch.rad2deg(torch.acos(cos.clamp(-1, 1)))


def test_native_maps_are_white_and_uncorrelated():
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(B, 2, generator=g)
    zs = sample(MODEL, x_T, GRID, PROCESS.rule(1.0), noise=g).zs[:-1]
    a = angles(zs)
    se = ANGLE_SD / math.sqrt(a.numel())
    var = torch.stack(zs).var().item()
    assert abs(a.mean().item() - 90) < 4 * se, (
        f"native: mean angle {a.mean():.2f}° (expected 90 ± {4 * se:.2f})"
    )
    assert abs(var - 1) < 4 * math.sqrt(2 / (B * 2 * len(zs))), f"native: variance {var:.4f}"


def test_edit_friendly_maps_have_larger_variance_and_obtuse_angles():
    g = torch.Generator().manual_seed(1)
    x0 = 10 + torch.randn(B, 2, generator=g)
    inv = edit_friendly_invert(MODEL, x0, PROCESS, GRID, generator=g)
    zs = inv.zs[:-1]
    per_step = torch.stack(zs).var(dim=(1, 2))
    a = angles(zs)
    se = ANGLE_SD / math.sqrt(a.numel())
    obtuse = (a > 90).double().mean().item()
    top_bin = (a > 162).double().mean().item()  # the 10% of [0°, 180°] nearest 180°
    msg = (
        f"EF maps: variance {torch.stack(zs).var():.2f} (per step {per_step.min():.2f}.."
        f"{per_step.max():.2f}), mean angle {a.mean():.1f}° (native 90 ± {se:.2f}), "
        f"{100 * obtuse:.0f}% obtuse, {100 * top_bin:.0f}% above 162°"
    )
    # measured: variance 8.9 (per step 4.2..93), mean angle 119.7°, 75% obtuse, 21% above 162°
    assert bool((per_step > 1.5).all()), msg
    assert a.mean().item() > 90 + 20 * se and obtuse > 0.6 and top_bin > 0.15, msg
