"""Serialisable descriptions of a noise process (schedule + noise model), stored in checkpoints.

A checkpoint records the exact forward process it was trained with, so it can never be sampled
with a different one. The JSON form is deliberately small and explicit::

    {"schedule": {"kind": "linear", "T": 1000, "beta_start": 1e-4, "beta_end": 0.02},
     "noise": {"kind": "gff", "power": 1.0}}

Kinds: schedules ``linear``, ``scaled_linear``, ``cosine`` (keyword arguments of the matching
:class:`~nidiff.schedule.DiscreteSchedule` constructor) and ``betas`` (an explicit list); noise
``isotropic``, ``gff`` (``power``) and ``edge`` (``lambda_min``, ``lambda_max``, ``tau``
∈ {linear, cosine, sigmoid}, ``t_phi``, ``squared``, ``per_image``). This registry is the one
place in nidiff that maps names to classes; library code passes objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..noise import (
    CosineTau,
    EdgePreservingNoise,
    GFFNoise,
    IsotropicNoise,
    LinearTau,
    NoiseModel,
    SigmoidTau,
    SobelEdges,
)
from ..process import Process
from ..schedule import DiscreteSchedule
from .losses import EdgeLoss, EpsilonLoss

__all__ = ["ProcessSpec"]

_SCHEDULES = {
    "linear": DiscreteSchedule.linear,
    "scaled_linear": DiscreteSchedule.scaled_linear,
    "cosine": DiscreteSchedule.cosine,
}
_TAUS = {"linear": LinearTau, "cosine": CosineTau, "sigmoid": SigmoidTau}
NOISE_KINDS = ("isotropic", "gff", "edge")


@dataclass(frozen=True)
class ProcessSpec:
    """A forward noise process as plain data: ``schedule`` and ``noise`` dictionaries."""

    schedule: dict[str, Any] = field(default_factory=lambda: {"kind": "linear", "T": 1000})
    noise: dict[str, Any] = field(default_factory=lambda: {"kind": "isotropic"})

    def __post_init__(self) -> None:
        if not isinstance(self.schedule, dict) or not isinstance(self.noise, dict):
            raise ValueError(
                "a process spec's 'schedule' and 'noise' must be dictionaries, got "
                f"{type(self.schedule).__name__} and {type(self.noise).__name__}"
            )
        kind = self.schedule.get("kind")
        if kind not in (*_SCHEDULES, "betas"):
            raise ValueError(f"unknown schedule kind {kind!r}; use one of {[*_SCHEDULES, 'betas']}")
        if self.noise.get("kind") not in NOISE_KINDS:
            raise ValueError(
                f"unknown noise kind {self.noise.get('kind')!r}; use one of {NOISE_KINDS}"
            )
        # Build once so that a bad argument fails here, with the spec in the message, rather than
        # as a TypeError deep inside a checkpoint load or a training run.
        try:
            self.build_noise(self.build_schedule())
        except (TypeError, KeyError) as e:
            raise ValueError(f"invalid process spec {self.to_dict()}: {e}") from None

    @property
    def kind(self) -> str:
        """The noise kind: ``isotropic``, ``gff`` or ``edge``."""
        return str(self.noise["kind"])

    def to_dict(self) -> dict[str, Any]:
        return {"schedule": dict(self.schedule), "noise": dict(self.noise)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProcessSpec:
        if not isinstance(d, dict) or "schedule" not in d or "noise" not in d:
            raise ValueError("a process spec needs 'schedule' and 'noise' entries")
        if not isinstance(d["schedule"], dict) or not isinstance(d["noise"], dict):
            raise ValueError("a process spec's 'schedule' and 'noise' must be dictionaries")
        return cls(schedule=dict(d["schedule"]), noise=dict(d["noise"]))

    def build_schedule(self) -> DiscreteSchedule:
        args = {k: v for k, v in self.schedule.items() if k != "kind"}
        if self.schedule["kind"] == "betas":
            if set(args) != {"betas"}:
                raise ValueError(f"schedule kind 'betas' takes only a 'betas' list, got {args}")
            return DiscreteSchedule(args["betas"])
        return _SCHEDULES[self.schedule["kind"]](**args)

    def build_noise(
        self, schedule: DiscreteSchedule | None = None
    ) -> NoiseModel | EdgePreservingNoise:
        """The noise: a :class:`NoiseModel`, or an :class:`EdgePreservingNoise` for ``edge``."""
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
        tau = _TAUS[tau_kind](t_phi=args.pop("t_phi", 0.5))
        edges = SobelEdges(
            squared=args.pop("squared", False), per_image=args.pop("per_image", True)
        )
        return EdgePreservingNoise(schedule, tau=tau, edges=edges, **args)

    def process(self) -> Process:
        """The run-time :class:`~nidiff.process.Process` of this spec."""
        schedule = self.build_schedule()
        return Process(schedule, self.build_noise(schedule))

    def step_rule(
        self,
        eta: float = 0.0,
        schedule: DiscreteSchedule | None = None,
        clip_x0: tuple[float, float] | None = None,
    ):
        """The reverse step of this process (see :meth:`nidiff.process.Process.rule`)."""
        schedule = schedule if schedule is not None else self.build_schedule()
        return Process(schedule, self.build_noise(schedule)).rule(eta, clip_x0)

    def loss(self, schedule: DiscreteSchedule | None = None) -> EpsilonLoss | EdgeLoss:
        """The training objective of this process (white-ε, or EP eq. 15)."""
        schedule = schedule if schedule is not None else self.build_schedule()
        noise = self.build_noise(schedule)
        return EdgeLoss(noise) if self.kind == "edge" else EpsilonLoss(schedule, noise)
