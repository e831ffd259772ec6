"""Bad and unusual input through the CLI: every image mode, decompression bombs, output formats,
unwritable outputs, stale temporaries of killed runs, a batch with bad rows, messages that name
the option (issues 17 and 19)."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from cli_calls import bad, ok, record, run
from PIL import Image
from safetensors import safe_open

import nidiff._io
from nidiff.bundled import ASSETS

EXAMPLES = ASSETS / "examples"
SNEAKER = EXAMPLES / "sneaker-0.png"
GREY = np.asarray(Image.open(SNEAKER), dtype=np.uint8)  # 28×28, mode L
FAST = ["--method", "sdedit", "--steps", "1"]
HOUR_AGO = time.time() - 3600


def png(path: Path, width: int, height: int, depth: int, colour: int, rows: np.ndarray | None):
    """A PNG written by hand (Pillow writes neither 16-bit RGB nor lying headers)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"" if rows is None else b"".join(b"\0" + r.tobytes() for r in rows)
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )  # fmt: skip
    return path


def _palette(a: np.ndarray) -> Image.Image:
    img = Image.fromarray(a, "P")
    img.putpalette([v for i in range(256) for v in (i, i, i)])
    return img


def _cmyk(a: np.ndarray) -> Image.Image:
    k = 255 - a
    return Image.fromarray(np.stack([0 * a, 0 * a, 0 * a, k], axis=-1), "CMYK")


#: The sneaker in every mode, each written so that reading it right gives the 8-bit sneaker.
MODES = {
    "I;16 png": lambda p: Image.fromarray(GREY.astype(np.uint16) * 257).save(p / "a.png"),
    "I;16B tif": lambda p: Image.frombytes(
        "I;16B", (28, 28), (GREY.astype(">u2") * 257).tobytes()
    ).save(p / "a.tif"),
    "I tif": lambda p: Image.fromarray(GREY.astype(np.int32) * 257).save(p / "a.tif"),
    "F tif": lambda p: Image.fromarray(GREY.astype(np.float32) / 255).save(p / "a.tif"),
    "RGB 16-bit png": lambda p: png(
        p / "a.png", 28, 28, 16, 2, np.repeat(GREY[..., None], 3, -1).astype(">u2") * 257
    ),
    "P png": lambda p: _palette(GREY).save(p / "a.png"),
    "LA png": lambda p: Image.fromarray(np.stack([GREY, 255 + 0 * GREY], -1), "LA").save(
        p / "a.png"
    ),
    "CMYK tif": lambda p: _cmyk(GREY).save(p / "a.tif"),
}


def _inverted_x0(path: Path) -> np.ndarray:
    with safe_open(str(path), "np") as f:
        return f.get_tensor("x0")[0, 0]


@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_reads_into_its_own_range(tmp_path, mode):
    MODES[mode](tmp_path)
    (image,) = [p for p in tmp_path.iterdir() if p.name.startswith("a.")]
    inv = tmp_path / "inv.safetensors"
    ok("invert", image, "-s", "sneaker", "--steps", "1", "--out", inv)
    # the image the model saw (x0 of the inversion) is the 8-bit sneaker; 16-bit grey used to
    # come out binarised (every non-zero pixel white)
    np.testing.assert_allclose(_inverted_x0(inv), GREY / 127.5 - 1, atol=1e-5)


def test_a_mode_nidiff_cannot_read_is_exit_2(tmp_path):
    lab = tmp_path / "lab.tif"
    Image.new("LAB", (28, 28), (50, 0, 0)).save(lab)  # Pillow's LAB → RGB copies the bytes
    out = tmp_path / "o.png"
    bad("edit", lab, "-s", "sneaker", "-t", "sandal", *FAST, "--out", out, match="mode LAB",
        out=out)  # fmt: skip


def test_decompression_bomb_is_exit_2_before_decoding(tmp_path):
    bomb = png(tmp_path / "bomb.png", 20_000, 20_000, 8, 0, None)  # 100 bytes claiming 400 MP
    out = tmp_path / "o.png"
    err = bad("edit", bomb, "-s", "sneaker", "-t", "sandal", "--resize", *FAST, "--out", out,
              match="400,000,000 pixels", out=out).stderr  # fmt: skip
    assert "at most 67,108,864 pixels" in err and "DecompressionBomb" not in err
    folder = tmp_path / "images"
    folder.mkdir()
    bomb.rename(folder / "bomb.png")
    bad("train", tmp_path / "t", "--noise", "gff", "--data", folder, match="400,000,000 pixels")


@pytest.mark.parametrize(
    ("suffix", "fmt"), [(".jpg", "JPEG"), (".webp", "WEBP"), (".bmp", "BMP"), (".tiff", "TIFF")]
)
def test_output_format_follows_the_extension(tmp_path, suffix, fmt):
    out = tmp_path / f"o{suffix}"
    ok("edit", SNEAKER, "-s", "sneaker", "-t", "sandal", *FAST, "--out", out)
    assert Image.open(out).format == fmt and record(out)["outputs"]["image"] == str(out)
    grid = tmp_path / f"grid{suffix}"
    ok("sample", "-n", "2", "--steps", "1", "--out", grid)
    assert Image.open(grid).format == fmt


def _no_model_work(monkeypatch) -> None:
    """Loading a model fails the test: a check that comes after it comes too late."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    for module in ("edit", "sample", "regenerate", "invert"):
        monkeypatch.setattr(f"nidiff.cli.{module}.load_cli_model", refuse)


def test_unknown_extension_is_refused_before_any_work(tmp_path, monkeypatch):
    _no_model_work(monkeypatch)
    out = tmp_path / "o.gif"
    args = ("edit", SNEAKER, "-s", "sneaker", "-t", "sandal", *FAST)
    err = bad(*args, "--out", out, match="--out", out=out).stderr
    assert ".gif" in err and ".png" in err and ".jpg" in err
    bad(*args, "--out", tmp_path / "o.png", "--save-map", tmp_path / "m.map", match="--save-map")
    bad("sample", "--out", tmp_path / "g.xyz", match="--out")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("where", ["/proc/nidiff-o.png", "/proc/nidiff/sub/o.png", "FILE/o.png"])
def test_unwritable_out_is_refused_before_any_work(tmp_path, monkeypatch, where):
    _no_model_work(monkeypatch)
    (tmp_path / "FILE").write_text("a file, not a folder")
    out = Path(where.replace("FILE", str(tmp_path / "FILE")))
    err = bad("edit", SNEAKER, "-s", "sneaker", "-t", "sandal", *FAST, "--out", out,
              match=f"cannot write {out}").stderr  # fmt: skip
    assert ".tmp" not in err  # the user's path, not a temporary's
    bad("sample", "--out", out, match=f"cannot write {out}")
    if where.startswith("/proc"):
        train_dir = out.with_suffix("")
        bad(
            "train",
            train_dir,
            "--noise",
            "gff",
            "--data",
            "digits",
            match=f"cannot write {train_dir}",
        )


# ---- batch: bad rows, stale temporaries -------------------------------------------------------


def _kill_mid_write(target: Path) -> None:
    """A process killed (SIGKILL) inside ``atomic_path``: its temporary stays behind."""
    code = (
        "import importlib.util, os, signal, sys\n"
        f"spec = importlib.util.spec_from_file_location('io', {nidiff._io.__file__!r})\n"
        "io = importlib.util.module_from_spec(spec); spec.loader.exec_module(io)\n"
        "io.atomic_path(sys.argv[1]).__enter__().write_bytes(b'half an image')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(target)], check=False, timeout=60)


def test_batch_skips_bad_rows_and_reports_them(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    names = ["ankle-boot-0", "pullover-0", "shirt-0", "sneaker-0", "sneaker-1", "shirt-1"]
    for name in names:
        (images / f"{name}.png").write_bytes((EXAMPLES / f"{name}.png").read_bytes())
    whole = (images / "shirt-1.png").read_bytes()
    (images / "shirt-1.png").write_bytes(whole[: len(whole) // 2])  # truncated
    png(images / "zbomb.png", 20_000, 20_000, 8, 0, None)
    out = tmp_path / "edits"
    args = ("edit", images, "-s", "sneaker", "-t", "sandal", *FAST, "--out", out)

    stopped = bad(*args, "--on-error", "stop", match="row 4")  # rows in name order
    assert "shirt-1.png" in stopped.stderr and not out.exists()  # checked before any write

    out.mkdir()  # what killed runs left: only stale, unlocked temporaries of outputs go
    _kill_mid_write(out / "pullover-0-sdedit-sandal.png")
    (killed,) = out.iterdir()
    young = out / ".sneaker-0-sdedit-sandal.png.young123.tmp"  # another writer, just started
    locked = out / ".sneaker-1-sdedit-sandal.png.locked12.tmp"  # another writer, slow
    foreign = out / ".notes.txt.abcdefgh.tmp"  # not an output of this batch
    for p in (locked, foreign, young):
        p.write_bytes(b"")
    for p in (killed, locked, foreign):
        os.utime(p, (HOUR_AGO, HOUR_AGO))
    with open(locked, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = run(*args)
    assert result.exit_code == 1, (result.output, result.exception)
    assert not killed.exists() and locked.exists() and foreign.exists()
    # too young to remove before editing; once the batch has written that output itself, an
    # unlocked temporary of it can only be a killed writer's
    assert not young.exists()
    assert sorted(p.name for p in out.glob("*.png")) == [
        f"{n}-sdedit-sandal.png" for n in sorted(names) if n != "shirt-1"
    ]
    err = result.stderr
    assert "Traceback" not in err and "2 of 7 rows failed" in err
    assert "row 4 (" in err and "shirt-1.png" in err and "truncated" in err
    assert "row 7 (" in err and "400,000,000 pixels" in err

    (images / "shirt-1.png").write_bytes(whole)  # fixed: a re-run retries the failed rows only
    (images / "zbomb.png").unlink()
    assert "5 already there" in ok(*args).output
    assert (out / "shirt-1-sdedit-sandal.png").exists()
    bad("edit", SNEAKER, "-s", "sneaker", "-t", "sandal", "--on-error", "skip",
        match="--on-error applies to batch mode")  # fmt: skip


# ---- records --------------------------------------------------------------------------------


def test_sample_records_the_guidance_it_applied(tmp_path):
    every_class = tmp_path / "all.png"  # no --class: every class in turn, guided
    ok("sample", "-n", "2", "--steps", "1", "--out", every_class)
    assert record(every_class)["guidance"] == 3.0
    one = tmp_path / "one.png"
    ok("sample", "-n", "2", "--steps", "1", "--class", "sandal", "--guidance", "2", "--out", one)
    assert record(one)["guidance"] == 2.0


# ---- messages name the option and what it takes --------------------------------------------


@pytest.fixture(scope="module")
def inversion(tmp_path_factory) -> Path:
    inv = tmp_path_factory.mktemp("inv") / "inv.safetensors"
    ok("invert", SNEAKER, "-s", "sneaker", "--steps", "2", "--out", inv)
    return inv


@pytest.mark.parametrize(
    ("option", "value", "match"),
    [
        ("--seed", "99999999999999999999999", "0<=x<=9223372036854775807"),
        ("--seed", "-1", "0<=x<=9223372036854775807"),
        ("--guidance", "1e308", "0<=x<=100"),
        ("--guidance", "nan", "0<=x<=100"),
        ("--source-guidance", "inf", "0<=x<=100"),
        ("--eta", "nan", "0<=x<=1"),
    ],
)
def test_out_of_range_numbers_name_the_option_and_range(tmp_path, option, value, match):
    out = tmp_path / "o.png"
    err = bad("edit", SNEAKER, "-s", "sneaker", "-t", "sandal", *FAST, option, value,
              "--out", out, match=match, out=out).stderr  # fmt: skip
    assert option in err and "Overflow" not in err and "non-finite" not in err


def test_regenerate_messages_name_the_argument_and_form(tmp_path, inversion):
    out = tmp_path / "o.png"
    err = bad("regenerate", SNEAKER, "--out", out, match="INVERSION", out=out).stderr
    assert "PNG image" in err and ".safetensors" in err and "header too large" not in err
    err = bad(
        "regenerate", inversion, "--shift", "3", "--out", out, match="--shift", out=out
    ).stderr
    assert "DX,DY" in err and "two integers" in err
    bad("regenerate", inversion, "--guidance", "1e308", "--out", out, match="0<=x<=100", out=out)
    bad("regenerate", inversion, "--out", tmp_path / "o.jpeg2", match="--out")
    ok("regenerate", inversion, "--out", tmp_path / "same.bmp")
    assert Image.open(tmp_path / "same.bmp").format == "BMP"


def test_a_failed_write_names_the_users_path_not_a_temporary(tmp_path):
    import torch

    from nidiff.imageio import save_image

    with pytest.raises(OSError, match=r"cannot write /proc/nidiff-o\.png") as err:
        save_image(torch.zeros(1, 4, 4), "/proc/nidiff-o.png")
    assert ".tmp" not in str(err.value)
    with pytest.raises(ValueError, match=r"'\.gif'"):
        save_image(torch.zeros(1, 4, 4), tmp_path / "o.gif")
    assert not list(tmp_path.iterdir())
