"""Prompt-to-Prompt attention control on the tiny offline Stable Diffusion UNet: token maps,
processor correctness and restoration, map replacement, re-weighting, self-injection, timing."""

from __future__ import annotations

import copy
import math

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import tiny_sd

from nidiff.models.attention import (
    AttentionEdit,
    ControlledAttnProcessor,
    ControlledDenoiser,
    TokenMap,
    align,
    controlled_attention,
    pair_cond,
    plain_cond,
    refine_token_map,
    replace_token_map,
    token_weights,
    window_threshold,
    word_spans,
)
from nidiff.models.contract import ClassifierFreeGuidance
from nidiff.models.diffusers_unet import ConditionalUNetDenoiser
from nidiff.schedule import leading_grid

CAT, DOG, TIGER = "a photo of a cat", "a photo of a dog", "a photo of a tiger"
BIG_CAT = "a photo of a big cat"


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return tiny_sd.build_tiny_sd(tmp_path_factory.mktemp("tiny_sd_attention"))


@pytest.fixture(scope="module")
def tok(sd):
    return sd.tokenizer


def _z(B: int = 2, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(B, 4, 16, 16, generator=torch.Generator().manual_seed(seed), dtype=dtype)


class Recorder:
    """An observer keeping every record."""

    def __init__(self):
        self.records = []

    def __call__(self, record):
        self.records.append(record)

    def of(self, is_cross: bool):
        return [r for r in self.records if r.is_cross == is_cross]


# ----------------------------------------------------------------------------- token maps
def test_word_spans_follow_the_letter_tokenizer(tok):
    words = word_spans(tok, CAT)
    assert [w.text for w in words] == ["a", "photo", "of", "a", "cat"]
    assert [(w.start, w.stop) for w in words] == [(1, 2), (2, 7), (7, 9), (9, 10), (10, 13)]
    assert words[-1].ids == tuple(tok("cat", add_special_tokens=False).input_ids)
    with pytest.raises(ValueError, match="context length"):
        word_spans(tok, " ".join(["cat"] * 30))


def test_align_is_a_longest_common_subsequence():
    assert align("ABCBDAB", "BDCABA").__len__() == 4  # the textbook pair: LCS length 4
    pairs = align(["a", "photo", "of", "a", "cat"], ["a", "photo", "of", "a", "big", "cat"])
    assert pairs == [(0, 0), (1, 1), (2, 2), (3, 3), (4, 5)]
    assert align([], ["x"]) == [] and align(["x"], ["y"]) == []


def test_replace_map_same_token_counts_is_the_identity(tok):
    m = replace_token_map(tok, CAT, DOG)  # cat and dog: 3 letter-tokens each
    torch.testing.assert_close(m.matrix, torch.eye(tiny_sd.MAX_LENGTH), rtol=0, atol=0)
    assert bool((m.alpha == 1).all())


def test_replace_map_spreads_a_longer_word_and_shifts_the_tail(tok):
    m = replace_token_map(tok, CAT, TIGER)  # cat: tokens 10..12, tiger: 10..14
    P = m.matrix
    torch.testing.assert_close(P.sum(1), torch.ones(tiny_sd.MAX_LENGTH))  # mass is conserved
    torch.testing.assert_close(P[:10, :10], torch.eye(10), rtol=0, atol=0)  # shared words
    torch.testing.assert_close(P[10:13, 10:15], torch.full((3, 5), 1 / 5), rtol=0, atol=0)
    assert P[13, 15] == 1 and P[14, 16] == 1 and P[73, 75] == 1  # end token, padding: +2
    torch.testing.assert_close(P[74:, 76], torch.ones(3), rtol=0, atol=0)  # extra source pads
    back = replace_token_map(tok, TIGER, CAT).matrix  # shorter target: last source pad shared
    torch.testing.assert_close(back.sum(1), torch.ones(tiny_sd.MAX_LENGTH))
    assert back[15, 13] == 1 and back[75, 73] == 1
    torch.testing.assert_close(back[76, 74:], torch.full((3,), 1 / 3), rtol=0, atol=0)
    with pytest.raises(ValueError, match="same number of words"):
        replace_token_map(tok, CAT, BIG_CAT)


def test_refine_map_keeps_new_words_own_maps(tok):
    m = refine_token_map(tok, CAT, BIG_CAT)  # 'big' (3 tokens) added at 10..12
    new = [10, 11, 12]
    assert m.alpha[new].eq(0).all() and m.matrix[:, new].eq(0).all()
    kept = [i for i in range(tiny_sd.MAX_LENGTH) if i not in new]
    assert m.alpha[kept].eq(1).all()
    for j in range(10):  # start token and 'a photo of a': same positions
        assert m.matrix[j, j] == 1
    for j in (13, 14, 15, 16):  # 'cat' and the end token, shifted by 3 in the target
        assert m.matrix[j - 3, j] == 1
    src = torch.rand(2, 4, 7, tiny_sd.MAX_LENGTH)
    tgt = torch.rand(2, 4, 7, tiny_sd.MAX_LENGTH)
    out = m.apply(src, tgt)
    torch.testing.assert_close(out[..., new], tgt[..., new], rtol=0, atol=0)
    torch.testing.assert_close(out[..., 13], src[..., 10], rtol=0, atol=0)


def test_token_weights_mark_every_token_of_the_word(tok):
    w = token_weights(tok, "a cat and a cat", {"cat": 2.0})
    spans = [(w_.start, w_.stop) for w_ in word_spans(tok, "a cat and a cat") if w_.text == "cat"]
    expect = torch.ones(tiny_sd.MAX_LENGTH)
    assert spans == [(2, 5), (9, 12)]  # both occurrences
    for a, b in spans:
        expect[a:b] = 2.0
    torch.testing.assert_close(w, expect, rtol=0, atol=0)
    with pytest.raises(ValueError, match="not a word"):
        token_weights(tok, CAT, {"dog": 2.0})
    with pytest.raises(ValueError, match="finite"):
        token_weights(tok, CAT, {"cat": -1.0})


def test_window_threshold_selects_the_first_steps_run(sd):
    grid = leading_grid(sd.process.schedule, 10, offset=1)
    thr = window_threshold(grid, 0.5, skip=2)  # 4 of the 8 steps run: grid steps 2..5
    active = [i for i in range(10) if float(grid.t[i]) > thr]
    assert active == [0, 1, 2, 3, 4, 5]  # steps 0, 1 are skipped, never run
    assert window_threshold(grid, 0.0) == math.inf
    assert float(grid.t[-1]) > window_threshold(grid, 1.0) > 0
    with pytest.raises(ValueError, match="fraction"):
        window_threshold(grid, 1.5)
    with pytest.raises(ValueError, match="skip"):
        window_threshold(grid, 0.5, skip=10)


# ------------------------------------------------------------------- processors in the UNet
def test_disabled_control_reproduces_the_original_processors(sd):
    """Processor correctness: explicit attention (control off) = diffusers' own attention."""
    net64 = ConditionalUNetDenoiser(copy.deepcopy(sd.unet).double())
    c = sd.encode_prompt([CAT, DOG])
    t = torch.tensor(500.0)
    for net, z, tol in ((net64, _z(dtype=torch.float64), 1e-10), (sd.denoiser, _z(), 1e-5)):
        cond = c.to(z.dtype)
        ref = net(z, t, cond)
        rec = Recorder()
        with controlled_attention(net.unet):
            out = ControlledDenoiser(net, AttentionEdit(observer=rec))(
                z, t, pair_cond(cond[:1], cond[1:])
            )
            plain = net(z, t, cond)  # no step: diffusers' computation itself
        assert len(rec.records) == 8  # every layer ran the explicit path (4 self, 4 cross)
        torch.testing.assert_close(out, ref, rtol=0, atol=tol)
        torch.testing.assert_close(plain, ref, rtol=0, atol=0)


def test_processors_are_restored_even_on_error(sd):
    before = dict(sd.unet.attn_processors)
    with controlled_attention(sd.unet):
        inside = sd.unet.attn_processors
        assert all(isinstance(p, ControlledAttnProcessor) for p in inside.values())
        assert set(inside) == set(before)
    assert all(sd.unet.attn_processors[k] is v for k, v in before.items())
    with pytest.raises(RuntimeError, match="boom"), controlled_attention(sd.unet):
        raise RuntimeError("boom")
    assert all(sd.unet.attn_processors[k] is v for k, v in before.items())


def _guided_call(sd, edit, x, prompts):
    """One CFG call of a controlled pair ``[source; target]`` (guidance concatenates
    ``[cond; null]``, so rows 2, 3 are unconditional)."""
    e = sd.encode_prompt(prompts)
    net = ClassifierFreeGuidance(
        ControlledDenoiser(sd.denoiser, edit), 7.5, plain_cond(sd.null_cond())
    )
    with controlled_attention(sd.unet):
        net(x, torch.tensor(700.0), pair_cond(e[:1], e[1:]))


def test_cross_replace_gives_the_target_the_mapped_source_maps(sd, tok):
    rec = Recorder()
    tmap = replace_token_map(tok, CAT, TIGER)
    edit = AttentionEdit(token_map=tmap, cross_t=-math.inf, observer=rec)
    _guided_call(sd, edit, _z(), [CAT, TIGER])
    cross = rec.of(True)
    assert len(cross) == 4
    for r in cross:
        A = r.probs  # rows: source, target, null(source x), null(target x)
        assert A.shape[0] == 4 and A.shape[-1] == tiny_sd.MAX_LENGTH
        torch.testing.assert_close(A[1], tmap.apply(A[0], A[0]), rtol=0, atol=1e-6)
        torch.testing.assert_close(A[1].sum(-1), torch.ones_like(A[1].sum(-1)))
        assert float((A[3] - A[2]).abs().max()) > 1e-4  # unconditional rows are left alone
    assert all(not r.step.inject_self for r in rec.records)


def test_self_injection_only_in_small_layers_and_conditional_rows(sd):
    rec = Recorder()
    edit = AttentionEdit(self_t=-math.inf, self_max_tokens=64, observer=rec)  # 8x8 layers only
    _guided_call(sd, edit, _z(), [CAT, DOG])
    selfs = rec.of(False)
    assert [r.probs.shape[-1] for r in selfs] == [64]  # the mid block; 16x16 layers use SDPA
    A = selfs[0].probs
    torch.testing.assert_close(A[1], A[0], rtol=0, atol=0)
    assert float((A[3] - A[2]).abs().max()) > 1e-4
    cross = rec.of(True)
    assert all(float((r.probs[1] - r.probs[0]).abs().max()) > 1e-4 for r in cross)  # no replace


def test_reweighting_scales_the_token_columns_after_softmax(sd, tok):
    """Same prompt and same input on both rows: in the first cross-attention layer (before the
    rows' hidden states part) the target's maps are the source's with the word's columns
    multiplied by c, after the softmax and not renormalised."""
    rec = Recorder()
    c = 2.5
    w = token_weights(tok, CAT, {"cat": c})
    edit = AttentionEdit(weights=w, observer=rec)  # no replacement window: weights alone
    z = _z(1).expand(2, -1, -1, -1)
    _guided_call(sd, edit, z, [CAT, CAT])
    cat = [10, 11, 12]
    others = [j for j in range(tiny_sd.MAX_LENGTH) if j not in cat]
    first = rec.of(True)[0]
    assert first.layer.startswith("down_blocks.0") and first.step.replace_cross is False
    A = first.probs
    torch.testing.assert_close(A[1][..., cat], c * A[0][..., cat], rtol=1e-6, atol=0)
    torch.testing.assert_close(A[1][..., others], A[0][..., others], rtol=0, atol=0)
    mass = A[0][..., cat].sum(-1)
    torch.testing.assert_close(A[1].sum(-1), 1 + (c - 1) * mass)  # not renormalised
    assert float(mass.min()) > 0
    for r in rec.of(True):  # the null rows are never re-weighted
        torch.testing.assert_close(r.probs[3], r.probs[2], rtol=0, atol=0)
        torch.testing.assert_close(r.probs[3].sum(-1), torch.ones_like(r.probs[3].sum(-1)))


def test_offsets_survive_guidance_in_either_order(sd):
    """Relative offsets pair rows correctly whether the null branch comes first or last."""
    e = sd.encode_prompt([CAT, DOG])
    null = sd.null_cond().expand(2, -1, -1)
    rec = Recorder()
    net = ControlledDenoiser(sd.denoiser, AttentionEdit(cross_t=-math.inf, observer=rec))
    from nidiff.models.contract import concat_cond

    x = _z()
    with controlled_attention(sd.unet):
        net(
            torch.cat([x, x]),
            torch.tensor(300.0),
            concat_cond(plain_cond(null), pair_cond(e[:1], e[1:])),
        )
    for r in rec.of(True):
        torch.testing.assert_close(r.probs[3], r.probs[2], rtol=0, atol=1e-6)  # target := source
        assert float((r.probs[1] - r.probs[0]).abs().max()) > 1e-4


def test_bad_offsets_and_token_maps_are_refused(sd):
    e = sd.encode_prompt([CAT, DOG])
    cond = pair_cond(e[:1], e[1:])
    cond["cross_attention_kwargs"]["p2p_source_offset"] = torch.tensor([0, -5])
    net = ControlledDenoiser(sd.denoiser, AttentionEdit(cross_t=-math.inf))
    with controlled_attention(sd.unet), pytest.raises(ValueError, match="outside the batch"):
        net(_z(), torch.tensor(300.0), cond)
    with pytest.raises(ValueError, match="controlled_attention"):  # processors not installed
        net(_z(), torch.tensor(300.0), pair_cond(e[:1], e[1:]))
    with pytest.raises(ValueError, match=r"\(L, L\)"):
        TokenMap(torch.eye(3), torch.ones(4))
    with pytest.raises(ValueError, match="B, L, D"):
        pair_cond(e[:1], e)
