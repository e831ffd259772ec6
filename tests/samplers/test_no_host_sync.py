"""Sampling loops read no device data per step: their host reads do not grow with the steps.

On an accelerator every host read of a device tensor (``bool(t)``, ``float(t)``, ``t.item()``,
...) waits for the queued kernels, so a read per step stalls the loop every step. The loops are
run here with the state on the ``meta`` device, which holds shapes but no data: the tensors that
stand for device data are exactly the meta tensors, while the grid's float64 CPU times stay
readable as they are on a real accelerator. The read methods of ``torch.Tensor`` are wrapped to
count every read of a meta tensor and answer it with a value under which every check passes
(``True``, ``0.5``, ``0``), so both runs take the same path; any other way of reaching meta data
(``.cpu()``, ``.numpy()``, data-dependent shapes such as ``nonzero``) raises and fails the test.
Each method is run at 5 and at 20 steps: equal counts mean no read inside the loop (only entry
validation and the one deferred finiteness check at the end).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from nidiff.editing import diffedit, ilvr, ngdm, ngdm_edit_friendly, sdedit
from nidiff.inversion import (
    cycle_edit,
    cycle_invert,
    ddim_edit,
    ddim_invert,
    edit_friendly_invert,
    edit_friendly_regenerate,
)
from nidiff.inversion.edit_friendly import edit_friendly_step
from nidiff.noise import DiagonalNoise, EdgePreservingNoise
from nidiff.noise.edge import SigmoidTau
from nidiff.process import Process
from nidiff.samplers import DDIM, DDPM, EdgePosterior, sample
from nidiff.schedule import DiscreteSchedule, VPSchedule, custom_grid, leading_grid

SCHED = DiscreteSchedule.linear(1000)
SHAPE = (2, 1, 8, 8)
META = torch.device("meta")
#: What a counted read of a meta tensor returns: every check passes, both runs take one path.
ANSWERS = {
    "__bool__": True,
    "item": 0.5,
    "__float__": 0.5,
    "__int__": 0,
    "__index__": 0,
}


def model(x_t: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
    """A tiny analytic denoiser: no host reads of its own, runs on any device."""
    return 0.1 * x_t


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _meta(seed: int) -> torch.Tensor:
    return torch.randn(SHAPE, generator=_gen(seed)).to(META)


@pytest.fixture
def count_reads(monkeypatch) -> Callable[[Callable[[], object]], int]:
    """``count_reads(fn)``: run ``fn`` and return how many times it read a meta tensor."""
    reads = [0]

    def wrap(name: str) -> Callable:
        original = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            if self.device.type == "meta":
                reads[0] += 1
                return ANSWERS[name]
            return original(self, *args, **kwargs)

        return read

    for name in ANSWERS:
        monkeypatch.setattr(torch.Tensor, name, wrap(name))

    def run(fn: Callable[[], object]) -> int:
        reads[0] = 0
        fn()
        return reads[0]

    return run


def _sample(rule) -> Callable[[int], object]:
    return lambda n: sample(model, _meta(1), leading_grid(SCHED, n), rule, noise=_gen(0))


ISO = Process(SCHED)
EDGE = Process(SCHED, EdgePreservingNoise(SCHED))
#: A user's edge callable, whose values (unlike SobelEdges') are checked every step.
CUSTOM_EDGES = EdgePreservingNoise(SCHED, edges=lambda x: x.abs().mean(1, keepdim=True))


def _ngdm(n: int) -> object:
    lam = torch.rand(SHAPE[0], 1, *SHAPE[2:], generator=_gen(2))
    return ngdm(model, _meta(1), ISO, leading_grid(SCHED, n), lam, cond=None, generator=_gen(3))


def _ngdm_edge(n: int) -> object:
    lam = torch.full((1, 1, *SHAPE[2:]), 0.5)
    return ngdm(model, _meta(1), EDGE, leading_grid(SCHED, n), lam, cond=None, generator=_gen(3))


def _sdedit(n: int) -> object:
    return sdedit(model, _meta(1), ISO, leading_grid(SCHED, n), strength=0.7, generator=_gen(3))


def _edit_friendly(n: int) -> object:
    inv = edit_friendly_invert(model, _meta(1), ISO, leading_grid(SCHED, n), generator=_gen(3))
    return edit_friendly_regenerate(model, inv, ISO, skip=1)


def _ngdm_edit_friendly(n: int) -> object:
    inv = edit_friendly_invert(model, _meta(1), ISO, leading_grid(SCHED, n), generator=_gen(3))
    return ngdm_edit_friendly(model, inv, ISO, torch.full((1, 1, *SHAPE[2:]), 0.5), cond=None)


def _cycle(n: int) -> object:
    inv = cycle_invert(model, _meta(1), ISO, leading_grid(SCHED, n), generator=_gen(3))
    return cycle_edit(model, inv, ISO)


def _ddim_inversion(n: int) -> object:
    return ddim_edit(model, ddim_invert(model, _meta(1), ISO, leading_grid(SCHED, n)), ISO)


def _diffedit(n: int) -> object:
    mask = torch.ones(1, 1, *SHAPE[2:])
    grid = leading_grid(SCHED, n)
    return diffedit(model, _meta(1), ISO, grid, source_cond=None, target_cond=None, mask=mask)


def _ilvr(n: int) -> object:
    return ilvr(model, _meta(1), EDGE, leading_grid(SCHED, n), factor=2, generator=_gen(3))


RUNS = {
    "ddpm": _sample(DDPM(SCHED)),
    "ddim": _sample(DDIM(SCHED, eta=0.0)),
    "ddim_clipped": _sample(DDIM(SCHED, eta=0.5, clip_x0=(-1.0, 1.0))),
    "edge": _sample(EdgePosterior(EDGE.noise)),
    "edge_custom_edges": _sample(EdgePosterior(CUSTOM_EDGES)),
    "ngdm": _ngdm,
    "ngdm_edge": _ngdm_edge,
    "sdedit": _sdedit,
    "edit_friendly": _edit_friendly,
    "ngdm_edit_friendly": _ngdm_edit_friendly,
    "cycle": _cycle,
    "ddim_inversion": _ddim_inversion,
    "diffedit": _diffedit,
    "ilvr_edge": _ilvr,
}


@pytest.mark.parametrize("method", RUNS)
def test_host_reads_do_not_grow_with_steps(count_reads, method):
    run = RUNS[method]
    few, many = count_reads(lambda: run(5)), count_reads(lambda: run(20))
    assert few == many, f"{method}: {few} host reads at 5 steps, {many} at 20"


@pytest.mark.parametrize(
    ("method", "reads"), [("ddpm", 1), ("ddim", 1), ("ddim_clipped", 1), ("edge", 0)]
)
def test_sample_reads_the_device_at_most_once(count_reads, method, reads):
    """The driver loop itself: DDIM and DDPM read once, their finiteness checks deferred to the
    end; the edge-preserving posterior checks no values (a non-finite output propagates)."""
    assert count_reads(lambda: RUNS[method](20)) == reads


def test_a_negative_user_edge_map_is_still_refused_naming_the_step():
    """(The first steps are in the isotropic phase, where no edge map is computed.)"""
    noise = EdgePreservingNoise(SCHED, edges=lambda x: -x.abs().mean(1, keepdim=True) - 1)
    x_T = torch.randn(SHAPE, generator=_gen(1))
    with pytest.raises(ValueError, match=r"edge map must be >= 0 at step \d+"):
        sample(model, x_T, leading_grid(SCHED, 5), EdgePosterior(noise), noise=_gen(0))


def _f64(t) -> torch.Tensor:
    return torch.tensor(t, dtype=torch.float64)


VP = VPSchedule()
RULES = {
    "ddim": DDIM(SCHED),
    "ddim_eta_half": DDIM(SCHED, DiagonalNoise(torch.full((1, 8, 8), 0.5)), eta=0.5),
    "ddpm": DDPM(SCHED),
    "ddpm_vp": DDPM(VP),
    "edge": EdgePosterior(EDGE.noise),
    "edge_sigmoid": EdgePosterior(EdgePreservingNoise(SCHED, tau=SigmoidTau())),
    "edge_vp": EdgePosterior(EdgePreservingNoise(VP)),
}
DISCRETE_STEPS = [
    *leading_grid(SCHED, 10),  # ends with the step to 0
    (_f64(2.0), _f64(1.0)),
    (_f64([600.0, 20.0]), _f64([20.0, 0.0])),  # per sample, one of them to 0
]
#: Tiny continuous-time steps, whose std rounds to 0 in float16 for DDIM. (The edge-preserving
#: phase's per-pixel std is taken as non-zero; only steps far below float16's resolution, which
#: no grid takes, round it to 0 in every pixel.)
VP_STEPS = [*custom_grid([1.0, 0.5, 1e-3, 1e-6]), (_f64([0.6, 0.3]), _f64([0.5, 0.0]))]
TINY_STEPS = [*custom_grid([1e-9, 1e-12, 1e-15]), (_f64(0.6), _f64(0.6 - 1e-14))]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
@pytest.mark.parametrize("name", RULES)
def test_deterministic_flag_is_std_zero_everywhere(name, dtype):
    """The flag each rule (and the edit-friendly step) sets from host-side values agrees with
    the definition it replaces, ``std == 0`` everywhere, on every step."""
    rule = RULES[name]
    x = torch.randn(SHAPE, generator=_gen(0), dtype=dtype)
    schedule = rule.noise.schedule if isinstance(rule, EdgePosterior) else rule.schedule
    if schedule is SCHED:
        steps = DISCRETE_STEPS
    else:
        steps = VP_STEPS if isinstance(rule, EdgePosterior) else VP_STEPS + TINY_STEPS
    for t, t_prev in steps:
        for tr in (
            rule.transition(x, 0.1 * x, t, t_prev),
            edit_friendly_step(model, rule, schedule, x, t, t_prev, None),
        ):
            assert tr.deterministic is not None
            assert tr.is_deterministic == bool((tr.std == 0).all()), (name, t, t_prev)
