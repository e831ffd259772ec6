"""Validate a network config before anything is built: typed, range-checked fields and a bound
on the parameter count, so a hostile or mistyped ``config.json`` is one clear error instead of a
PyTorch traceback or a machine killed for memory.

The parameter count is measured by building the network on PyTorch's ``meta`` device (shapes
only, no memory). The bound is :data:`DEFAULT_MAX_PARAMS` unless the environment variable
``NIDIFF_MAX_PARAMS`` says otherwise (the CLI's ``nidiff --max-params N`` sets it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = [
    "DEFAULT_MAX_PARAMS",
    "build_checked",
    "check_unet_config",
    "max_params",
    "rough_unet_params",
]

#: The default bound: 1e9 parameters (4 GB in float32), 150× the largest SD 1.x/2.x UNet's share
#: of memory nidiff's own models need; lift it for bigger networks.
DEFAULT_MAX_PARAMS = 1_000_000_000
#: Fields whose values are channel counts or sizes: positive integers up to a sane bound.
_POSITIVE = {
    "sample_size": 16384,
    "in_channels": 4096,
    "out_channels": 4096,
    "layers_per_block": 64,
    "norm_num_groups": 4096,
    "num_class_embeds": 10_000_000,
    "attention_head_dim": 8192,
    "cross_attention_dim": 65536,
    "time_embedding_dim": 65536,
    "num_train_timesteps": 10_000_000,
}


def max_params() -> int:
    """The parameter bound in force (``NIDIFF_MAX_PARAMS`` or :data:`DEFAULT_MAX_PARAMS`)."""
    raw = os.environ.get("NIDIFF_MAX_PARAMS")
    if raw is None:
        return DEFAULT_MAX_PARAMS
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value >= 1):
        raise ValueError(f"NIDIFF_MAX_PARAMS={raw!r} must be a positive number of parameters")
    return int(value)


def check_unet_config(config: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the field for a config value of the wrong type or range
    (integers where counts are meant, positive and bounded; lists of positive channel counts;
    finite floats; ``norm_num_groups`` dividing every block's channels)."""
    if not isinstance(config, Mapping):
        raise ValueError(f"a network config must be a JSON object, got {type(config).__name__}")
    for key, value in config.items():
        if key.startswith("_"):
            continue
        _check_value(key, value)
    channels = config.get("block_out_channels")
    if channels is not None:
        if not isinstance(channels, list | tuple) or not 1 <= len(channels) <= 16:
            raise ValueError(f"block_out_channels={channels!r} must be a list of 1 to 16 counts")
        for c in channels:
            if not _is_int(c) or not 1 <= c <= 65536:
                raise ValueError(f"block_out_channels={channels!r}: {c!r} is not in 1..65536")
        groups = config.get("norm_num_groups", 32)
        if _is_int(groups) and groups and any(c % groups for c in channels):
            raise ValueError(
                f"norm_num_groups={groups} must divide every block_out_channels {list(channels)}"
            )


def _check_value(key: str, value: Any) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"config field {key}={value!r} must be finite")
        if key in _POSITIVE:
            raise ValueError(f"config field {key}={value!r} must be an integer")
        return
    if _is_int(value):
        bound = _POSITIVE.get(key)
        if bound is not None and not 1 <= value <= bound:
            raise ValueError(f"config field {key}={value} must be an integer in 1..{bound}")
        if value < 0:
            raise ValueError(f"config field {key}={value} must not be negative")
        return
    if isinstance(value, list | tuple):
        for v in value:
            _check_value(key, v)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _check_value(f"{key}.{k}", v)
        return
    raise ValueError(f"config field {key} has an unsupported value {value!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def rough_unet_params(config: Mapping[str, Any]) -> int | None:
    """A generous upper estimate of a UNet's parameter count from its config (two 3×3
    convolutions per layer and level, down and up, plus attention), or ``None`` when the config
    does not say (then the count is measured)."""
    channels = config.get("block_out_channels")
    layers = config.get("layers_per_block", 2)
    if not isinstance(channels, list | tuple) or not _is_int(layers):
        return None
    return int(sum(40 * (layers + 1) * c * c for c in channels)) + 10_000_000


def build_checked(
    build: Callable[[], nn.Module],
    what: str,
    *,
    limit: int | None = None,
    rough: int | None = None,
) -> nn.Module:
    """``build()`` after counting its parameters on the ``meta`` device: refuse (``ValueError``
    with the count, the memory it needs and how to lift the bound) above ``limit`` (default
    :func:`max_params`); any error while building becomes a ``ValueError`` naming ``what``.

    ``rough``: an upper estimate of the count (:func:`rough_unet_params`); when it is far below
    the bound the network is built directly (the ``meta`` build imports PyTorch's compiler
    stack, seconds of start-up a small model should not pay)."""
    limit = max_params() if limit is None else int(limit)
    if rough is not None and rough < limit // 10:
        try:
            return build()
        except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as e:
            raise ValueError(f"{what} cannot be built: {e}") from None
    try:
        with torch.device("meta"):
            n = sum(p.numel() for p in build().parameters())
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError, AssertionError) as e:
        raise ValueError(f"{what} cannot be built: {e}") from None
    if n > limit:
        raise ValueError(
            f"{what} has {n:,} parameters ({4 * n / 2**30:.1f} GiB in float32), above the "
            f"bound of {limit:,}; if you mean it, lift the bound with nidiff --max-params N "
            "(or NIDIFF_MAX_PARAMS=N)"
        )
    try:
        return build()
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as e:
        raise ValueError(f"{what} cannot be built: {e}") from None
