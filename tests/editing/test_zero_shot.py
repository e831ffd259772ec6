"""Zero-Shot I2I (pix2pix-zero) from edit-friendly maps and from DDIM inversion, on the tiny
offline Stable Diffusion pipeline: the identity edit (target = source) reconstructs the input
exactly with EF and reproduces DDIM's own reconstruction with DDIM (whose error is measured);
the cross-attention guidance acts; the direction, replay and the refusals."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import tiny_sd

from nidiff.editing import edit_direction, zero_shot_edit
from nidiff.editing.zero_shot import cross_attention_loss
from nidiff.inversion import ddim_edit, ddim_invert, edit_friendly_invert
from nidiff.models.attention import (
    AttentionEdit,
    ControlledDenoiser,
    controlled_attention,
    cross_attention_layers,
    pair_cond,
)

CAT, DOG = "a photo of a cat", "a photo of a dog"
STEPS = 6


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return tiny_sd.build_tiny_sd(tmp_path_factory.mktemp("tiny_sd_zero_shot"))


@pytest.fixture(scope="module")
def z0():
    return torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def conds(sd):
    return sd.encode_prompt([CAT]), sd.encode_prompt([DOG])


@pytest.fixture(scope="module")
def inv(sd, z0, conds):
    return edit_friendly_invert(
        sd.denoiser, z0, sd.process, sd.grid(STEPS), cond=conds[0], guidance=3.5,
        null_cond=sd.null_cond(), generator=torch.Generator().manual_seed(1),
    )  # fmt: skip


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_identity_edit_reconstructs_the_input_exactly_with_ef(sd, z0, conds, inv):
    """Target = source and the source's guidance: Δc = 0, the target follows the inverted
    states, the guidance's gradient is 0 at every step, and EF's maps give z0 back (measured
    ~1e-9; float32 rounding allows 1e-6). Inverting here and passing the inversion agree."""
    c = conds[0]
    here = zero_shot_edit(sd, z0, source_cond=c, target_cond=c, steps=STEPS, source_guidance=3.5,
                          guidance=3.5, xa_guidance=0.1,
                          generator=torch.Generator().manual_seed(1))  # fmt: skip
    given = zero_shot_edit(sd, inv, source_cond=c, target_cond=c, guidance=3.5, xa_guidance=0.1)
    err = _rel(here.x0, z0)
    print(f"Zero-Shot + EF identity edit: relative error {err:.2e}")
    assert err <= 1e-6 and _rel(given.x0, z0) <= 1e-6
    assert torch.equal(here.x0, given.x0)
    # inversion + one guided call and one step per edit step
    assert here.nfe == 3 * STEPS and given.nfe == 2 * STEPS
    assert here.info["method"] == "zero_shot_edit_friendly" and here.info["xa_guidance"] == 0.1


def test_identity_edit_with_ddim_is_ddim_reconstruction(sd, z0, conds):
    """From DDIM inversion the identity edit is the reference pass itself: DDIM regeneration of
    the inverted x_T at the edit's guidance, bit for bit what :func:`ddim_edit` gives; its
    distance to z0 is DDIM inversion's own error (large on the tiny random UNet, measured
    below). pix2pix-zero's noise regularization makes the inversion worse at reconstructing."""
    c, null = conds[0], sd.null_cond()
    grid = sd.grid(STEPS)
    plain = ddim_invert(sd.denoiser, z0, sd.process, grid, cond=c, guidance=1.0, null_cond=null)
    rec = ddim_edit(sd.denoiser, plain, sd.process, cond=c, guidance=1.0, null_cond=null).x0
    kw = {"source_cond": c, "target_cond": c, "inversion": "ddim", "steps": STEPS,
          "source_guidance": 1.0, "guidance": 1.0, "xa_guidance": 0.1}  # fmt: skip
    ident = zero_shot_edit(sd, z0, noise_reg_steps=0, **kw)
    reg = zero_shot_edit(sd, z0, noise_reg_steps=5, generator=torch.Generator().manual_seed(2),
                         **kw)  # fmt: skip
    e_ddim, e_reg = _rel(rec, z0), _rel(reg.x0, z0)
    print(
        f"Zero-Shot + DDIM identity edit ({STEPS} steps): relative error {_rel(ident.x0, z0):.3f}"
        f" (plain DDIM reconstruction {e_ddim:.3f}); with noise regularization {e_reg:.3f}"
    )
    assert _rel(ident.x0, rec) <= 1e-6
    assert e_reg > e_ddim
    assert ident.nfe == 3 * STEPS + STEPS  # inversion, reference pass, guided calls, steps
    assert ident.info["method"] == "zero_shot_ddim" and reg.info["noise_reg_steps"] == 5


def test_cross_attention_guidance_pulls_the_edit_toward_the_source(sd, z0, conds, inv):
    """λ_xa > 0 moves the edit toward the reference maps' image: the edit from EF maps gets
    closer to z0 as λ_xa grows (measured 0.729 at 0, 0.727 at 1, 0.703 at 10), and 0 is the
    plain regeneration with c_edit."""
    src, tgt = conds
    dist = {xa: _rel(zero_shot_edit(sd, inv, source_cond=src, target_cond=tgt, guidance=3.5,
                                    xa_guidance=xa).x0, z0)
            for xa in (0.0, 1.0, 10.0)}  # fmt: skip
    print(f"Zero-Shot + EF cat -> dog, distance to the input by λ_xa: {dist}")
    assert dist[10.0] < dist[1.0] < dist[0.0]


def test_the_guidance_step_lowers_the_attention_loss(sd, z0, conds, inv):
    """One step of the guidance decreases the loss it descends (first order, small λ)."""
    src, tgt = conds
    x_src = inv.xs[1]
    x = x_src + 0.1 * torch.randn(x_src.shape, generator=torch.Generator().manual_seed(4))
    t = sd.grid(STEPS).t[1]

    def loss_at(state):
        records = []
        net = ControlledDenoiser(sd.denoiser, AttentionEdit(self_max_tokens=0,
                                                            observer=records.append))  # fmt: skip
        with torch.enable_grad(), controlled_attention(sd.unet):
            xg = state.detach().requires_grad_(True)
            net(torch.cat([x_src, xg]), t, pair_cond(src, tgt))
            loss = cross_attention_loss(records)
            (g,) = torch.autograd.grad(loss, xg)
        return float(loss.detach()), g

    before, g = loss_at(x)
    after, _ = loss_at(x - 1e-3 * before / float(g.norm()) ** 2 * g)
    assert 0 < after < before


def test_direction_from_sentences_and_from_prompts(sd, conds):
    """pix2pix-zero's Δc is the difference of mean embeddings; with one sentence each it is the
    difference of the two prompts' embeddings, and giving it as ``direction`` equals giving the
    target prompt."""
    src, tgt = conds
    assert torch.allclose(edit_direction(sd, [CAT], [DOG]), tgt - src, atol=1e-6)
    two = edit_direction(sd, [CAT, "a cat"], [DOG, "a dog"])
    want = sd.encode_prompt([DOG, "a dog"]).mean(0) - sd.encode_prompt([CAT, "a cat"]).mean(0)
    assert two.shape == (1, *src.shape[1:]) and torch.allclose(two[0], want, atol=1e-6)


def test_direction_and_target_give_the_same_edit(sd, conds, inv):
    src, tgt = conds
    a = zero_shot_edit(sd, inv, source_cond=src, target_cond=tgt, xa_guidance=0.05)
    b = zero_shot_edit(sd, inv, source_cond=src, direction=tgt - src, xa_guidance=0.05)
    assert torch.equal(a.x0, b.x0) and torch.isfinite(a.x0).all()


def test_ddim_edit_with_regularization_replays_with_a_seed(sd, z0, conds):
    src, tgt = conds
    kw = {"source_cond": src, "target_cond": tgt, "inversion": "ddim", "steps": 2,
          "noise_reg_steps": 1}  # fmt: skip
    a, b, c = (zero_shot_edit(sd, z0, generator=torch.Generator().manual_seed(s), **kw).x0
               for s in (3, 3, 4))  # fmt: skip
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_refusals(sd, z0, conds, inv):
    src, tgt = conds
    with pytest.raises(ValueError, match="exactly one"):
        zero_shot_edit(sd, inv, source_cond=src)
    with pytest.raises(ValueError, match="exactly one"):
        zero_shot_edit(sd, inv, source_cond=src, target_cond=tgt, direction=tgt - src)
    with pytest.raises(ValueError, match="xa_guidance"):
        zero_shot_edit(sd, inv, source_cond=src, target_cond=tgt, xa_guidance=-1.0)
    with pytest.raises(ValueError, match="'ef' or 'ddim'"):
        zero_shot_edit(sd, z0, source_cond=src, target_cond=tgt, inversion="dpm", steps=2)
    with pytest.raises(ValueError, match="grid="):
        zero_shot_edit(sd, inv, source_cond=src, target_cond=tgt, grid=sd.grid(2))


def test_a_unet_without_cross_attention_is_refused(sd):
    layers = cross_attention_layers(sd.unet, "Zero-Shot I2I")
    assert len(layers) == 4  # attn2 of down, mid and 2 up blocks
    plain = tiny_sd.build_plain_unet()
    with pytest.raises(ValueError, match="no cross-attention layers"):
        cross_attention_layers(plain, "Zero-Shot I2I")
