"""LPIPS and CLIP-score hooks, run with tiny stand-ins (no downloads)."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from nidiff.metrics import clip_pixel_values, clip_score, lpips_distance

transformers = pytest.importorskip("transformers")

VOCAB = ["a", "b", "c", "d", "e", "o", "s", "t", "h", "i", "r", "n"]


@pytest.fixture(scope="module")
def tiny_clip():
    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.manual_seed(0)
    n_vocab = len(VOCAB) * 2 + 3  # letters, letters + "</w>", unk, bos, eos
    cfg = transformers.CLIPConfig(
        text_config={
            "vocab_size": n_vocab,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "pad_token_id": n_vocab - 1,
            "bos_token_id": n_vocab - 2,
            "eos_token_id": n_vocab - 1,
        },
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=8,
    )
    return transformers.CLIPModel(cfg).eval()


def _images(shape=(3, 1, 28, 28), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 2 - 1


def _ids(n=3, length=6, vocab=27, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab - 3, (n, length), generator=g)
    ids[:, 0], ids[:, -1] = vocab - 2, vocab - 1
    return ids


def test_clip_score_matches_the_model_logits(tiny_clip):
    x, ids = _images(), _ids()
    score = clip_score(x, ids, tiny_clip, weight=1.0, batch_size=2)
    assert score.shape == (3,)
    px = clip_pixel_values(x, 32)
    with torch.no_grad():
        out = tiny_clip(input_ids=ids, pixel_values=px)
    # CLIP logits are exp(logit_scale) · cos(image, text).
    cos = out.logits_per_image.diagonal().double() / tiny_clip.logit_scale.exp().double()
    torch.testing.assert_close(score, cos.clamp_min(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(clip_score(x, ids, tiny_clip), 100 * score)


def test_clip_pixel_values_layout():
    px = clip_pixel_values(torch.ones(2, 1, 20, 30), 16)
    assert px.shape == (2, 3, 16, 16)
    white = (1 - torch.tensor([0.48145466, 0.4578275, 0.40821073])) / torch.tensor(
        [0.26862954, 0.26130258, 0.27577711]
    )
    torch.testing.assert_close(px[:, :, 5, 5], white.expand(2, 3))


def test_clip_score_with_a_hand_made_tokenizer(tiny_clip, tmp_path):
    vocab = {"<|startoftext|>": 25, "<|endoftext|>": 26, "<unk>": 24}
    for i, ch in enumerate(VOCAB):
        vocab[ch] = i
        vocab[ch + "</w>"] = len(VOCAB) + i
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tok = transformers.CLIPTokenizer(
        vocab_file=str(tmp_path / "vocab.json"), merges_file=str(tmp_path / "merges.txt")
    )
    texts = ["a shirt", "boots", "a coat"]
    enc = tok(texts, padding=True, return_tensors="pt")
    assert int(enc["input_ids"].max()) < 27
    by_text = clip_score(_images(), texts, tiny_clip, tok)
    by_ids = clip_score(
        _images(), enc["input_ids"], tiny_clip, attention_mask=enc["attention_mask"]
    )
    torch.testing.assert_close(by_text, by_ids)
    assert ((by_text >= 0) & (by_text <= 100)).all()


def test_clip_score_errors(tiny_clip):
    with pytest.raises(ValueError, match="processor"):
        clip_score(_images(), ["x", "y", "z"], tiny_clip)
    with pytest.raises(ValueError, match="one per image"):
        clip_score(_images(), ["x"], tiny_clip)
    with pytest.raises(ValueError, match=r"\(3, L\)"):
        clip_score(_images(), _ids(n=2), tiny_clip)


def test_lpips_hook_with_a_stand_in_network():
    calls = []

    def net(a, b):  # the lpips.LPIPS call convention: (N, 3, H, W) pairs → (N, 1, 1, 1)
        calls.append(a.shape)
        return (a - b).square().mean((1, 2, 3), keepdim=True)

    x, y = _images((5, 1, 8, 8)), _images((5, 1, 8, 8), seed=3)
    d = lpips_distance(x, y, net, batch_size=2)
    assert d.shape == (5,)
    assert calls[0] == (2, 3, 8, 8)
    torch.testing.assert_close(d, (x - y).double().square().mean((1, 2, 3)), rtol=1e-6, atol=0)
    assert float(lpips_distance(x, x, net).abs().max()) == 0.0
    with pytest.raises(ValueError, match="one value per pair"):
        lpips_distance(x, y, lambda a, b: torch.zeros(1))
    with pytest.raises(ValueError, match="callable"):
        lpips_distance(x, y, "alex")
