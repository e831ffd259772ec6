"""What every benchmark asks of its device: wait for queued work, and name the hardware."""

from __future__ import annotations

import platform

import torch

__all__ = ["hardware", "sync"]


def sync(device: str | torch.device) -> None:
    """Wait for the device's queued kernels (CUDA), so a wall clock measures the work itself."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def hardware(device: str | torch.device) -> str:
    """The GPU's name, or ``CPU (processor)``, for a result's ``hardware`` field."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"CPU ({platform.processor() or platform.machine()})"
