"""Plug-and-Play from edit-friendly maps and from DDIM inversion, on the tiny offline Stable
Diffusion pipeline: the identity edit reconstructs exactly with EF and as closely as DDIM
inversion allows (measured); the feature and self-attention injections act where and when they
should; the layer checks."""

from __future__ import annotations

import itertools
import math
import re

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import tiny_sd

from nidiff.editing import pnp_edit
from nidiff.editing.pnp import PNP_FEATURE_LAYER, pnp_layers, refined_grid
from nidiff.inversion import ddim_edit, ddim_invert
from nidiff.models.attention import (
    AttentionEdit,
    ControlledDenoiser,
    controlled_attention,
    pair_cond,
    pnp_self_layers,
    resnet_blocks,
)

CAT, DOG = "a photo of a cat", "a photo of a dog"
STEPS = 6
SELF = "up_blocks.1.attentions.1.transformer_blocks.0.attn1.processor"


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return tiny_sd.build_tiny_sd(tmp_path_factory.mktemp("tiny_sd_pnp"))


@pytest.fixture(scope="module")
def z0():
    return torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def conds(sd):
    return sd.encode_prompt([CAT]), sd.encode_prompt([DOG])


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_identity_edit_reconstructs_the_input_exactly_with_ef(sd, z0, conds):
    """Target = source at the source's guidance, both injections on every step: the target's
    own features and maps are the injected ones, and EF's maps give z0 back (measured ~1e-9)."""
    c = conds[0]
    out = pnp_edit(sd, z0, source_cond=c, target_cond=c, steps=STEPS, source_guidance=3.5,
                   guidance=3.5, feature_replace=1.0, self_replace=1.0,
                   generator=torch.Generator().manual_seed(1))  # fmt: skip
    err = _rel(out.x0, z0)
    print(f"PnP + EF identity edit: relative error {err:.2e}")
    assert err <= 1e-6
    assert out.nfe == 2 * STEPS  # inversion + one batched call per step
    assert out.info["method"] == "pnp_edit_friendly"
    assert out.info["self_layers"] == [SELF] and out.info["feature_layers"] == [PNP_FEATURE_LAYER]


def test_identity_edit_with_ddim_is_bounded_by_ddim_inversion(sd, z0, conds):
    """From DDIM inversion the target starts at the inverted x_T and follows DDIM with the
    source's features injected. Without injection the identity edit is exactly DDIM's own
    reconstruction from x_T (whose error is DDIM inversion's); the injections, read from the
    inversion's states (which end at z0), bring it closer (measured: 0.52 with, 0.70 without, on
    a 37-step inversion of a 6-step edit with the tiny random UNet)."""
    c, null = conds[0], sd.null_cond()
    grid = sd.grid(STEPS)
    kw = {"source_cond": c, "target_cond": c, "inversion": "ddim", "steps": STEPS,
          "source_guidance": 1.0, "guidance": 1.0, "inversion_steps": 40}  # fmt: skip
    on = pnp_edit(sd, z0, **kw)
    off = pnp_edit(sd, z0, feature_replace=0.0, self_replace=0.0, **kw)
    fine = refined_grid(grid, 40, sd.process.schedule)
    inv = ddim_invert(sd.denoiser, z0, sd.process, fine, cond=c, null_cond=null)
    x_T = inv.trajectory[[float(t) for t in fine.times].index(float(grid.t[0]))]
    start = type(inv)(x_T, grid, c, 1.0, [x_T], 0)
    rec = ddim_edit(sd.denoiser, start, sd.process, cond=c, null_cond=null).x0
    e_on, e_off = _rel(on.x0, z0), _rel(off.x0, z0)
    print(
        f"PnP + DDIM identity edit: relative error {e_on:.3f} with injection, {e_off:.3f} "
        f"without (DDIM reconstruction {_rel(rec, z0):.3f})"
    )
    assert _rel(off.x0, rec) <= 1e-4  # the batch [source; target] rounds otherwise (2.8e-6)
    assert e_on < e_off
    assert on.info["method"] == "pnp_ddim" and on.info["inversion_steps"] == len(fine)
    assert on.nfe == len(fine) + STEPS


def test_refined_grid_runs_through_every_edit_time(sd):
    grid = sd.grid(STEPS)
    fine = refined_grid(grid, 100, sd.process.schedule)
    times = [float(t) for t in fine.times]
    assert all(float(t) in times for t in grid.times)
    assert all(a > b for a, b in itertools.pairwise(times))
    assert all(t == round(t) for t in times)  # a discrete schedule's integer times
    # the 5 steps above t = 2 split into ceil(100 / 6) = 17 each, the last (2 -> 0) into 2, 1
    assert len(fine) == 5 * 17 + 2
    assert len(refined_grid(grid, STEPS, sd.process.schedule)) == STEPS  # no refinement


def test_ddim_inversion_given_or_made_here_agree(sd, z0, conds):
    """A :class:`DDIMInversion` passed in (its trajectory the source states) gives the edit
    made from latents with ``inversion_steps`` = the edit's steps (no refinement)."""
    src, tgt = conds
    grid = sd.grid(STEPS)
    inv = ddim_invert(sd.denoiser, z0, sd.process, grid, cond=src, null_cond=sd.null_cond())
    given = pnp_edit(sd, inv, source_cond=src, target_cond=tgt, guidance=5.0)
    here = pnp_edit(sd, z0, source_cond=src, target_cond=tgt, inversion="ddim", steps=STEPS,
                    source_guidance=1.0, guidance=5.0, inversion_steps=STEPS)  # fmt: skip
    assert torch.equal(given.x0, here.x0) and given.nfe == STEPS


@pytest.mark.parametrize("inversion", ["ef", "ddim"])
def test_each_injection_changes_the_edit(sd, z0, conds, inversion):
    src, tgt = conds
    kw = {"source_cond": src, "target_cond": tgt, "inversion": inversion, "steps": STEPS,
          "inversion_steps": STEPS}  # fmt: skip

    def edit(f, a):
        g = torch.Generator().manual_seed(1)
        return pnp_edit(sd, z0, feature_replace=f, self_replace=a, generator=g, **kw).x0

    none, both, feat, attn = edit(0, 0), edit(0.8, 0.5), edit(0.8, 0), edit(0, 0.5)
    d = {name: _rel(x, none) for name, x in (("both", both), ("features", feat), ("self", attn))}
    print(f"PnP + {inversion}: change vs no injection {d}")
    assert all(torch.isfinite(x).all() for x in (none, both, feat, attn))
    assert min(d.values()) > 1e-3
    assert not torch.equal(feat, attn)


def _hooked_call(sd, edit, x_src, x_tgt, t, conds):
    """One controlled UNet call of ``[x_src; x_tgt]``; the ResNet block ``conv2`` outputs as
    the rest of the block sees them (a hook installed after the injection's)."""
    seen = {}
    block = resnet_blocks(sd.unet)[PNP_FEATURE_LAYER]
    net = ControlledDenoiser(sd.denoiser, edit)
    with controlled_attention(sd.unet):
        h = block.conv2.register_forward_hook(lambda m, a, out: seen.update(out=out.clone()))
        try:
            eps = net(torch.cat([x_src, x_tgt]), t, pair_cond(*conds))
        finally:
            h.remove()
    return seen["out"], eps


def test_features_are_the_sources_inside_the_window_only(sd, conds):
    """The target rows' conv2 output of the feature block is the source row's for
    ``t > feature_t`` and its own after; the source row is never changed."""
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(5))
    edit = AttentionEdit(feature_layers=frozenset({PNP_FEATURE_LAYER}), feature_t=500.0,
                         self_layers=frozenset(), cross_maps=False)  # fmt: skip
    plain = AttentionEdit(self_layers=frozenset(), cross_maps=False)
    for t, inside in ((torch.tensor(800.0), True), (torch.tensor(200.0), False)):
        out, eps = _hooked_call(sd, edit, x[:1], x[1:], t, conds)
        ref, eps_ref = _hooked_call(sd, plain, x[:1], x[1:], t, conds)
        assert torch.equal(out[0], ref[0]) and torch.equal(eps[0], eps_ref[0])
        assert torch.equal(out[1], ref[0]) == inside
        assert torch.equal(out[1], ref[1]) == (not inside)


def test_self_attention_injection_is_exact_for_a_twin_and_acts_otherwise(sd, conds):
    """Injecting the source's queries and keys into a target with the same state and prompt
    changes nothing; into another state it changes the target's prediction, not the source's;
    and a layer outside ``self_layers`` is not injected."""
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(6))
    t = torch.tensor(700.0)
    src = conds[0]
    edit = AttentionEdit(self_t=0.0, self_layers=frozenset({SELF}), cross_maps=False)
    none = AttentionEdit(self_layers=frozenset(), cross_maps=False)

    def call(e, x_src, x_tgt):
        with controlled_attention(sd.unet):
            return ControlledDenoiser(sd.denoiser, e)(torch.cat([x_src, x_tgt]), t,
                                                      pair_cond(src, src))  # fmt: skip

    twin = call(edit, x[:1], x[:1])
    assert torch.equal(twin[1], twin[0])
    on, off = call(edit, x[:1], x[1:]), call(none, x[:1], x[1:])
    assert torch.equal(on[0], off[0]) and _rel(on[1], off[1]) > 1e-4


def test_layer_checks(sd):
    from diffusers import UNet2DConditionModel

    assert pnp_self_layers(sd.unet) == frozenset({SELF})
    assert pnp_layers(sd.unet) == frozenset({SELF})
    with pytest.raises(ValueError, match=re.escape("no self-attention layer 'up_blocks.9")):
        ControlledDenoiser(sd.denoiser, AttentionEdit(self_layers=frozenset({"up_blocks.9"})))
    with pytest.raises(ValueError, match=re.escape("its decoder blocks are up_blocks.0.resnets.0")):
        ControlledDenoiser(sd.denoiser, AttentionEdit(feature_layers=frozenset({"mid.x"})))
    with pytest.raises(ValueError, match="frozenset"):
        AttentionEdit(feature_layers=PNP_FEATURE_LAYER)  # a string, not a set of names
    with pytest.raises(ValueError, match="feature_t"):
        AttentionEdit(feature_t=math.nan)
    with pytest.raises(ValueError, match=re.escape("no ResNet block 'up_blocks.1.resnets.7'")):
        pnp_edit(sd, torch.zeros(1, 4, 16, 16), source_cond=sd.null_cond(),
                 target_cond=sd.null_cond(), steps=2,
                 feature_layers=("up_blocks.1.resnets.7",))  # fmt: skip
    plain = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64),
        layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"), mid_block_type=None,
        cross_attention_dim=tiny_sd.EMBED_DIM, norm_num_groups=32,
    )  # fmt: skip
    with pytest.raises(ValueError, match="no decoder self-attention layers"):
        pnp_layers(plain)
    assert pnp_layers(plain, need_self=False) == frozenset()  # features alone: its block is there
