r"""The noise model: the covariance :math:`\Sigma` of the forward noise, as an object.

Every noise process in nidiff writes its forward marginal as
:math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\Sigma^{1/2}\varepsilon` with white
:math:`\varepsilon \sim \mathcal N(0, I)` (NI-DDPM, GFF paper Sec. 3). A :class:`NoiseModel` gives
the four closed-form operations samplers, losses and inversion need. All act on tensors of shape
``(B, *dims)`` and never modify their input.

Randomness is injected: :meth:`NoiseModel.sample` takes either white noise ``z`` or a
``torch.Generator``; it never touches the global RNG.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["NoiseModel", "dense_covariance", "white_noise"]


def white_noise(
    shape: Sequence[int],
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Draw :math:`z \sim \mathcal N(0, I)` of ``shape`` from ``generator``.

    ``generator=None`` uses torch's global RNG; pass a seeded generator for reproducible runs.
    """
    if generator is not None and device is None:
        device = generator.device
    return torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)


class NoiseModel(ABC):
    r"""A zero-mean Gaussian :math:`\mathcal N(0, \Sigma)` with cheap :math:`\Sigma^{\pm1/2}`.

    Subclasses implement :meth:`color`, :meth:`whiten` and :meth:`apply`; identities that hold
    for every subclass (tested): ``whiten(color(z)) == z``, ``apply(x) == color(color(x))``, and
    the empirical covariance of :meth:`sample` approaches :math:`\Sigma`.
    """

    @abstractmethod
    def color(self, z: Tensor) -> Tensor:
        r""":math:`\Sigma^{1/2} z` for white ``z`` of shape ``(B, *dims)``."""

    @abstractmethod
    def whiten(self, x: Tensor) -> Tensor:
        r""":math:`\Sigma^{-1/2} x` (a pseudo-inverse where :math:`\Sigma` is singular)."""

    @abstractmethod
    def apply(self, x: Tensor) -> Tensor:
        r""":math:`\Sigma x`."""

    def sample(
        self,
        shape: Sequence[int] | None = None,
        *,
        z: Tensor | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        r"""Draw :math:`\Sigma^{1/2}z` from given white noise ``z`` or fresh from ``generator``.

        Exactly one of ``shape`` and ``z`` is needed; passing ``z`` makes the draw replayable
        (edit-friendly inversion records the white noise, not the coloured sample).
        """
        if z is None:
            if shape is None:
                raise ValueError("sample needs either shape or z")
            z = white_noise(shape, generator=generator, dtype=dtype, device=device)
        elif shape is not None and tuple(shape) != tuple(z.shape):
            raise ValueError(f"shape {tuple(shape)} disagrees with z of shape {tuple(z.shape)}")
        return self.color(z)


def dense_covariance(noise: NoiseModel, shape: Sequence[int], dtype=torch.float64) -> Tensor:
    r"""The dense :math:`\Sigma` of ``noise`` on one sample of ``shape`` (``(*dims)``, no batch).

    Builds :math:`\Sigma` column by column with :meth:`NoiseModel.apply` on the identity basis, so
    it costs ``D = prod(shape)`` applications: for tests and analytic oracles on small data only.

    Returns:
        ``(D, D)`` tensor, ``D = prod(shape)``.
    """
    D = 1
    for s in shape:
        D *= int(s)
    eye = torch.eye(D, dtype=dtype).reshape(D, *shape)
    return noise.apply(eye).reshape(D, D).T.contiguous()
