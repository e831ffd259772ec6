r"""pix2pix-zero's noise regularization of DDIM inversion (Parmar et al., SIGGRAPH 2023, Sec. 3.1).

DDIM inversion of a real image gives noise predictions that are far from white; pix2pix-zero
pushes each step's :math:`\hat\varepsilon` toward i.i.d. Gaussian noise before the inverse step
with two losses (their Eq. 2–3):

.. math::
    \mathcal L_{auto} = \sum_p \sum_{\delta} \bigl(\tfrac1{n_p}\textstyle\sum_{i}
        \eta^p_i\,\eta^p_{i+\delta}\bigr)^2, \qquad
    \mathcal L_{KL} = \sigma^2 + \mu^2 - 1 - \log\sigma^2 ,

where :math:`\eta^0 = \hat\varepsilon` (one channel of one image), :math:`\eta^{p+1}` is
:math:`\eta^p` average-pooled ``2×2`` down to ``8×8`` (the pyramid), :math:`\delta` a random shift
(half the side at most) along each axis (``torch.roll``, so the sum wraps around), and
:math:`\mu, \sigma^2` the mean and variance of all of :math:`\hat\varepsilon`.
Each of ``steps`` rounds takes ``rolls`` gradient steps on :math:`\mathcal L_{auto}` (fresh
shifts each, step :math:`\lambda_{auto}/\text{rolls}`), then one on :math:`\mathcal L_{KL}`
(step :math:`\lambda_{KL}`). Defaults are the authors' (``num_reg_steps = 5``,
``num_auto_corr_rolls = 5``, :math:`\lambda_{auto} = \lambda_{KL} = 20`), checked against their
code (``src/utils/ddim_inv.py``) and diffusers' ``StableDiffusionPix2PixZeroPipeline.invert``.

The regularized inversion no longer inverts the sampler exactly: the reconstruction error of
DDIM inversion grows (measured in ``tests/editing/test_zero_shot.py``). The shifts are drawn from
the caller's generator, so a run is replayable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_in_range

__all__ = ["NoiseRegularizer", "auto_correlation_loss", "kl_loss"]


def auto_correlation_loss(eps: Tensor, generator: torch.Generator | None = None) -> Tensor:
    r""":math:`\mathcal L_{auto}` of ``eps`` ``(B, C, H, W)`` (module docstring), one random
    shift per pyramid level and axis, summed over images and channels."""
    loss = eps.new_zeros(())
    device = generator.device if generator is not None else eps.device
    for i in range(eps.shape[0]):
        for j in range(eps.shape[1]):
            noise = eps[i : i + 1, j : j + 1]
            while True:
                shift = int(torch.randint(noise.shape[2] // 2, (1,), generator=generator,
                                          device=device))  # fmt: skip
                loss = loss + (noise * torch.roll(noise, shifts=shift, dims=2)).mean() ** 2
                loss = loss + (noise * torch.roll(noise, shifts=shift, dims=3)).mean() ** 2
                if noise.shape[2] <= 8:
                    break
                noise = F.avg_pool2d(noise, kernel_size=2)
    return loss


def kl_loss(eps: Tensor) -> Tensor:
    r""":math:`\mathcal L_{KL}` of ``eps``: the KL divergence of :math:`\mathcal N(\mu, \sigma^2)`
    fitted to all its elements from :math:`\mathcal N(0, 1)`, times 2 (the authors' form)."""
    var = eps.var()
    return var + eps.mean() ** 2 - 1 - torch.log(var + 1e-7)


@dataclass(frozen=True)
class NoiseRegularizer:
    r"""``regularize(eps) -> eps``: pix2pix-zero's regularization of one noise prediction.

    Attributes:
        generator: source of the random shifts (``None``: the global generator, not replayable).
        steps: rounds (``num_reg_steps``); ``0`` returns ``eps`` unchanged.
        rolls: gradient steps on :math:`\mathcal L_{auto}` per round (``num_auto_corr_rolls``).
        lambda_auto, lambda_kl: the step sizes :math:`\lambda_{auto}`, :math:`\lambda_{KL}`.
    """

    generator: torch.Generator | None = None
    steps: int = 5
    rolls: int = 5
    lambda_auto: float = 20.0
    lambda_kl: float = 20.0

    def __post_init__(self) -> None:
        for name in ("steps", "rolls"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 0:
                raise ValueError(f"{name}={value!r} must be an integer >= 0")
        check_in_range(self.lambda_auto, "lambda_auto", 0.0, float("inf"))
        check_in_range(self.lambda_kl, "lambda_kl", 0.0, float("inf"))

    def __call__(self, eps: Tensor) -> Tensor:
        eps = eps.detach()
        with torch.enable_grad():
            for _ in range(int(self.steps)):
                if self.lambda_auto > 0:
                    for _ in range(int(self.rolls)):
                        var = eps.clone().requires_grad_(True)
                        (g,) = torch.autograd.grad(auto_correlation_loss(var, self.generator), var)
                        eps = eps - self.lambda_auto * g / int(self.rolls)
                if self.lambda_kl > 0:
                    var = eps.clone().requires_grad_(True)
                    (g,) = torch.autograd.grad(kl_loss(var), var)
                    eps = eps - self.lambda_kl * g
        return eps
