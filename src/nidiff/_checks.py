"""Shape and value checks shared by the whole package.

Every public function validates its inputs here, so errors read the same everywhere and name the
offending parameter. Nothing in this module mutates a tensor it is given.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .process import Process

__all__ = [
    "FiniteChecks",
    "as_time",
    "broadcast_shape",
    "check_all",
    "check_finite",
    "check_fixed_noise",
    "check_image",
    "check_in_range",
    "check_skip",
    "deferred_finite_checks",
    "expand_like",
]


def as_time(
    t: float | Tensor, *, dtype: torch.dtype = torch.float64, device=None, name: str = "t"
) -> Tensor:
    """Convert a time (Python number, sequence, array or tensor) to a ``dtype`` tensor.

    A tensor already of ``dtype`` on ``device`` is returned as is (never modified in place).

    Raises:
        ValueError: for boolean or complex input.
    """
    if not isinstance(t, Tensor):
        if isinstance(t, bool | complex | str | bytes):
            raise ValueError(f"{name} must be a real number or tensor, got {t!r}")
        try:  # float64 first: a Python float must not pass through float32
            t = torch.as_tensor(t, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"{name} must be a real number or tensor, got {t!r}") from err
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name} must be a real tensor, got dtype {t.dtype}")
    return t.to(dtype=dtype, device=device if device is not None else t.device)


def broadcast_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> torch.Size:
    """The broadcast shape of ``a`` and ``b``, or a ``ValueError`` naming both."""
    try:
        return torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        raise ValueError(
            f"{name_a} of shape {tuple(a.shape)} and {name_b} of shape {tuple(b.shape)} do not "
            "broadcast against each other"
        ) from None


def expand_like(v: Tensor, x: Tensor, name: str = "t") -> Tensor:
    """Return ``v`` viewed so that it broadcasts against ``x`` of shape ``(B, *dims)``.

    The time contract of nidiff: ``v`` is a scalar ``()``, one value per batch element ``(B,)``,
    or a per-element tensor with ``x.ndim`` dimensions that broadcasts to ``x.shape`` (e.g. a
    per-pixel map ``(B, 1, H, W)``). A ``(B,)`` tensor is reshaped to ``(B, 1, ..., 1)``.

    Raises:
        ValueError: if ``v`` fits none of these shapes.
    """
    if not isinstance(v, Tensor):
        v = torch.as_tensor(v)
    if v.ndim == 0:
        return v
    if x.ndim == 0:
        raise ValueError(
            f"{name} of shape {tuple(v.shape)} does not fit a scalar x: expected a scalar"
        )
    if v.ndim == 1 and v.shape[0] == x.shape[0] and x.ndim > 1:
        return v.reshape(v.shape[0], *([1] * (x.ndim - 1)))
    if v.ndim == x.ndim:
        try:
            shape = torch.broadcast_shapes(v.shape, x.shape)
        except RuntimeError:
            shape = None
        if shape == x.shape:
            return v
    raise ValueError(
        f"{name} of shape {tuple(v.shape)} does not fit x of shape {tuple(x.shape)}: expected a "
        f"scalar, ({x.shape[0]},) or a {x.ndim}-d tensor broadcastable to {tuple(x.shape)}"
    )


def check_finite(x: Tensor, name: str) -> Tensor:
    """Raise ``ValueError`` if ``x`` holds NaN or infinity; return ``x`` unchanged.

    Inside :func:`deferred_finite_checks` the check is recorded (a device-side flag) and decided
    when the block ends, so that a sampling loop does not wait for the device every step.
    """
    check_all(torch.isfinite(x).all(), f"{name} contains non-finite values (NaN or inf)")
    return x


def check_all(ok: Tensor, message: str) -> None:
    """Raise ``ValueError(message)`` unless the boolean tensor ``ok`` is true everywhere; inside
    :func:`deferred_finite_checks`, record it and decide when the block ends."""
    pending = _PENDING.get()
    if pending is not None:
        pending.record(ok.all(), message)
    elif not bool(ok.all()):
        raise ValueError(message)


class FiniteChecks:
    """The :func:`check_all` calls of a :func:`deferred_finite_checks` block, in order.

    Attributes:
        step: the loop step the next recorded checks belong to (set by the loop; named in the
            error).
    """

    def __init__(self) -> None:
        self.step = 0
        self._flags: list[Tensor] = []
        self._labels: list[tuple[int, str]] = []

    def record(self, ok: Tensor, message: str) -> None:
        """Keep the 0-d boolean ``ok`` (still on the device) of the check failing with
        ``message``."""
        self._flags.append(ok)
        self._labels.append((self.step, message))

    def raise_first(self) -> None:
        """Raise the first failed check's ``ValueError``: one host read for all of them."""
        if not self._flags:
            return
        ok = torch.stack([f.to(self._flags[0].device) for f in self._flags])
        if bool(ok.all()):
            return
        step, message = self._labels[int(ok.logical_not().int().argmax())]
        raise ValueError(f"{message} at step {step}")


_PENDING: ContextVar[FiniteChecks | None] = ContextVar("nidiff_pending_checks", default=None)


@contextmanager
def deferred_finite_checks() -> Iterator[FiniteChecks]:
    """Defer every :func:`check_finite` and :func:`check_all` in the block to its end: a loop
    over ``N`` steps then reads the device once instead of once per check. The first failed
    check raises its ``ValueError`` (naming the step, see :class:`FiniteChecks`) when the block
    exits normally; an exception raised inside the block drops the pending checks. Blocks nest:
    the inner one decides its own checks."""
    checks = FiniteChecks()
    token = _PENDING.set(checks)
    try:
        yield checks
    finally:
        _PENDING.reset(token)
    checks.raise_first()


def check_in_range(
    x: float | Tensor, name: str, low: float, high: float, *, low_open: bool = False
) -> None:
    """Raise ``ValueError`` unless every value of ``x`` is finite and lies in ``[low, high]``
    (or ``(low, high]`` with ``low_open``)."""
    xt = torch.as_tensor(x)
    if xt.numel() == 0:
        return
    if not bool(torch.isfinite(xt).all()):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    lo, hi = float(xt.min()), float(xt.max())
    bad_low = lo <= low if low_open else lo < low
    if bad_low or hi > high:
        bracket = "(" if low_open else "["
        shown = lo if bad_low else hi
        raise ValueError(
            f"{name}={shown:g} is outside the allowed range {bracket}{low:g}, {high:g}]"
        )


def check_skip(skip: object, steps: int, name: str = "skip", steps_name: str = "steps") -> int:
    """The one validation of ``skip``, the count of skipped noisiest steps (EF's
    :math:`T_{skip}`): an integer with ``0 <= skip < steps``. A float (``2.0``, or a fraction
    as diffusers' LEDITS++ takes it) and a bool are refused, so the unit is never guessed.

    Raises:
        ValueError: naming ``name``, the value and the allowed range.
    """
    if isinstance(skip, bool) or not isinstance(skip, numbers.Integral):
        raise ValueError(
            f"{name}={skip!r} must be an integer count of skipped steps in [0, {steps - 1}] "
            "(a count, not a fraction)"
        )
    if not 0 <= int(skip) < steps:
        raise ValueError(
            f"{name}={skip} must be < {steps_name}={steps} (an integer in [0, {steps - 1}])"
        )
    return int(skip)


def check_image(x: Tensor, name: str = "x0", *, spatial: bool = False) -> Tensor:
    """Raise ``ValueError`` unless ``x`` is a finite floating tensor of shape ``(B, *dims)``
    (with ``spatial``: ``(B, C, *spatial)``, at least 3 dims); return ``x`` unchanged."""
    layout = "(B, C, *spatial)" if spatial else "(B, *dims)"
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < (3 if spatial else 2):
        raise ValueError(f"{name} must be a floating-point tensor of shape {layout}")
    return check_finite(x, name)


def check_fixed_noise(process: Process, method: str) -> None:
    """Raise ``ValueError`` for an edge-preserving ``process``: ``method`` needs a deterministic
    reverse step (DDIM with η = 0), which only fixed-covariance processes have."""
    if process.data_conditioned:
        raise ValueError(
            f"{method} needs a fixed-covariance process (isotropic, diagonal, GFF): the "
            "edge-preserving reverse step (EP eq. 12-14) is stochastic and has no DDIM inverse"
        )
