"""Model checkpoints: ``config.json`` + ``model.safetensors`` in a directory.

Layout of a model directory (what ``nidiff train`` exports and what ships in ``assets/``)::

    model/
      config.json          {"format": "nidiff-model", "version": 1, "model": {...UNet config...},
                            "process": {...ProcessSpec...}, "num_classes": 10, "class_names": [...],
                            "step": ..., "train": {...}, "data": {...}}
      model.safetensors    the (EMA) weights; metadata repeats "step" to catch mixed files

The config names the noise process, so a model is always sampled with the process it was trained
with; :func:`load_model` with ``expect_kind`` refuses a model of another process.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .._io import atomic_path, write_json
from ..process import Process
from ..schedule import DiscreteSchedule
from .spec import ProcessSpec

__all__ = [
    "FORMAT",
    "LoadedModel",
    "ResumeWarning",
    "check_resumable",
    "load_model",
    "read_config",
    "resume_state",
    "save_model",
]

FORMAT = "nidiff-model"
VERSION = 1


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to sample: the wrapped network and the process it was trained with."""

    network: torch.nn.Module
    denoiser: Any
    spec: ProcessSpec
    schedule: DiscreteSchedule
    noise: Any
    config: dict[str, Any]

    @property
    def num_classes(self) -> int:
        return int(self.config.get("num_classes", 0))

    @property
    def class_names(self) -> list[str]:
        return list(self.config.get("class_names", []))

    @property
    def null_class(self) -> int | None:
        """Label of the reserved unconditional class, or ``None`` for unconditional models."""
        return self.num_classes if self.num_classes else None

    @property
    def process(self) -> Process:
        """The run-time :class:`~nidiff.process.Process` (schedule + noise + prediction)."""
        return Process(self.schedule, self.noise, self.spec.build_prediction(self.noise))

    def step_rule(self, eta: float, clip_x0: tuple[float, float] | None = None):
        return self.process.rule(eta, clip_x0)


def save_model(
    directory: str | Path, state_dict: dict[str, torch.Tensor], config: dict[str, Any]
) -> None:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (each atomically).

    Everything is validated before anything is written (the config must hold a valid
    ``"process"`` and be JSON-serialisable, every state-dict value must be a tensor), so a bad
    argument leaves ``directory`` untouched. The weights' metadata repeats ``config["step"]``;
    :func:`load_model` refuses a directory whose two files disagree on it.
    """
    directory = Path(directory)
    config = {"format": FORMAT, "version": VERSION, **config}
    if "process" not in config or not isinstance(config.get("model"), dict):
        raise ValueError("a model config needs a 'process' spec and a 'model' (UNet config) dict")
    ProcessSpec.from_dict(config["process"])  # validate before writing anything
    try:
        json.dumps(config, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"model config is not JSON-serialisable: {e}") from None
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(
            f"state_dict values must be tensors; {bad[0]!r} is a "
            f"{type(state_dict[bad[0]]).__name__}"
        )
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "model.safetensors") as tmp:
        save_file(
            tensors, str(tmp), metadata={"format": FORMAT, "step": str(config.get("step", 0))}
        )
    write_json(directory / "config.json", config)


def read_config(directory: str | Path) -> dict[str, Any]:
    """Read and validate ``config.json`` of a model directory (clear errors on any problem)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"model directory {directory} does not exist")
    path = directory / "config.json"
    if not path.is_file():
        raise ValueError(f"{directory} is not a nidiff model: no config.json")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is corrupt or truncated: {e}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"{path} is not a nidiff model config (format != {FORMAT!r})")
    version = config.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"{path} has a non-integer version {version!r}")
    if version > VERSION:
        raise ValueError(f"{path} has version {version}; this nidiff reads <= {VERSION}")
    for key in ("model", "process"):
        if key not in config:
            raise ValueError(f"{path} lacks the {key!r} entry")
    if not isinstance(config["model"], dict):
        raise ValueError(f"{path}: 'model' must be a UNet config dict")
    try:
        ProcessSpec.from_dict(config["process"])
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return config


def load_model(
    directory: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    expect_kind: str | None = None,
) -> LoadedModel:
    """Load a model directory written by :func:`save_model`.

    Args:
        expect_kind: if given (``isotropic``, ``gff``, ``edge``), refuse a model trained with
            another noise process.
    Raises:
        FileNotFoundError: no such directory. ValueError: corrupt, truncated or mismatched files.
    """
    from ..models.config_check import build_checked, check_unet_config, rough_unet_params
    from ..models.diffusers_unet import unet_from_config
    from ..models.ve_unet import unet_denoiser

    directory = Path(directory)
    config = read_config(directory)
    spec = ProcessSpec.from_dict(config["process"])
    if expect_kind is not None and spec.kind != expect_kind:
        raise ValueError(
            f"{directory} was trained with {spec.kind!r} noise, not {expect_kind!r}; "
            "sample it with its own process"
        )
    weights = directory / "model.safetensors"
    if not weights.is_file():
        raise ValueError(f"{directory} lacks model.safetensors")
    try:
        state = load_file(str(weights))
        with safe_open(str(weights), "pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{weights} is corrupt or truncated: {e}") from None
    if "step" in metadata and "step" in config and metadata["step"] != str(config["step"]):
        raise ValueError(
            f"{directory} mixes files of two saves: model.safetensors is from step "
            f"{metadata['step']}, config.json from step {config['step']}"
        )
    try:
        check_unet_config(config["model"])
        network = build_checked(
            lambda: unet_from_config(config["model"]),
            f"the network of {directory}",
            rough=rough_unet_params(config["model"]),
        )
    except ValueError as e:
        raise ValueError(f"{directory}: 'model' in config.json is not a UNet config: {e}") from None
    try:
        missing, unexpected = network.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ValueError(f"{weights} does not match its config: {e}") from None
    if missing or unexpected:
        raise ValueError(
            f"{weights} does not match its config: {len(missing)} missing and "
            f"{len(unexpected)} unexpected tensors (e.g. {(missing or unexpected)[0]!r})"
        )
    # load_state_dict already cast the stored (float16) tensors to the network's float32.
    network = network.to(device) if dtype == torch.float32 else network.to(device, dtype)
    network = network.eval().requires_grad_(False)
    schedule = spec.build_schedule()
    return LoadedModel(
        network=network,
        denoiser=unet_denoiser(network, schedule),
        spec=spec,
        schedule=schedule,
        noise=spec.build_noise(schedule),
        config=config,
    )


# ---- resuming training: the newest checkpoint that reads ------------------------------------


class ResumeWarning(UserWarning):
    """A checkpoint that cannot be resumed from (truncated, foreign) was skipped."""


def check_resumable(
    ckpt: Path, saved: dict[str, Any], model_config: dict[str, Any], process: dict[str, Any]
) -> None:
    """Refuse to resume a checkpoint (its config ``saved``) written for another network or
    noise process."""
    plain = json.loads(json.dumps({"model": model_config, "process": process}))
    for key, what in (("process", "noise process"), ("model", "network config")):
        if saved[key] != plain[key]:
            raise ValueError(
                f"cannot resume {ckpt}: it was trained with another {what} ({saved[key]}); "
                f"this run asks for {plain[key]}"
            )


def resume_state(
    out_dir: str | Path, model_config: dict[str, Any], process: dict[str, Any], modules: tuple
) -> tuple[Path, dict[str, Any]] | None:
    """Restore ``modules`` (network, EMA, optimiser, lr schedule, generator) from the newest
    checkpoint that reads; ``(checkpoint, state)``, or ``None`` if there is none.

    A truncated or foreign checkpoint is skipped for the one before it (:class:`ResumeWarning`);
    one written for another network or process is an error, as is having none that reads.
    """
    skipped = []
    for ckpt in sorted(Path(out_dir, "checkpoints").glob("step-*[0-9]"), reverse=True):
        try:
            saved = read_config(ckpt)
        except (ValueError, FileNotFoundError) as err:
            problem = str(err)
        else:
            check_resumable(ckpt, saved, model_config, process)
            try:
                return ckpt, _load_state(ckpt / "train_state.pt", *modules)
            except ValueError as err:
                problem = str(err)
        skipped.append(f"{ckpt.name}: {problem}")
        warnings.warn(
            f"cannot resume from {ckpt} ({problem}); trying the one before",
            ResumeWarning,
            stacklevel=3,
        )
    if skipped:
        raise ValueError(
            f"cannot resume {out_dir}: no checkpoint reads ({'; '.join(skipped)}); remove "
            f"{Path(out_dir, 'checkpoints')} to start over"
        )
    return None


def _load_state(path: Path, net, ema, opt, lr_sched, gen) -> dict[str, Any]:
    """Read ``train_state.pt`` (``weights_only``: a foreign pickle is refused, never run) into
    the modules; ``ValueError`` if it is truncated, foreign or for another network."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a missing or truncated zip, a refused pickle, ...
        raise ValueError(
            f"{path.name} is unreadable or not a training state: {_first_sentence(err)}"
        ) from None
    keys = ("model", "ema", "optimizer", "lr_schedule", "generator", "step")
    if not isinstance(state, dict):
        raise ValueError(f"{path.name} is not a nidiff training state (a {type(state).__name__})")
    if missing := [k for k in keys if k not in state]:
        raise ValueError(f"{path.name} is not a nidiff training state (no {', '.join(missing)})")
    try:
        net.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        lr_sched.load_state_dict(state["lr_schedule"])
        gen.set_state(state["generator"])
        int(state["step"])
    except Exception as err:  # shapes, types: whatever torch says about foreign state
        raise ValueError(f"{path.name} does not fit this network: {_first_sentence(err)}") from None
    return state


def _first_sentence(err: BaseException) -> str:
    """The gist of torch's (often paragraph-long) error, for a one-line message."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text.split(". ")[0][:160]
