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
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from .._checks import as_time, expand_like

if TYPE_CHECKING:
    from ..models.prediction import Prediction
    from ..schedule.base import Schedule

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

    A noise model also says how it enters a process (:class:`~nidiff.process.Process` asks it):
    :meth:`q_sample` (the forward marginal), :meth:`prior` and :meth:`native_prediction` (what its
    networks predict). A *data-conditioned* model (:attr:`data_conditioned`, the edge-preserving
    noise) has a :math:`\Sigma` that depends on :math:`x_0`; it overrides these three and has no
    fixed ``color``/``whiten``.
    """

    #: Whether :math:`\Sigma` depends on the clean data (then only its own posterior samples it).
    data_conditioned: ClassVar[bool] = False

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

    # ------------------------------------------------------------------ in a process
    def q_sample(self, schedule: Schedule, x0: Tensor, t: float | Tensor, z: Tensor) -> Tensor:
        r"""The forward marginal :math:`x_t = \alpha_t x_0 + \sigma_t\Sigma^{1/2}z` for white ``z``
        of ``x0``'s shape (``t`` a scalar, ``(B,)`` or a per-element map)."""
        if z.shape != x0.shape:
            raise ValueError(f"z of shape {tuple(z.shape)} != x0 of shape {tuple(x0.shape)}")
        a, b = schedule.coefficients(expand_like(as_time(t), x0))
        a, b = a.to(dtype=x0.dtype, device=x0.device), b.to(dtype=x0.dtype, device=x0.device)
        return a * x0 + b * self.color(z.to(dtype=x0.dtype, device=x0.device))

    def prior(self, z: Tensor) -> Tensor:
        r"""A draw of the prior per unit std, :math:`\Sigma^{1/2}z`."""
        return self.color(z)

    def native_prediction(self) -> Prediction:
        r"""What networks of this noise predict by default: white :math:`\hat\varepsilon`."""
        from ..models.prediction import Epsilon

        return Epsilon()

    def to_spec(self) -> dict[str, Any]:
        """The JSON description of this noise (:mod:`nidiff.spec`)."""
        raise ValueError(f"{type(self).__name__} cannot be serialised")


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
