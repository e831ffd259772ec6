"""What every benchmark asks of its device: wait for queued work, and name the hardware."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["hardware", "sync", "timed"]


def sync(device: str | torch.device) -> None:
    """Wait for the device's queued kernels (CUDA), so a wall clock measures the work itself."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(
    device: str | torch.device, fn: Callable[..., Any], *args: Any, **kw: Any
) -> tuple[Any, float]:
    """``(fn(*args, **kw), wall seconds)``, the clock read after the device's queued work
    finished on both sides (:func:`sync`)."""
    sync(device)
    start = time.perf_counter()
    out = fn(*args, **kw)
    sync(device)
    return out, time.perf_counter() - start


def hardware(device: str | torch.device) -> str:
    """The GPU's name, or ``CPU (processor)``, for a result's ``hardware`` field."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"CPU ({platform.processor() or platform.machine()})"
