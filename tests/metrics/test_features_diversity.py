"""Feature extractors, classifier read-outs (target accuracy), and edit diversity."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from nidiff.metrics import (
    ClassifierFeatures,
    InceptionFeatures,
    class_probabilities,
    diversity,
    lpips_distance,
    target_accuracy,
)


def _images(shape=(5, 1, 28, 28), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 2 - 1


def test_bundled_classifier_features_are_256_d():
    feats = ClassifierFeatures(batch_size=2)(_images())
    assert feats.shape == (5, 256)
    assert torch.isfinite(feats).all()
    torch.testing.assert_close(ClassifierFeatures()(_images()), feats)


class _Fixed(nn.Module):
    """A known classifier: class 1 for bright images, 0 for dark ones, never 2."""

    def forward(self, x):
        m = x.flatten(1).mean(1)
        return torch.stack([-m, m, torch.zeros_like(m)], 1) * 10


def test_target_accuracy_and_probabilities():
    x = torch.cat([torch.full((3, 1, 4, 4), 0.5), torch.full((2, 1, 4, 4), -0.5)])
    p = class_probabilities(_Fixed(), x, batch_size=2)
    assert p.shape == (5, 3)
    torch.testing.assert_close(p.sum(1), torch.ones(5, dtype=p.dtype))
    assert target_accuracy(_Fixed(), x, torch.tensor([1, 1, 1, 0, 0])) == 1.0
    assert target_accuracy(_Fixed(), x, 1) == pytest.approx(0.6)
    assert target_accuracy(_Fixed(), x, torch.tensor([0, 1, 2, 0, 0])) == pytest.approx(0.6)
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        target_accuracy(_Fixed(), x, 3)
    with pytest.raises(ValueError, match="integers"):
        target_accuracy(_Fixed(), x, torch.ones(5))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        class_probabilities(_Fixed(), x * 3)


class _TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(2)

    def forward(self, x):
        return self.pool(self.conv(x))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_inception_hook_loads_torchscript_exported_and_callables(tmp_path):
    torch.manual_seed(0)
    net = _TinyNet().eval()
    path = tmp_path / "net.pt"
    torch.jit.script(net).save(str(path))
    exported = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(net, (torch.zeros(2, 3, 32, 32),)), str(exported))
    seen = []

    def spy(x):
        seen.append((tuple(x.shape), float(x.min()), float(x.max())))
        return net(x)

    x = _images((3, 1, 28, 28))
    from_file = InceptionFeatures.from_file(path, size=32, batch_size=2)(x)
    from_callable = InceptionFeatures(spy, size=32, batch_size=2)(x)
    assert from_file.shape == (3, 16)
    torch.testing.assert_close(
        InceptionFeatures.from_file(exported, size=32, batch_size=2)(x[:2]), from_file[:2]
    )
    torch.testing.assert_close(from_file, from_callable)
    assert seen[0][0] == (2, 3, 32, 32)  # grey → RGB, resized, batched
    assert seen[0][1] >= 0
    assert seen[0][2] <= 255


def test_inception_hook_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="cannot download"):
        InceptionFeatures.from_file(tmp_path / "missing.pt")
    sd = tmp_path / "state_dict.pt"
    torch.save(_TinyNet().state_dict(), sd)
    with pytest.raises(ValueError, match="neither TorchScript"):
        InceptionFeatures.from_file(sd)
    with pytest.raises(ValueError, match="callable"):
        InceptionFeatures("weights.pt")


def test_diversity_is_zero_for_identical_edits_and_matches_pairs():
    e = _images((1, 1, 6, 6)).expand(4, -1, -1, -1)
    assert float(diversity(e)) == 0.0
    edits = _images((3, 2, 6, 6), seed=1)
    pairs = [(0, 1), (0, 2), (1, 2)]
    expected = sum(float((edits[i] - edits[j]).square().mean()) for i, j in pairs) / 3
    assert float(diversity(edits)) == pytest.approx(expected)
    batched = torch.stack([edits, edits.flip(0), e[:3, :1].expand(3, 2, 6, 6)])
    out = diversity(batched)
    assert out.shape == (3,)
    assert out.tolist() == pytest.approx([expected, expected, 0.0])


def test_diversity_with_a_user_distance_and_errors():
    edits = _images((4, 1, 6, 6), seed=2)

    def l1(a, b):
        return (a - b).abs().flatten(1).sum(1)

    assert float(diversity(edits, l1)) > 0
    lp = functools.partial(lpips_distance, net=lambda a, b: (a - b).abs().mean((1, 2, 3)))
    assert float(diversity(edits, lp)) == pytest.approx(float(diversity(edits, l1)) / 36)
    with pytest.raises(ValueError, match="K=2"):
        diversity(edits[:1])
    with pytest.raises(ValueError, match=r"\(K, C, H, W\)"):
        diversity(edits[0])
    with pytest.raises(ValueError, match="one value per pair"):
        diversity(edits, lambda a, b: torch.zeros(2))
