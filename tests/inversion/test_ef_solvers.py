"""Edit-friendly inversion with every stochastic step rule: exact reconstruction on a pixel model
(the bundled Fashion-MNIST DDPM), a latent model (the tiny offline Stable Diffusion) and a
rectified-flow model; multistep history carried into edits that skip steps; refusals before any
network evaluation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nidiff.bundled import ASSETS, load_bundled
from nidiff.data.folder import load_image
from nidiff.inversion import (
    edit_friendly_invert,
    edit_friendly_regenerate,
    load_inversion,
    save_inversion,
)
from nidiff.models.prediction import FlowVelocity
from nidiff.process import Process
from nidiff.schedule import RectifiedFlow, custom_grid, flow_grid, leading_grid

RTOL = 1e-5  # the bound, float32


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


class Counting:
    """A model that counts its calls."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, x, t, cond=None):
        self.calls += 1
        return self.model(x, t, cond)


# ------------------------------------------------------------------ a pixel model
PIXEL_RULES = {
    "ddpm": {},
    "ddim": {"eta": 0.5},
    "dpm++2m-sde": {},
    "euler-ancestral": {},
}


@pytest.fixture(scope="module")
def pixel():
    m = load_bundled()
    return m, load_image(ASSETS / "examples" / "sneaker-0.png", size=28, channels=1)[None]


@pytest.mark.parametrize("name", sorted(PIXEL_RULES))
def test_pixel_model_reconstructs_exactly_with_every_stochastic_rule(pixel, name):
    m, x0 = pixel
    proc, src = m.process, torch.tensor([7])
    rule = proc.sampler(name, **PIXEL_RULES[name])
    grid = leading_grid(proc.schedule, 12)
    g = torch.Generator().manual_seed(0)
    inv = edit_friendly_invert(m.denoiser, x0, proc, grid, cond=src, rule=rule, generator=g)
    assert inv.sampler["sampler"] == ("ddim" if name in ("ddim", "ddpm") else name)
    rec = edit_friendly_regenerate(m.denoiser, inv, proc)
    err = rel(rec.x0, x0)
    print(f"{name}: relative reconstruction error {err:.2e}")
    assert err <= RTOL and rec.nfe == len(grid)
    # skipping steps starts from the recorded state and history: still exact
    for skip in (3, 7):
        assert rel(edit_friendly_regenerate(m.denoiser, inv, proc, skip=skip).x0, x0) <= RTOL
    # the edit is a different image with the same maps
    edit = edit_friendly_regenerate(m.denoiser, inv, proc, cond=torch.tensor([5]), skip=3)
    assert rel(edit.x0, x0) > 10 * RTOL


def test_multistep_history_survives_a_file_round_trip(pixel, tmp_path):
    """A saved inversion keeps no history; an edit after ``skip`` steps replays the source chain
    to recover it, and lands exactly where the in-memory one does."""
    m, x0 = pixel
    proc, grid = m.process, leading_grid(m.process.schedule, 10)
    rule = proc.sampler("dpm++2m-sde")
    inv = edit_friendly_invert(
        m.denoiser, x0, proc, grid, cond=torch.tensor([7]), rule=rule,
        generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    assert inv.states is not None and inv.states[0] is None and inv.states[1] is not None
    path = save_inversion(inv, tmp_path / "inv.safetensors")
    back = load_inversion(path, process=proc)
    assert back.sampler == inv.sampler and back.states is None
    a = edit_friendly_regenerate(m.denoiser, inv, proc, cond=torch.tensor([5]), skip=4)
    b = edit_friendly_regenerate(m.denoiser, back, proc, cond=torch.tensor([5]), skip=4)
    assert b.nfe == a.nfe + 4  # the 4 replayed source steps
    torch.testing.assert_close(b.x0, a.x0, rtol=1e-6, atol=1e-6)


def test_deterministic_rules_are_refused_before_any_evaluation(pixel):
    m, x0 = pixel
    proc, grid = m.process, leading_grid(m.process.schedule, 5)
    net = Counting(m.denoiser)
    for name in ("dpm++2m", "heun", "ddim"):
        with pytest.raises(ValueError, match="deterministic"):
            edit_friendly_invert(
                net, x0, proc, grid, cond=torch.tensor([7]), rule=proc.sampler(name),
                generator=torch.Generator(),
            )  # fmt: skip
    with pytest.raises(ValueError, match="eta"):
        edit_friendly_invert(
            net, x0, proc, grid, cond=torch.tensor([7]), eta=0.5, rule=proc.sampler("ddpm"),
            generator=torch.Generator(),
        )  # fmt: skip
    assert net.calls == 0


# ------------------------------------------------------------------ a latent model
@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    import tiny_sd

    return tiny_sd.build_tiny_sd(tmp_path_factory.mktemp("tiny_sd_ef"))


@pytest.mark.parametrize("name", ["ddpm", "dpm++2m-sde", "euler-ancestral"])
def test_latent_model_reconstructs_exactly(sd, name):
    z0 = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    proc = sd.process
    cond = sd.encode_prompt(["a photo of a cat"])
    inv = edit_friendly_invert(
        sd.guided(3.5), z0, proc, sd.leading_grid(8), cond=cond, rule=proc.sampler(name),
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    err = rel(edit_friendly_regenerate(sd.guided(3.5), inv, proc).x0, z0)
    print(f"latent {name}: relative reconstruction error {err:.2e}")
    assert err <= RTOL


# ------------------------------------------------------------------ a rectified-flow model
class TinyVelocity(nn.Module):
    """A random conv net with a time input: ``u = net(x, t)`` (velocity parametrisation)."""

    def __init__(self, channels: int = 2):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(channels + 1, 16, 3, padding=1)
        self.b = nn.Conv2d(16, channels, 3, padding=1)

    def forward(self, x, t, cond=None):
        tt = torch.as_tensor(t, dtype=x.dtype).expand(x.shape[0]).reshape(-1, 1, 1, 1)
        h = torch.cat([x, tt.expand(-1, 1, *x.shape[2:])], 1)
        return self.b(torch.tanh(self.a(h)))


FLOW_RULES = {
    "ddpm": flow_grid(10, shift=3.0),
    "dpm++2m-sde": flow_grid(10, shift=3.0),
    # these work in sigma/alpha or on the SDE, singular at t = 1: start just below
    "euler-ancestral": custom_grid(torch.linspace(0.97, 0.05, 10)),
    "sde-euler": custom_grid(torch.linspace(0.97, 0.05, 10)),
}


@pytest.mark.parametrize("name", sorted(FLOW_RULES))
def test_flow_model_reconstructs_exactly(name):
    with torch.no_grad():
        net = TinyVelocity()
        proc = Process(RectifiedFlow(), prediction=FlowVelocity())
        x0 = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(0))
        inv = edit_friendly_invert(
            net, x0, proc, FLOW_RULES[name], rule=proc.sampler(name),
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        err = rel(edit_friendly_regenerate(net, inv, proc).x0, x0)
        print(f"flow {name}: relative reconstruction error {err:.2e}")
        assert err <= RTOL
        assert rel(edit_friendly_regenerate(net, inv, proc, skip=4).x0, x0) <= RTOL


def test_rules_refuse_what_they_cannot_serve():
    flow = Process(RectifiedFlow(), prediction=FlowVelocity())
    with pytest.raises(ValueError, match="alpha_t = 0"):
        flow.sampler("euler-ancestral").transition(
            torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), 1.0, 0.5
        )
    with pytest.raises(ValueError, match="singular"):
        flow.sampler("sde-euler").transition(
            torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), 1.0, 0.5
        )
    discrete = load_bundled().process
    with pytest.raises(ValueError, match=r"sde-euler.*time derivative"):
        discrete.sampler("sde-euler")
    with pytest.raises(ValueError, match=r"flow-euler.*time derivative"):
        discrete.sampler("flow-euler")
    with pytest.raises(ValueError, match="unknown sampler"):
        discrete.sampler("dpm++3m")
    with pytest.raises(ValueError, match="takes no option"):
        discrete.sampler("heun", eta=0.3)
    edge = load_bundled("fashion-edge").process
    with pytest.raises(ValueError, match="edge-preserving"):
        edge.sampler("dpm++2m-sde")


def test_every_method_refuses_a_fractional_skip(pixel):
    """One validation of ``skip`` (EF, DDIM inversion, CycleDiffusion; P2P's is the same
    function): 2.0 is refused everywhere alike."""
    from nidiff.inversion import cycle_edit, cycle_invert, ddim_edit, ddim_invert

    m, x0 = pixel
    proc, grid, src = m.process, leading_grid(m.process.schedule, 4), torch.tensor([7])
    g = torch.Generator().manual_seed(0)
    ef = edit_friendly_invert(m.denoiser, x0, proc, grid, cond=src, generator=g)
    dd = ddim_invert(m.denoiser, x0, proc, grid, cond=src)
    cy = cycle_invert(m.denoiser, x0, proc, grid, cond=src, generator=g)
    for edit in (
        lambda: edit_friendly_regenerate(m.denoiser, ef, proc, skip=2.0),
        lambda: ddim_edit(m.denoiser, dd, proc, cond=src, skip=2.0),
        lambda: cycle_edit(m.denoiser, cy, proc, skip=2.0),
    ):
        with pytest.raises(ValueError, match="integer count of skipped steps"):
            edit()
