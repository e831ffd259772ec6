"""Fashion-MNIST: IDX parsing, error messages, class names, size fitting."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from nidiff.data import (
    CLASS_NAMES,
    DEFAULT_DIR,
    FashionMNIST,
    class_index,
    load_fashion_mnist_tensors,
    read_idx,
)


def _idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}i", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _write_split(root: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    prefix = {"train": "train", "test": "t10k"}[split]
    (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images)))
    (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labels)))


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    images[:, 0, :] = 0  # a black border row, like the real data
    _write_split(tmp_path, "train", images, np.array([0, 1, 7, 9, 7, 3]))
    _write_split(tmp_path, "test", images[:2], np.array([5, 8]))
    return tmp_path


def test_read_idx_round_trip(tmp_path: Path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.gz").write_bytes(gzip.compress(_idx_bytes(arr)))
    (tmp_path / "a").write_bytes(_idx_bytes(arr))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), arr)


def test_load_tensors(tiny_root: Path):
    images, labels = load_fashion_mnist_tensors(tiny_root, "train")
    assert images.dtype == torch.uint8 and images.shape == (6, 28, 28)
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 1, 7, 9, 7, 3]
    _, test_labels = load_fashion_mnist_tensors(tiny_root, "test")
    assert test_labels.tolist() == [5, 8]


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"\x00\x00\x08\x03" + struct.pack(">3i", 2, 28, 28) + bytes(100), "payload"),
        (b"\x12\x34\x08\x01" + struct.pack(">i", 1) + b"\x00", "magic"),
        (b"\x00\x00\x0d\x01" + struct.pack(">i", 1) + bytes(4), "element type"),
        (b"\x00\x00\x08\x03\x00", "header"),
    ],
)
def test_corrupt_idx(tmp_path: Path, payload: bytes, match: str):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(payload))
    with pytest.raises(ValueError, match=match):
        read_idx(path)


def test_truncated_gzip(tmp_path: Path):
    arr = np.zeros((3, 28, 28), dtype=np.uint8)
    blob = gzip.compress(_idx_bytes(arr))
    path = tmp_path / "cut.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="gzip"):
        read_idx(path)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="gzip"):
        read_idx(path)


def test_label_count_mismatch(tmp_path: Path):
    _write_split(tmp_path, "train", np.zeros((3, 28, 28), np.uint8), np.array([1, 2]))
    with pytest.raises(ValueError, match="labels"):
        load_fashion_mnist_tensors(tmp_path, "train")


def test_missing_files_explain_how_to_install(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist_tensors(tmp_path / "nope", "train")
    with pytest.raises(FileNotFoundError, match="root="):
        FashionMNIST(root=tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist_tensors(tmp_path, "val")  # type: ignore[arg-type]


def test_class_names_and_aliases():
    assert len(CLASS_NAMES) == 10 and CLASS_NAMES[0] == "T-shirt/top"
    for i, name in enumerate(CLASS_NAMES):
        assert class_index(name) == i
        assert class_index(name.upper()) == i
    assert class_index("tshirt") == class_index("t-shirt") == class_index("T-shirt/top") == 0
    assert class_index("ankle-boot") == class_index("ankle boot") == 9
    assert class_index("sneaker") == class_index("Sneakers") == 7
    assert class_index("trousers") == 1 and class_index(3) == 3
    with pytest.raises(ValueError, match="Ankle boot"):
        class_index("hat")
    with pytest.raises(ValueError, match=r"0\.\.9"):
        class_index(10)


def test_dataset_pad_and_resize(tiny_root: Path):
    raw, _ = load_fashion_mnist_tensors(tiny_root, "train")
    ds = FashionMNIST(tiny_root, "train")
    x, y = ds[2]
    assert x.dtype == torch.float32 and x.shape == (1, 28, 28) and y == 7
    torch.testing.assert_close(x[0], raw[2].float() / 127.5 - 1)
    padded, _ = FashionMNIST(tiny_root, "train", size=32)[2]
    assert padded.shape == (1, 32, 32)
    torch.testing.assert_close(padded[:, 2:30, 2:30], x)
    assert (padded[:, :2] == -1).all() and (padded[:, :, -2:] == -1).all()
    small, _ = FashionMNIST(tiny_root, "train", size=16, fit="resize")[0]
    assert small.shape == (1, 16, 16)
    assert small.min() >= -1 - 1e-6 and small.max() <= 1 + 1e-6
    with pytest.raises(ValueError, match="resize"):
        FashionMNIST(tiny_root, "train", size=16)


def test_dataset_class_filter(tiny_root: Path):
    ds = FashionMNIST(tiny_root, "train", classes=["sneaker", 0])
    assert len(ds) == 3 and sorted(ds[i][1] for i in range(3)) == [0, 7, 7]


@pytest.mark.skipif(
    not (DEFAULT_DIR / "t10k-images-idx3-ubyte.gz").exists(),
    reason="dataset-fashion-mnist not installed",
)
def test_real_test_split():
    images, labels = load_fashion_mnist_tensors(DEFAULT_DIR, "test")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert torch.bincount(labels).tolist() == [1000] * 10
    x, y = FashionMNIST(DEFAULT_DIR, "test", size=32)[0]
    assert x.shape == (1, 32, 32) and y == 9  # the first test image is an ankle boot
    assert x.min() >= -1 and x.max() <= 1
