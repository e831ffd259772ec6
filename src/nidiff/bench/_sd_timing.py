"""The timing of :mod:`nidiff.bench.sd_speed`: forward hooks inside the networks, the turn-taking
loop of timed edits and the rows it reports."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ._device import sync, timed

__all__ = ["NETWORK", "Hooks", "rows", "test_image", "time_edits"]

#: The hook name of the denoising network (a UNet, or SD3/FLUX's transformer): its calls are
#: counted by batch size.
NETWORK = "unet"


class Hooks:
    """Forward hooks timing the inside of named modules (a list of modules under one name adds
    up); the :data:`NETWORK`'s calls are also counted by batch size."""

    def __init__(self, modules: dict[str, nn.Module | list[nn.Module]], device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = {name: 0.0 for name in modules}
        self.batches: Counter[int] = Counter()
        self._start: dict[int, float] = {}
        self._handles = []
        for name, group in modules.items():
            for module in group if isinstance(group, list) else [group]:
                self._handles.append(
                    module.register_forward_pre_hook(self._pre(name), with_kwargs=True)
                )
                self._handles.append(module.register_forward_hook(self._post(name)))

    def _pre(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            if name == NETWORK:
                x = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))
                self.batches[int(x.shape[0])] += 1
            sync(self.device)
            self._start[id(module)] = time.perf_counter()

        return hook

    def _post(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, out: Any) -> None:
            sync(self.device)
            self.seconds[name] += time.perf_counter() - self._start.pop(id(module))

        return hook

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.seconds, 0.0)
        self.batches.clear()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def test_image(size: int, device: torch.device, seed: int) -> Tensor:
    """A smooth random colour image ``(1, 3, size, size)`` in ``[-1, 1]`` (seeded)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, 3, 8, 8, generator=g)
    up = nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    return torch.tanh(up).to(device)


def time_edits(
    chosen: dict[str, Callable[[], Tensor]],
    hooks: Hooks,
    device: torch.device,
    warmup: int,
    repeats: int,
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, list[dict[str, Any]]]:
    """``warmup`` untimed edits of every method, then ``repeats`` timed ones, the methods taking
    turns; per method a record per timed edit (``wall``, ``batches`` and the hooks' seconds).

    Raises:
        RuntimeError: an edit that made a non-finite image.
    """
    records: dict[str, list[dict[str, Any]]] = {m: [] for m in chosen}
    with torch.no_grad():
        for _ in range(warmup):
            for name, fn in chosen.items():
                progress(f"warm-up {name}")
                fn()
        for _ in range(repeats):
            for name, fn in chosen.items():
                progress(f"timing {name}")
                hooks.reset()
                out, wall = timed(device, fn)
                if not bool(torch.isfinite(out).all()):
                    raise RuntimeError(f"{name} made a non-finite image (try --dtype float32)")
                records[name].append({"wall": wall, "batches": dict(hooks.batches),
                                      **hooks.seconds})  # fmt: skip
    return records


def rows(records: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A row per method: seconds per timed edit, their median, NFE and calls of the network
    (from the first timed edit), the medians of the time inside each network and the network's
    share of the wall time."""
    out = []
    for name, recs in records.items():
        batches = recs[0]["batches"]
        out.append(
            {
                "method": name,
                "seconds": [r["wall"] for r in recs],
                "median_s": statistics.median(r["wall"] for r in recs),
                "nfe": sum(b * n for b, n in batches.items()),
                "calls": {str(b): n for b, n in sorted(batches.items())},
                "unet_s": statistics.median(r[NETWORK] for r in recs),
                "vae_s": statistics.median(r["vae_encoder"] + r["vae_decoder"] for r in recs),
                "text_s": statistics.median(r["text"] for r in recs),
                "unet_share": statistics.median(r[NETWORK] / r["wall"] for r in recs),
            }
        )
    return out
