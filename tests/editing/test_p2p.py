"""Prompt-to-Prompt with edit-friendly inversion ("P2P + Ours") on the tiny offline SD pipeline."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import tiny_sd

from nidiff.editing import P2PResult, p2p_edit_friendly, p2p_generate
from nidiff.inversion import edit_friendly_invert, edit_friendly_regenerate
from nidiff.models.stable_diffusion import StableDiffusion
from nidiff.schedule import leading_grid

CAT, DOG, TIGER, BIG_CAT = (
    "a photo of a cat",
    "a photo of a dog",
    "a photo of a tiger",
    ("a photo of a big cat"),
)
STEPS, SKIP = 6, 1


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return tiny_sd.build_tiny_sd(tmp_path_factory.mktemp("tiny_sd_p2p"))


@pytest.fixture(scope="module")
def z0():
    return torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def inv(sd, z0):
    grid = leading_grid(sd.process.schedule, STEPS, offset=1)
    return edit_friendly_invert(
        sd.denoiser, z0, sd.process, grid, cond=sd.encode_prompt([CAT]), guidance=3.5,
        null_cond=sd.null_cond(), generator=torch.Generator().manual_seed(1),
    )  # fmt: skip


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _ef_edit(sd, inv, prompt, guidance, skip=SKIP):
    return edit_friendly_regenerate(
        sd.denoiser, inv, sd.process, cond=sd.encode_prompt([prompt]), guidance=guidance,
        null_cond=sd.null_cond(), skip=skip,
    ).x0  # fmt: skip


def test_same_prompt_reproduces_the_ef_reconstruction_in_both_rows(sd, inv, z0):
    """Target prompt = source prompt (full injection, the source's guidance): both rows of the
    batch are the EF reconstruction of z0, whether P2P inverts z0 itself or is given the plain
    EF inversion (same grid and forward noise)."""
    ef = edit_friendly_regenerate(sd.denoiser, inv, sd.process, guidance=3.5,
                                  null_cond=sd.null_cond()).x0  # fmt: skip
    assert _rel(ef, z0) <= 1e-5
    kw = {"skip": SKIP, "guidance": 3.5, "cross_replace": 1.0, "self_replace": 1.0}
    here = p2p_edit_friendly(
        sd, z0, CAT, CAT, steps=STEPS, generator=torch.Generator().manual_seed(1), **kw
    )
    given = p2p_edit_friendly(sd, inv, CAT, CAT, **kw)
    for out in (here, given):
        assert isinstance(out, P2PResult) and out.x0.shape == out.source.shape == z0.shape
        assert _rel(out.source, ef) <= 1e-5 and _rel(out.x0, ef) <= 1e-5
    assert _rel(here.source, z0) <= 1e-5 and _rel(here.x0, z0) <= 1e-5
    assert here.nfe == STEPS + (STEPS - SKIP)  # inversion + one batched call per edit step
    assert given.nfe == STEPS - SKIP
    assert here.info["method"] == "p2p_edit_friendly" and here.info["skip"] == SKIP


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_without_control_the_target_is_the_plain_ef_edit(sd, inv, z0, dtype):
    """Windows 0, no re-weighting: the target row is EF editing (same maps, skip, guidance),
    to float rounding: guidance 9 amplifies float32's, float64 shows the identity."""
    if dtype == torch.float64:
        nets = (copy.deepcopy(m) for m in (sd.unet, sd.vae, sd.text_encoder))
        sd = StableDiffusion(*nets, sd.tokenizer, sd.scheduler, dtype=dtype)
        inv = edit_friendly_invert(
            sd.denoiser, z0.double(), sd.process, inv.grid, cond=sd.encode_prompt([CAT]),
            guidance=3.5, null_cond=sd.null_cond(), generator=torch.Generator().manual_seed(1),
        )  # fmt: skip
    out = p2p_edit_friendly(sd, inv, CAT, DOG, skip=SKIP, guidance=9.0, cross_replace=0.0,
                            self_replace=0.0)  # fmt: skip
    ef = _ef_edit(sd, inv, DOG, 9.0)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert out.x0.dtype == dtype and _rel(out.x0, ef) <= tol
    assert _rel(out.source, inv.x0) <= tol / 10  # the source row keeps the inversion's 3.5
    assert out.nfe == STEPS - SKIP  # an Inversion given: no inversion calls


def test_control_acts_on_the_target_only(sd, inv, z0):
    """Injection changes the target (not a no-op) and never the source row.

    On the tiny random UNet the target is *not* reliably closer to the source with injection
    than without (its text reaches the output mostly through the attention values, which P2P
    keeps): the measured relative distances to z0 straddle the plain-EF ones across seeds.
    """
    off = p2p_edit_friendly(sd, inv, CAT, DOG, skip=SKIP, cross_replace=0.0, self_replace=0.0)
    on = p2p_edit_friendly(sd, inv, CAT, DOG, skip=SKIP, cross_replace=1.0, self_replace=1.0)
    torch.testing.assert_close(on.source, off.source, rtol=0, atol=1e-6)
    assert _rel(on.x0, off.x0) > 1e-3
    assert _rel(on.x0, z0) > 0.05  # the prompt still edits
    assert torch.isfinite(on.x0).all()


def test_windows_follow_the_grid_and_the_maps_are_injected(sd, inv):
    """With cross 0.6 / self 0.2 of the 5 steps run, the observer sees cross replacement in
    exactly the first 3 calls and self injection in the first 1; during replacement the
    target's conditional cross-attention maps are the source's mapped through the token map."""
    from nidiff.models.attention import replace_token_map

    records = []
    p2p_edit_friendly(
        sd, inv, CAT, TIGER, skip=SKIP, cross_replace=0.6, self_replace=0.2,
        observer=records.append,
    )  # fmt: skip
    cross = [r for r in records if r.is_cross]
    per_call = len(cross) // (STEPS - SKIP)
    flags = [r.step.replace_cross for r in cross[::per_call]]
    assert flags == [True, True, True, False, False]
    selfs = [r.step.inject_self for r in cross[::per_call]]
    assert selfs == [True, False, False, False, False]
    tmap = replace_token_map(sd.tokenizer, CAT, TIGER)
    for r in cross:
        A = r.probs  # [source, target, null(source), null(target)]
        if r.step.replace_cross:
            torch.testing.assert_close(A[1], tmap.apply(A[0], A[0]), rtol=0, atol=1e-6)
        else:
            assert float((A[1] - tmap.apply(A[0], A[0])).abs().max()) > 1e-4
    for r in records:
        if not r.is_cross and r.step.inject_self:
            torch.testing.assert_close(r.probs[1], r.probs[0], rtol=0, atol=0)


def test_refine_mode_keeps_new_words_and_injects_the_rest(sd, inv):
    from nidiff.models.attention import refine_token_map

    records = []
    out = p2p_edit_friendly(
        sd, inv, CAT, BIG_CAT, skip=SKIP, mode="refine", cross_replace=1.0, self_replace=0.0,
        observer=records.append,
    )  # fmt: skip
    assert out.x0.shape == inv.x0.shape and torch.isfinite(out.x0).all()
    tmap = refine_token_map(sd.tokenizer, CAT, BIG_CAT)
    new = torch.nonzero(tmap.alpha == 0).reshape(-1).tolist()
    assert new == [10, 11, 12]  # 'big'
    kept = [j for j in range(tiny_sd.MAX_LENGTH) if j not in new]
    for r in (r for r in records if r.is_cross):
        A = r.probs
        torch.testing.assert_close(A[1][..., kept], (A[0] @ tmap.matrix)[..., kept], atol=1e-6,
                                   rtol=0)  # fmt: skip
        assert float(A[1][..., new].sum()) > 0  # its own maps, not zeroed


def test_reweighting_changes_only_the_target(sd, inv):
    base = p2p_edit_friendly(sd, inv, CAT, CAT, skip=SKIP, guidance=3.5, cross_replace=0.0,
                             self_replace=0.0)  # fmt: skip
    up = p2p_edit_friendly(sd, inv, CAT, CAT, skip=SKIP, guidance=3.5, cross_replace=0.0,
                           self_replace=0.0, reweight={"cat": 3.0})  # fmt: skip
    torch.testing.assert_close(up.source, base.source, rtol=0, atol=1e-6)
    assert _rel(base.x0, base.source) <= 1e-5
    assert _rel(up.x0, base.x0) > 1e-3
    assert up.info["reweight"] == {"cat": 3.0}


def test_inversion_without_trajectory_gives_the_same_edit(sd, inv):
    kw = {"skip": 2, "cross_replace": 0.6, "self_replace": 0.2}
    a = p2p_edit_friendly(sd, inv, CAT, DOG, **kw)
    b = p2p_edit_friendly(sd, replace(inv, xs=None), CAT, DOG, **kw)
    assert _rel(b.x0, a.x0) <= 1e-5 and _rel(b.source, a.source) <= 1e-5
    assert (a.nfe, b.nfe) == (STEPS - 2, STEPS)  # 2 replayed source steps


def test_bad_arguments_are_refused(sd, inv, z0):
    with pytest.raises(ValueError, match="same number of words"):
        p2p_edit_friendly(sd, inv, CAT, BIG_CAT, skip=SKIP)
    with pytest.raises(ValueError, match="mode"):
        p2p_edit_friendly(sd, inv, CAT, DOG, skip=SKIP, mode="swap")
    with pytest.raises(ValueError, match="skip"):
        p2p_edit_friendly(sd, inv, CAT, DOG, skip=STEPS)
    with pytest.raises(ValueError, match="fraction"):
        p2p_edit_friendly(sd, inv, CAT, DOG, skip=SKIP, cross_replace=1.5)
    with pytest.raises(ValueError, match="own grid"):
        p2p_edit_friendly(sd, inv, CAT, DOG, grid=inv.grid)
    with pytest.raises(ValueError, match="latents"):
        p2p_edit_friendly(sd, z0[0], CAT, DOG)


def test_plain_p2p_generates_a_pair_from_shared_noise(sd):
    same = p2p_generate(sd, CAT, CAT, steps=4, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(same.x0, same.source, rtol=0, atol=1e-6)  # one prompt, one image
    pair = p2p_generate(sd, CAT, DOG, steps=4, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(pair.source, same.source, rtol=0, atol=1e-6)  # source unaffected
    assert pair.x0.shape == (1, 4, 8, 8) and _rel(pair.x0, pair.source) > 1e-3
    assert pair.nfe == 4 and pair.inversion is None
    assert not math.isnan(float(pair.x0.sum()))


def test_half_precision_source_row_is_exact_when_inverted_here(sd, z0):
    """The inversion runs through the same explicit attention as the regeneration, so even a
    bfloat16 UNet (where diffusers' and the explicit attention differ by ~1e-2) gives back z0
    in the source row."""
    nets = (copy.deepcopy(m) for m in (sd.unet, sd.vae, sd.text_encoder))
    sd16 = StableDiffusion(*nets, sd.tokenizer, sd.scheduler, dtype=torch.bfloat16)
    out = p2p_edit_friendly(
        sd16, z0, CAT, DOG, steps=STEPS, skip=SKIP, generator=torch.Generator().manual_seed(1)
    )
    assert out.x0.dtype == torch.float32 and torch.isfinite(out.x0).all()
    assert _rel(out.source, z0) <= 1e-5


def test_a_unet_without_cross_attention_is_refused(z0, tmp_path):
    """Prompt-to-Prompt controls cross-attention: with none it refuses before any call."""
    p = tiny_sd.build_tiny_pipeline(tmp_path)
    plain = StableDiffusion(tiny_sd.build_plain_unet(), p.vae, p.text_encoder, p.tokenizer,
                            p.scheduler)  # fmt: skip
    with pytest.raises(ValueError, match=r"Prompt-to-Prompt .* no cross-attention layers"):
        p2p_edit_friendly(plain, z0, "a cat", "a dog", steps=4, skip=1)
