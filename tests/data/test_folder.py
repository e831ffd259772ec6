"""ImageFolder / load_image: formats, modes, crop-resize, invalid files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nidiff.data import ImageFolder, load_image


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    grey = np.zeros((40, 20), dtype=np.uint8)
    grey[:, 10:] = 255  # left half black, right half white; tall image
    Image.fromarray(grey, mode="L").save(tmp_path / "a_grey.png")
    rgb = np.zeros((30, 30, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # pure red
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "b_red.jpg", quality=95)
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)  # fully transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "c_clear.png")
    (tmp_path / ".hidden").write_text("ignored")
    (tmp_path / "sub").mkdir()
    return tmp_path


def test_grey_and_rgb(folder: Path):
    ds = ImageFolder(folder, size=8, channels=1)
    assert [p.name for p in ds.paths] == ["a_grey.png", "b_red.jpg", "c_clear.png"]
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and y == 0
        assert x.min() >= -1 and x.max() <= 1
    x_rgb, _ = ImageFolder(folder, size=8, channels=3)[1]
    assert x_rgb.shape == (3, 8, 8)
    assert (x_rgb[0] > 0.9).all() and (x_rgb[1:] < -0.9).all()  # red survives JPEG


def test_centre_crop_keeps_aspect(folder: Path):
    x = load_image(folder / "a_grey.png", size=20)  # 40x20 → central 20x20, no stretching
    assert x.shape == (1, 20, 20)
    assert (x[:, :, :9] == -1).all() and (x[:, :, 11:] == 1).all()


def test_transparency_uses_matte(folder: Path):
    assert (load_image(folder / "c_clear.png", 4) == -1).all()
    assert (load_image(folder / "c_clear.png", 4, matte=255) == 1).all()


def test_invalid_file(folder: Path):
    (folder / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"notes\.txt"):
        ImageFolder(folder, size=8)
    with pytest.warns(UserWarning, match=r"notes\.txt"):
        ds = ImageFolder(folder, size=8, skip_invalid=True)
    assert len(ds) == 3
    with pytest.raises(ValueError, match=r"notes\.txt"):
        load_image(folder / "notes.txt", 8)


def test_empty_missing_and_single_file(tmp_path: Path, folder: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no image"):
        ImageFolder(empty, size=8)
    with pytest.raises(FileNotFoundError):
        ImageFolder(tmp_path / "missing", size=8)
    assert len(ImageFolder(folder / "b_red.jpg", size=8)) == 1
    with pytest.raises(ValueError, match="channels"):
        ImageFolder(folder, size=8, channels=2)
