"""One serialisation of a process (schedule + noise + prediction), for checkpoints and inversion
files alike.

The JSON form is small and explicit::

    {"schedule": {"kind": "linear", "T": 1000, "beta_start": 1e-4, "beta_end": 0.02},
     "noise": {"kind": "gff", "power": 1.0},
     "prediction": "epsilon"}                      # optional: the noise's native prediction

Schedule kinds: ``linear``, ``scaled_linear``, ``cosine`` (keyword arguments of the matching
:class:`~nidiff.schedule.DiscreteSchedule` constructor), ``betas`` (an explicit list), ``vp``
(``beta_min``, ``beta_max``), ``flow`` and ``ve`` (``sigma_max``, ``sigma_min``). Noise kinds:
``isotropic``, ``gff`` (``power``), ``edge`` (``lambda_min``, ``lambda_max``, ``lambda_end``,
``tau`` ∈ {linear, cosine, sigmoid}, ``t_phi``, ``k``, ``squared``, ``per_image``, ``padding``,
``channel_sum``) and ``diagonal`` (shape and
digest only: recognised, not rebuilt). Predictions: ``epsilon``, ``x0``, ``v``, ``flow``,
``scaled-noise``. Objects write their own part (``to_spec()``); this module is the one place
that maps names back to classes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from .models.prediction import PREDICTIONS, Prediction
from .noise import (
    CosineTau,
    EdgePreservingNoise,
    GFFNoise,
    IsotropicNoise,
    LinearTau,
    NoiseModel,
    SigmoidTau,
    SobelEdges,
)
from .process import Process
from .schedule import DiscreteSchedule, RectifiedFlow, Schedule, VESchedule, VPSchedule

__all__ = ["NOISE_KINDS", "SCHEDULE_KINDS", "ProcessSpec", "same_process"]

_NAMED = {
    "linear": DiscreteSchedule.linear,
    "scaled_linear": DiscreteSchedule.scaled_linear,
    "cosine": DiscreteSchedule.cosine,
    "vp": VPSchedule,
    "flow": RectifiedFlow,
    "ve": VESchedule,
}
SCHEDULE_KINDS = (*_NAMED, "betas")
_TAUS = {"linear": LinearTau, "cosine": CosineTau, "sigmoid": SigmoidTau}
NOISE_KINDS = ("isotropic", "gff", "edge")


@dataclass(frozen=True)
class ProcessSpec:
    """A process as plain data: ``schedule`` and ``noise`` dictionaries and an optional
    ``prediction`` name (``None``: what the noise's networks predict natively).

    Raises:
        ValueError: for an unknown kind or a bad argument (built once on construction, so the
            error names the spec here rather than deep inside a load).
    """

    schedule: dict[str, Any] = field(default_factory=lambda: {"kind": "linear", "T": 1000})
    noise: dict[str, Any] = field(default_factory=lambda: {"kind": "isotropic"})
    prediction: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.schedule, dict) or not isinstance(self.noise, dict):
            raise ValueError(
                "a process spec's 'schedule' and 'noise' must be dictionaries, got "
                f"{type(self.schedule).__name__} and {type(self.noise).__name__}"
            )
        if self.schedule.get("kind") not in SCHEDULE_KINDS:
            raise ValueError(
                f"unknown schedule kind {self.schedule.get('kind')!r}; use one of "
                f"{list(SCHEDULE_KINDS)}"
            )
        if self.noise.get("kind") not in NOISE_KINDS:
            raise ValueError(
                f"unknown noise kind {self.noise.get('kind')!r}; use one of {NOISE_KINDS}"
            )
        if self.prediction is not None and self.prediction not in PREDICTIONS:
            raise ValueError(
                f"unknown prediction {self.prediction!r}; use one of {list(PREDICTIONS)}"
            )
        try:
            self.process()
        except (TypeError, KeyError) as e:
            raise ValueError(f"invalid process spec {self.to_dict()}: {e}") from None

    @property
    def kind(self) -> str:
        """The noise kind: ``isotropic``, ``gff`` or ``edge``."""
        return str(self.noise["kind"])

    # ------------------------------------------------------------------ dict forms
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"schedule": dict(self.schedule), "noise": dict(self.noise)}
        return d if self.prediction is None else d | {"prediction": self.prediction}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProcessSpec:
        if not isinstance(d, dict) or "schedule" not in d or "noise" not in d:
            raise ValueError("a process spec needs 'schedule' and 'noise' entries")
        if not isinstance(d["schedule"], dict) or not isinstance(d["noise"], dict):
            raise ValueError("a process spec's 'schedule' and 'noise' must be dictionaries")
        return cls(dict(d["schedule"]), dict(d["noise"]), d.get("prediction"))

    @classmethod
    def from_process(cls, process: Process) -> ProcessSpec:
        """The spec of a run-time process (its objects describe themselves, ``to_spec()``)."""
        native = process.noise.native_prediction()
        pred = None if process.prediction == native else process.prediction.name
        return cls._unchecked(process.schedule.to_spec(), process.noise.to_spec(), pred)

    @classmethod
    def _unchecked(cls, schedule: dict, noise: dict, prediction: str | None) -> ProcessSpec:
        """A spec that may not be buildable (a diagonal noise is only recognised)."""
        spec = object.__new__(cls)
        for k, v in (("schedule", schedule), ("noise", noise), ("prediction", prediction)):
            object.__setattr__(spec, k, v)
        return spec

    # ------------------------------------------------------------------ objects
    def build_schedule(self) -> Schedule:
        args = {k: v for k, v in self.schedule.items() if k != "kind"}
        if self.schedule["kind"] == "betas":
            if set(args) != {"betas"}:
                raise ValueError(f"schedule kind 'betas' takes only a 'betas' list, got {args}")
            return DiscreteSchedule(args["betas"])
        return _NAMED[self.schedule["kind"]](**args)

    def build_noise(self, schedule: Schedule | None = None) -> NoiseModel:
        """The noise model (an :class:`EdgePreservingNoise` for ``edge``, on ``schedule``)."""
        args = {k: v for k, v in self.noise.items() if k != "kind"}
        if self.kind == "isotropic":
            if args:
                raise ValueError(f"isotropic noise takes no arguments, got {args}")
            return IsotropicNoise()
        if self.kind == "gff":
            return GFFNoise(**args)
        schedule = schedule if schedule is not None else self.build_schedule()
        tau_kind = args.pop("tau", "linear")
        if tau_kind not in _TAUS:
            raise ValueError(f"unknown tau {tau_kind!r}; use one of {list(_TAUS)}")
        tau_args = {"t_phi": args.pop("t_phi", 0.5)}
        if tau_kind == "sigmoid" and "k" in args:
            tau_args["k"] = args.pop("k")
        edge_keys = ("squared", "per_image", "padding", "channel_sum")
        edges = SobelEdges(**{k: args.pop(k) for k in edge_keys if k in args})
        return EdgePreservingNoise(schedule, tau=_TAUS[tau_kind](**tau_args), edges=edges, **args)

    def build_prediction(self, noise: NoiseModel) -> Prediction:
        return (
            noise.native_prediction() if self.prediction is None else PREDICTIONS[self.prediction]()
        )

    def process(self) -> Process:
        """The run-time :class:`~nidiff.process.Process` of this spec."""
        schedule = self.build_schedule()
        noise = self.build_noise(schedule)
        return Process(schedule, noise, self.build_prediction(noise))

    def step_rule(
        self,
        eta: float = 0.0,
        schedule: Schedule | None = None,
        clip_x0: tuple[float, float] | None = None,
    ):
        """The reverse step of this process (see :meth:`nidiff.process.Process.rule`)."""
        schedule = schedule if schedule is not None else self.build_schedule()
        noise = self.build_noise(schedule)
        return Process(schedule, noise, self.build_prediction(noise)).rule(eta, clip_x0)

    def loss(self, schedule: Schedule | None = None):
        """The training objective of this process (white-ε, or EP eq. 15)."""
        from .training.losses import EdgeLoss, EpsilonLoss

        schedule = schedule if schedule is not None else self.build_schedule()
        noise = self.build_noise(schedule)
        return EdgeLoss(noise) if self.kind == "edge" else EpsilonLoss(schedule, noise)


def same_process(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two process descriptions (``ProcessSpec.to_dict()`` forms, or an older inversion
    file's) describe the same process: equal noise and prediction, and schedules equal as
    dictionaries or, when both are discrete tables, with log ᾱ tables within ``1e-12``."""
    a, b = upgrade(a), upgrade(b)
    if a["noise"] != b["noise"] or a.get("prediction") != b.get("prediction"):
        return False
    if a["schedule"] == b["schedule"]:
        return True
    ta, tb = _table(a["schedule"]), _table(b["schedule"])
    return (
        ta is not None
        and tb is not None
        and ta.shape == tb.shape
        and bool((ta - tb).abs().max() <= 1e-12)
    )


def _table(schedule: dict[str, Any]) -> torch.Tensor | None:
    if schedule.get("kind") not in ("betas", "linear", "scaled_linear", "cosine"):
        return None
    try:
        s = ProcessSpec._unchecked(schedule, {"kind": "isotropic"}, None).build_schedule()
    except (TypeError, ValueError, KeyError):
        return None
    return s.log_alpha_bar_table


def upgrade(d: dict[str, Any]) -> dict[str, Any]:
    """A process description in this module's form, from an inversion file of version 1
    (``{"kind": "discrete", "log_alpha_bar": [...]}`` schedules and ``repr`` strings for the
    edge-preserving ``tau``/``edges``); current descriptions are returned as they are."""
    d = {k: dict(v) if isinstance(v, dict) else v for k, v in d.items()}
    s, n = d.get("schedule", {}), d.get("noise", {})
    if s.get("kind") == "discrete":
        table = torch.tensor(s["log_alpha_bar"], dtype=torch.float64)
        d["schedule"] = {"kind": "betas", "betas": (-torch.expm1(table.diff())).tolist()}
    if n.get("kind") == "edge" and isinstance(n.get("edges"), str):
        tau = re.match(r"(\w+)Tau\((.*)\)", n.pop("tau"))
        edges = re.match(r"SobelEdges\((.*)\)", n.pop("edges"))
        if tau is None or edges is None:
            raise ValueError("unreadable edge-preserving description in an old inversion file")
        n["tau"] = tau.group(1).lower()
        n |= _kwargs(tau.group(2)) | _kwargs(edges.group(1))
        d["noise"] = n
    return d


def _kwargs(text: str) -> dict[str, Any]:
    """``"a=0.5, b=True, c='x'"`` → values (numbers, booleans and quoted strings only)."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, raw = part.partition("=")
        raw = raw.strip()
        if raw in ("True", "False"):
            out[key.strip()] = raw == "True"
        elif raw[:1] in "'\"":
            out[key.strip()] = raw[1:-1]
        else:
            v = float(raw)
            out[key.strip()] = int(v) if v.is_integer() and "." not in raw and "e" not in raw else v
    if any(isinstance(v, float) and not math.isfinite(v) for v in out.values()):
        raise ValueError(f"non-finite value in {text!r}")
    return out
