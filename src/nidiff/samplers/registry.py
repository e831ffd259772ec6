"""Every sampler by name, and the default per process: the one table the library, the CLI, the
benchmarks and the studio read.

``build_rule(name, process, **options)`` builds the step rule ``name`` for a
:class:`~nidiff.process.Process` (its schedule, noise and prediction), refusing a combination
the rule cannot serve with a message naming both. ``default_sampler(process)`` is the one
default: the edge-preserving posterior for data-conditioned noise, annealed Langevin for a
variance-exploding (NI-SMLD) process, DDPM otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .ddim import DDIM, DDPM
from .dpm_solver import DPMSolverPP, SDEDPMSolverPP
from .edge import EdgePosterior
from .flow import FlowEuler, FlowHeun
from .karras import EulerAncestral, Heun
from .langevin import Langevin
from .sde import EulerMaruyama

if TYPE_CHECKING:
    from ..process import Process

__all__ = [
    "SAMPLERS",
    "SamplerInfo",
    "build_rule",
    "choose_rule",
    "default_rule",
    "default_sampler",
    "pixel_sampling_rule",
    "rule_spec",
    "takes_eta",
]


@dataclass(frozen=True)
class SamplerInfo:
    """One entry of :data:`SAMPLERS`.

    Attributes:
        name: the name used everywhere (``--sampler NAME``).
        summary: one line for ``--help``.
        build: ``build(process, **options) -> rule``.
        stochastic: whether it draws noise (so edit-friendly inversion can record it).
        evaluations: model calls per step (Heun: 2, except its last step).
        options: the keyword options ``build`` accepts, with their defaults.
        multistep: whether a step uses the history of earlier ones (``Transition.state``).
    """

    name: str
    summary: str
    build: Callable[..., Any]
    stochastic: bool
    evaluations: int = 1
    options: tuple[tuple[str, Any], ...] = ()
    multistep: bool = False


def _fixed(cls: type, **fixed: Any) -> Callable[..., Any]:
    def build(process: Process, **options: Any) -> Any:
        kw = {"prediction": process.prediction, **fixed, **options}
        return cls(process.schedule, process.noise, **kw)

    return build


def _ddim(
    process: Process,
    eta: float = 0.0,
    clip_x0: tuple[float, float] | None = None,
    linear_eta: bool = False,
):
    clip = None if clip_x0 is None else tuple(clip_x0)
    kw = {"prediction": process.prediction, "linear_eta": linear_eta}
    return DDIM(process.schedule, process.noise, eta, clip, **kw)


def _ddpm(process: Process, clip_x0: tuple[float, float] | None = None):
    return _ddim(process, 1.0, clip_x0)


def _langevin(process: Process, step_lr: float | None = None):
    return Langevin(process.schedule, process.noise, step_lr, prediction=process.prediction)


def _is_smld(process: Process) -> bool:
    """A variance-exploding process (NI-SMLD), whose own stochastic sampler is Langevin."""
    from ..schedule import VESchedule

    return isinstance(process.schedule, VESchedule) and not process.noise.data_conditioned


def _edge(process: Process):
    if not process.noise.data_conditioned:
        raise ValueError("the edge-preserving posterior needs an edge-preserving process")
    return EdgePosterior(process.noise)


_ENTRIES = (
    SamplerInfo("ddpm", "DDPM posterior (DDIM eta=1); on rectified flow the stochastic flow "
                "sampler", _ddpm, True, options=(("clip_x0", None),)),
    SamplerInfo("ddim", "DDIM with eta (0: deterministic; on rectified flow = flow Euler)",
                _ddim, False, options=(("eta", 0.0), ("clip_x0", None), ("linear_eta", False))),
    SamplerInfo("dpm++2m", "DPM-Solver++(2M), deterministic multistep", _fixed(DPMSolverPP),
                False, options=(("order", 2),), multistep=True),
    SamplerInfo("dpm++2m-sde", "SDE-DPM-Solver++(2M), LEDITS++'s solver", _fixed(SDEDPMSolverPP),
                True, options=(("order", 2),), multistep=True),
    SamplerInfo("euler-ancestral", "Euler-ancestral (k-diffusion; = DDIM with the same eta)",
                _fixed(EulerAncestral), True, options=(("eta", 1.0),)),
    SamplerInfo("heun", "Heun on the EDM ODE (2 evaluations per step)", _fixed(Heun), False, 2),
    SamplerInfo("flow-euler", "Euler on dx/dt (flow matching; the PF-ODE in t)",
                _fixed(FlowEuler), False),
    SamplerInfo("flow-heun", "Heun on dx/dt (2 evaluations per step)", _fixed(FlowHeun), False, 2),
    SamplerInfo("sde-euler", "Euler-Maruyama on the reverse SDE (continuous schedules)",
                _fixed(EulerMaruyama), True, options=(("denoise_final", True),)),
    SamplerInfo("edge-posterior", "the edge-preserving posterior (EP eq. 12-14)", _edge, True),
    SamplerInfo("langevin", "annealed Langevin, one step per level of a geometric ladder "
                "(NI-SMLD; VE schedules)", _langevin, True, options=(("step_lr", None),)),
)  # fmt: skip

#: Every sampler, by name.
SAMPLERS: dict[str, SamplerInfo] = {e.name: e for e in _ENTRIES}


#: The registry name of each rule class and the fields that are its options (``rule_spec``).
_SPECS: dict[type, tuple[str, tuple[str, ...]]] = {
    DDIM: ("ddim", ("eta", "clip_x0", "linear_eta")),
    DDPM: ("ddim", ("eta", "clip_x0", "linear_eta")),
    DPMSolverPP: ("dpm++2m", ("order",)),
    SDEDPMSolverPP: ("dpm++2m-sde", ("order",)),
    EulerAncestral: ("euler-ancestral", ("eta",)),
    Heun: ("heun", ()),
    FlowEuler: ("flow-euler", ()),
    FlowHeun: ("flow-heun", ()),
    EulerMaruyama: ("sde-euler", ("denoise_final",)),
    EdgePosterior: ("edge-posterior", ()),
    Langevin: ("langevin", ("step_lr",)),
}


def rule_spec(rule: Any) -> dict[str, Any]:
    """The JSON record ``{"sampler": name, **options}`` of a rule, from which
    ``build_rule(name, process, **options)`` rebuilds it (inversion files store it)."""
    if type(rule) not in _SPECS:
        raise ValueError(
            f"cannot record a {type(rule).__name__} step rule; use one of nidiff.samplers "
            f"({list(SAMPLERS)})"
        )
    name, fields = _SPECS[type(rule)]
    spec: dict[str, Any] = {"sampler": name}
    for f in fields:
        v = getattr(rule, f)
        spec[f] = list(v) if isinstance(v, tuple) else v
    return spec


def default_sampler(process: Process) -> str:
    """The default sampler of ``process``: its own posterior for data-conditioned noise
    (edge-preserving), annealed Langevin for NI-SMLD (a VE schedule), DDPM otherwise."""
    if process.noise.data_conditioned:
        return "edge-posterior"
    return "langevin" if _is_smld(process) else "ddpm"


def build_rule(name: str, process: Process, **options: Any) -> Any:
    """The step rule ``name`` for ``process``.

    Raises:
        ValueError: an unknown name or option, or a rule that cannot serve this process (the
            message names both).
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {list(SAMPLERS)}")
    info = SAMPLERS[name]
    allowed = {k for k, _ in info.options}
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(
            f"sampler {name!r} takes no option(s) {sorted(unknown)}; it takes {sorted(allowed)}"
        )
    if process.noise.data_conditioned and name != "edge-posterior":
        raise ValueError(
            f"sampler {name!r} cannot sample an edge-preserving process (its noise depends on x0); "
            "use 'edge-posterior'"
        )
    try:
        return info.build(process, **options)
    except ValueError as err:
        raise ValueError(f"sampler {name!r} on {process.schedule!r}: {err}") from None


def takes_eta(name: str | None) -> bool:
    """Whether ``--eta`` applies to sampler ``name`` (``None``: the process's own rule, which
    takes one)."""
    return name is None or "eta" in dict(SAMPLERS.get(name, SAMPLERS["ddpm"]).options)


def choose_rule(process: Process, name: str | None = None, *, eta: float | None = None) -> Any:
    """The rule a command runs: sampler ``name`` (with ``eta`` if given, for the samplers that
    take one), or without a name the process's own rule with ``eta`` (default 1: DDPM).

    Raises:
        ValueError: an ``eta`` given to a sampler without one (naming those that take it), or
            any error of :func:`build_rule`.
    """
    if name is None:
        return default_rule(process, 1.0 if eta is None else eta)
    if eta is None:
        return build_rule(name, process)
    if not takes_eta(name):
        takers = [n for n in SAMPLERS if takes_eta(n)]
        raise ValueError(
            f"--eta does not apply to --sampler {name}; samplers with an eta: {', '.join(takers)}"
        )
    return build_rule(name, process, eta=eta)


#: The data range of nidiff's pixel models, to which deterministic sampling clips x̂0.
PIXEL_RANGE = (-1.0, 1.0)


def pixel_sampling_rule(process: Process, stochastic: bool = False) -> Any:
    r"""How nidiff samples its pixel models for previews and benchmarks (one home for the
    policy): deterministic DDIM with :math:`\hat x_0` clipped to the data range
    (``stochastic=False``), or DDPM unclipped; the edge-preserving posterior for EP models
    either way (it is stochastic and takes no clipping)."""
    if process.noise.data_conditioned:
        return default_rule(process)
    return default_rule(process, 1.0) if stochastic else default_rule(process, 0.0, PIXEL_RANGE)


def default_rule(process: Process, eta: float = 1.0, clip_x0: tuple[float, float] | None = None):
    """The process's own reverse step with stochasticity ``eta``: (NI-)DDIM (DDPM at ``eta=1``),
    or the edge-preserving posterior (``eta=1``, no clipping) for data-conditioned noise; on a
    VE (NI-SMLD) process ``eta=1`` without clipping is annealed Langevin, SMLD's own sampler
    (DDIM with ``eta < 1`` or clipping otherwise)."""
    if process.noise.data_conditioned:
        if eta != 1.0 or clip_x0 is not None:
            raise ValueError("the edge-preserving posterior takes eta=1 and no clipping")
        return EdgePosterior(process.noise)
    if eta == 1.0 and clip_x0 is None and _is_smld(process):
        return _langevin(process)
    return _ddim(process, eta, clip_x0)
