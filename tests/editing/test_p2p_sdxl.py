"""Prompt-to-Prompt with edit-friendly inversion on SDXL (the tiny offline pipeline of
``tests/support/tiny_families.py``: two CLIP encoders, pooled embeddings, size/crop time ids),
through the same attention processors as on SD: the identity edit, the controlled maps, the
rows' pooled embeddings and time ids, the token positions of the two tokenizers, and
``nidiff edit --method p2p`` end to end."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import tiny_families
from cli_calls import ok, record
from PIL import Image

from nidiff.editing import P2PResult, p2p_edit_friendly, p2p_generate, p2p_token_map
from nidiff.editing.p2p import SELF_MAX_TOKENS
from nidiff.inversion import edit_friendly_invert, edit_friendly_regenerate
from nidiff.models.attention import pair_cond, plain_cond, replace_token_map
from nidiff.models.sdxl import StableDiffusionXL

CAT, DOG, TIGER = "a photo of a cat", "a photo of a dog", "a photo of a tiger"
STEPS, SKIP = 6, 1


@pytest.fixture(scope="module")
def sdxl():
    p = tiny_families.build_sdxl()
    return StableDiffusionXL(p.unet, p.vae, p.text_encoder, p.text_encoder_2, p.tokenizer,
                             p.tokenizer_2, p.scheduler)  # fmt: skip


@pytest.fixture(scope="module")
def z0():
    return torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def inv(sdxl, z0):
    return edit_friendly_invert(
        sdxl.denoiser, z0, sdxl.process, sdxl.grid(STEPS), cond=sdxl.encode_prompt([CAT]),
        guidance=3.5, null_cond=sdxl.null_cond(), generator=torch.Generator().manual_seed(1),
    )  # fmt: skip


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_same_prompt_reproduces_the_ef_reconstruction_in_both_rows(sdxl, inv, z0):
    """Target = source at the source's guidance, full injection: both rows are SDXL's EF
    reconstruction of z0, inverting here (through the explicit attention) or given the plain
    EF inversion."""
    ef = edit_friendly_regenerate(sdxl.denoiser, inv, sdxl.process, guidance=3.5,
                                  null_cond=sdxl.null_cond()).x0  # fmt: skip
    assert _rel(ef, z0) <= 1e-5
    kw = {"skip": SKIP, "guidance": 3.5, "cross_replace": 1.0, "self_replace": 1.0}
    here = p2p_edit_friendly(
        sdxl, z0, CAT, CAT, steps=STEPS, generator=torch.Generator().manual_seed(1), **kw
    )
    given = p2p_edit_friendly(sdxl, inv, CAT, CAT, **kw)
    for out in (here, given):
        assert isinstance(out, P2PResult) and out.x0.shape == out.source.shape == z0.shape
        assert _rel(out.source, ef) <= 1e-5 and _rel(out.x0, ef) <= 1e-5
        torch.testing.assert_close(out.x0, out.source, rtol=0, atol=0)  # one prompt, one row
    assert _rel(here.source, z0) <= 1e-5 and _rel(here.x0, z0) <= 1e-5
    assert here.nfe == STEPS + (STEPS - SKIP) and given.nfe == STEPS - SKIP
    assert isinstance(here.inversion.cond, dict) and "text_embeds" in here.inversion.cond
    assert here.info["self_max_tokens"] == SELF_MAX_TOKENS["sdxl"] == 32**2


def test_target_cross_attention_is_the_sources_during_the_replace_window(sdxl, inv):
    """cross 0.6 / self 0.2 of the 5 steps run: replacement in the first 3 calls, injection in
    the first; meanwhile every attn2 layer's target maps are the source's through the token map
    (and the self-attention maps the source's), and afterwards the target's own."""
    records = []
    out = p2p_edit_friendly(
        sdxl, inv, CAT, TIGER, skip=SKIP, cross_replace=0.6, self_replace=0.2,
        observer=records.append,
    )  # fmt: skip
    cross = [r for r in records if r.is_cross]
    assert cross and all(r.layer.endswith("attn2.processor") for r in cross)
    per_call = len(cross) // (STEPS - SKIP)
    assert [r.step.replace_cross for r in cross[::per_call]] == [True] * 3 + [False] * 2
    assert [r.step.inject_self for r in cross[::per_call]] == [True] + [False] * 4
    tmap = replace_token_map(sdxl.tokenizer, CAT, TIGER)
    for r in cross:
        A = r.probs  # [source, target, null(source), null(target)]
        assert A.shape[0] == 4 and A.shape[-1] == tiny_families.CLIP_LENGTH
        if r.step.replace_cross:
            torch.testing.assert_close(A[1], tmap.apply(A[0], A[0]), rtol=0, atol=1e-6)
        else:
            assert float((A[1] - tmap.apply(A[0], A[0])).abs().max()) > 1e-4
        torch.testing.assert_close(A[2], A[3], rtol=0, atol=1e-6)  # null rows: uncontrolled
    injected = [r for r in records if not r.is_cross and r.step.inject_self]
    assert injected
    for r in injected:
        torch.testing.assert_close(r.probs[1], r.probs[0], rtol=0, atol=0)
    assert torch.isfinite(out.x0).all() and _rel(out.x0, out.source) > 1e-3


def test_each_row_carries_its_prompts_pooled_embedding_and_the_time_ids(sdxl, inv):
    """The UNet sees [source; target; null; null] with each row's own pooled text embedding
    and the base model's time ids (H, W, 0, 0, H, W) on every row."""
    seen = []

    def spy(module, args, kwargs):
        seen.append({k: v.clone() for k, v in kwargs["added_cond_kwargs"].items()})

    handle = sdxl.unet.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        p2p_edit_friendly(sdxl, inv, CAT, DOG, skip=STEPS - 1)  # one batched call
    finally:
        handle.remove()
    (added,) = seen
    cat, dog = (sdxl.encode_prompt([p])["text_embeds"] for p in (CAT, DOG))
    null = sdxl.null_cond()["text_embeds"]
    torch.testing.assert_close(added["text_embeds"], torch.cat([cat, dog, null, null]))
    assert _rel(cat, dog) > 1e-3  # the rows differ
    ids = torch.tensor([32.0, 32.0, 0.0, 0.0, 32.0, 32.0])
    torch.testing.assert_close(added["time_ids"], ids.expand(4, 6))


def test_pair_cond_pairs_every_entry_of_a_dict_condition(sdxl):
    src, tgt = sdxl.encode_prompt([CAT, CAT]), sdxl.encode_prompt([DOG, DOG])
    src["time_ids"] = tgt["time_ids"] = torch.ones(2, 6)
    pair = pair_cond(src, tgt)
    assert set(pair) == {"encoder_hidden_states", "text_embeds", "time_ids",
                         "cross_attention_kwargs"}  # fmt: skip
    torch.testing.assert_close(pair["text_embeds"], torch.cat([src["text_embeds"],
                                                               tgt["text_embeds"]]))  # fmt: skip
    assert pair["cross_attention_kwargs"]["p2p_source_offset"].tolist() == [0, 0, -2, -2]
    assert set(plain_cond(src)) == set(pair)
    with pytest.raises(ValueError, match="same entries"):
        pair_cond(src, {k: v for k, v in tgt.items() if k != "time_ids"})
    with pytest.raises(ValueError, match="text_embeds is not a batch of 2"):
        pair_cond(src, {**tgt, "text_embeds": tgt["text_embeds"][:1]})


def test_the_two_tokenizers_must_place_words_alike(sdxl):
    """SDXL's tokenizers share CLIP's BPE: the words sit at the same positions and the map is
    the first tokenizer's; a second tokenizer that disagrees is refused, not mis-aligned."""
    assert p2p_token_map(sdxl, CAT, DOG, "replace").matrix.equal(
        replace_token_map(sdxl.tokenizer, CAT, DOG).matrix
    )
    short = copy.copy(sdxl.tokenizer_2)
    short.model_max_length = 64
    with pytest.raises(ValueError, match="context lengths 77 and 64"):
        p2p_token_map(SimpleNamespace(tokenizer=sdxl.tokenizer, tokenizer_2=short), CAT, DOG,
                      "replace")  # fmt: skip

    class OneTokenPerWord:  # every word one token: other positions than letter-level CLIP's
        model_max_length = 77

        def __call__(self, text, add_special_tokens=True):
            ids = [hash(w) % 1000 + 2 for w in text.split()]
            return SimpleNamespace(input_ids=[0, *ids, 1] if add_special_tokens else ids)

    other = SimpleNamespace(tokenizer=sdxl.tokenizer, tokenizer_2=OneTokenPerWord())
    with pytest.raises(ValueError, match="different token positions"):
        p2p_token_map(other, CAT, DOG, "replace")


def test_plain_p2p_generates_a_pair_on_sdxl(sdxl):
    kw = {"steps": 3, "size": 32}
    pair = p2p_generate(sdxl, CAT, DOG, generator=torch.Generator().manual_seed(5), **kw)
    same = p2p_generate(sdxl, CAT, CAT, generator=torch.Generator().manual_seed(5), **kw)
    torch.testing.assert_close(pair.source, same.source, rtol=0, atol=1e-6)
    torch.testing.assert_close(same.x0, same.source, rtol=0, atol=1e-6)
    assert pair.x0.shape == (1, 4, 16, 16) and _rel(pair.x0, pair.source) > 1e-3


def test_word_swap_through_the_cli(tmp_path):
    """``nidiff edit --model SDXL_DIR --method p2p``: a PNG of the size asked and OUT.json naming
    the family, the prompts and P2P's settings."""
    model = tiny_families.save_tiny("sdxl", tmp_path)
    photo, out = tmp_path / "photo.png", tmp_path / "dog.png"
    Image.new("RGB", (64, 64), (120, 80, 40)).save(photo)
    ok("edit", photo, "--model", model, "--method", "p2p", "-s", CAT, "-t", DOG, "--steps", "4",
       "--size", "64", "--device", "cpu", "--seed", "0", "--out", out)  # fmt: skip
    with Image.open(out) as img:
        assert img.size == (64, 64) and img.mode == "RGB"
    rec = record(out)
    assert rec["model"]["family"] == "sdxl" and rec["model"]["size"] == 64
    assert (rec["source_prompt"], rec["target_prompt"]) == (CAT, DOG)
    info = rec["info"]
    assert info["method"] == "p2p_edit_friendly" and info["mode"] == "replace"
    assert info["self_max_tokens"] == 32**2 and rec["nfe"] == 4 + (4 - info["skip"])
