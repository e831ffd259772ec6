"""Why ``nidiff regenerate --flip`` does not mirror the bundled sneaker (issue 19).

Edit-friendly maps are flipped with the image only if the model commutes with the flip. This
prints, for the Gaussian oracle (flip-symmetric data: exact by symmetry), the bundled
Fashion-MNIST model and that model symmetrised under the flip:

* the mean absolute error (0..255 grey levels) of the regeneration from flipped maps to the
  source and to its mirror, over step counts and seeds;
* the model's flip-equivariance error ‖ε(flip x) − flip ε(x)‖ / ‖ε(x)‖ at a few times.

Run: ``OMP_NUM_THREADS=1 python scripts/flip_study.py`` (CPU, about a minute).
"""

from __future__ import annotations

import torch

from nidiff.bundled import ASSETS, load_bundled
from nidiff.data.folder import load_image
from nidiff.inversion import edit_friendly_invert, edit_friendly_regenerate, flip_maps
from nidiff.models import GaussianDenoiser
from nidiff.noise import white_noise
from nidiff.process import Process
from nidiff.schedule import DiscreteSchedule, leading_grid


class Symmetrised:
    """``(ε(x) + flip ε(flip x)) / 2``: the model's nearest flip-equivariant relative."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x, t, cond=None):
        return 0.5 * (self.model(x, t, cond) + self.model(x.flip(-1), t, cond).flip(-1))


def flipped_regeneration(model, process, x0, cond, steps: int, seed: int) -> torch.Tensor:
    grid = leading_grid(process.schedule, steps)
    g = torch.Generator().manual_seed(seed)
    inv = edit_friendly_invert(model, x0, process, grid, cond=cond, generator=g)
    maps = flip_maps([inv.x_T, *inv.zs])
    return edit_friendly_regenerate(model, inv, process, x_T=maps[0], zs=maps[1:]).x0


def mae(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.clamp(-1, 1) - b).abs().mean() * 127.5)


def main() -> None:
    torch.set_grad_enabled(False)
    # the Gaussian oracle: zero mean, a covariance that depends on |i - j| only (flip-symmetric)
    sched = DiscreteSchedule.linear(1000)
    idx = torch.arange(8.0)
    pos = torch.cartesian_prod(idx, idx)
    cov = 0.3 * torch.exp(-torch.cdist(pos, pos).square() / 4).double() + 0.05 * torch.eye(64)
    oracle = GaussianDenoiser(torch.zeros(1, 8, 8), cov.double(), sched)
    x = 0.5 * white_noise(
        (1, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    out = flipped_regeneration(oracle, Process(sched), x, None, 50, 0)
    print(
        f"Gaussian oracle, 50 steps: max |flipped regeneration - mirror| = "
        f"{float((out - x.flip(-1)).abs().max()):.1e}"
    )

    m = load_bundled()
    x0 = load_image(ASSETS / "examples" / "sneaker-0.png", size=28, channels=1)[None]
    cond = torch.tensor([7])
    print("\n| model | steps | seed | MAE to source | MAE to mirror |\n|---|---|---|---|---|")
    for name, model in (("bundled", m.denoiser), ("bundled, symmetrised", Symmetrised(m.denoiser))):
        for steps in (50, 100):
            for seed in (0, 1):
                out = flipped_regeneration(model, m.process, x0, cond, steps, seed)
                print(
                    f"| {name} | {steps} | {seed} | {mae(out, x0):.1f} | "
                    f"{mae(out, x0.flip(-1)):.1f} |"
                )
    print("\n| t | flip-equivariance error of the bundled model |\n|---|---|")
    z = white_noise(x0.shape, generator=torch.Generator().manual_seed(0))
    for t in (100.0, 300.0, 500.0, 900.0):
        x_t = m.process.q_sample(x0, t, z)
        tt = torch.tensor(t)
        a, b = m.denoiser(x_t.flip(-1), tt, cond), m.denoiser(x_t, tt, cond).flip(-1)
        print(f"| {t:.0f} | {float((a - b).norm() / b.norm()):.3f} |")


if __name__ == "__main__":
    main()
