"""Property-based fuzzing of the command line's contract (issue 18): for generated argument
combinations, image files, model directories and inversion files, every run ends with exit 0
and a valid output, or exit 2 with one ``Error:`` line and nothing written — never a traceback.

Hypothesis runs derandomised (the same cases every run) and bounded (``MAX_EXAMPLES`` per
property), so the suite takes a few minutes in CI; each property prints how many cases it tried.
"""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from cli_calls import run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import load_file, save_file

from nidiff.bundled import ASSETS, model_dir
from nidiff.methods import METHODS

MAX_EXAMPLES = 60
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
SNEAKER = ASSETS / "examples" / "sneaker-0.png"
TRIED: dict[str, dict[int, int]] = {}


def check_contract(result, outputs: list[Path], name: str) -> None:
    """Exit 0 with every output a readable file, or exit 2 with one error line and no output."""
    counts = TRIED.setdefault(name, {0: 0, 2: 0})
    counts[result.exit_code] = counts.get(result.exit_code, 0) + 1
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "Traceback" not in text, text[-3000:]
    assert result.exit_code in (0, 2), (result.exit_code, text[-3000:], result.exception)
    if result.exit_code == 0:
        for out in outputs:
            assert out.is_file() and out.stat().st_size > 0, out
            if out.suffix == ".png":
                with Image.open(out) as img:
                    img.verify()
            assert json.loads(out.with_name(out.name + ".json").read_text())["command"]
    else:
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
        assert len(errors) == 1, result.stderr
        for out in outputs:
            assert not out.exists() and not out.with_name(out.name + ".json").exists(), out


def teardown_module() -> None:
    for name, counts in sorted(TRIED.items()):
        n = sum(counts.values())
        print(f"fuzz {name}: {n} cases ({counts[0]} exit 0, {counts[2]} exit 2), "
              "0 contract violations")  # fmt: skip


# ------------------------------------------------------------------ CLI argument combinations
NUMBERS = st.one_of(
    st.integers(-3, 12),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from(["0", "1e308", "-0", "abc", "", "9" * 30, "nan"]),
)
OPTIONS = ["--steps", "--guidance", "--source-guidance", "--eta", "--skip", "--strength",
           "--factor", "--map-n", "--map-strength", "--threshold", "--seed"]  # fmt: skip
PIXEL_METHODS = [n for n, m in METHODS.items() if not m.text_only and n != "flowedit"]


@FUZZ
@given(
    method=st.sampled_from(PIXEL_METHODS),
    options=st.dictionaries(st.sampled_from(OPTIONS), NUMBERS, max_size=3),
    classes=st.tuples(
        st.sampled_from(["sneaker", "sandal", "bag", "7", "giraffe", ""]),
        st.sampled_from(["sandal", "coat", "3", "ten", "-1"]),
    ),
)
def test_edit_arguments(tmp_path_factory, method, options, classes):
    out = tmp_path_factory.mktemp("edit") / "out.png"
    args = ["edit", SNEAKER, "--method", method, "-s", classes[0], "-t", classes[1], "--out", out]
    if "--steps" not in options:
        args += ["--steps", "2"]
    for flag, value in options.items():
        v = str(value)
        if flag == "--steps" and v.lstrip("-").isdigit() and int(v) > 3:
            v = "3"  # keep the runs short; large step counts are valid and slow
        args += [flag, v]
    check_contract(run(*args), [out], "edit arguments")


# ------------------------------------------------------------------ image files
def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width × height`` pixels, with a tiny (wrong) body."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


@st.composite
def image_files(draw):
    kind = draw(st.sampled_from(["mode", "truncated", "claims", "garbage", "size"]))
    if kind == "claims":
        w = draw(st.sampled_from([1, 28, 20_000, 100_000, 2**31 - 1]))
        h = draw(st.sampled_from([1, 28, 20_000, 65_535]))
        return "png", _png_claiming(w, h)
    if kind == "garbage":
        return "png", draw(st.binary(max_size=200))
    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "LA", "P", "1", "I;16", "I", "F", "CMYK"]))
    side = 28 if kind != "size" else draw(st.sampled_from([1, 7, 29, 56, 300]))
    rng = np.random.default_rng(draw(st.integers(0, 100)))
    base = Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8), "L")
    img = base.convert(mode) if mode not in ("I;16", "I", "F") else base.convert("I").convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "F", "I") else "PNG"
    import io

    buf = io.BytesIO()
    img.save(buf, format=fmt)
    data = buf.getvalue()
    if kind == "truncated":
        data = data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    return fmt.lower(), data


@FUZZ
@given(image=image_files(), resize=st.booleans(), method=st.sampled_from(["sdedit", "ef"]))
def test_image_files(tmp_path_factory, image, resize, method):
    d = tmp_path_factory.mktemp("img")
    ext, data = image
    src = d / f"in.{ext}"
    src.write_bytes(data)
    out = d / "out.png"
    args = ["edit", src, "-s", "sneaker", "-t", "sandal", "--method", method, "--steps", "2"]
    check_contract(run(*args, *(["--resize"] if resize else []), "--out", out), [out], "images")
    assert src.read_bytes() == data  # an input is never touched


# ------------------------------------------------------------------ model directories
CONFIG_VALUES = st.one_of(
    st.integers(-10, 10), st.integers(10**6, 10**12), st.floats(allow_nan=True, width=32),
    st.sampled_from([None, "x", [], [0], [32, -32], {"a": 1}, True]),
)  # fmt: skip


@st.composite
def model_dirs(draw, root: Path):
    d = root / "model"
    shutil.copytree(model_dir("default"), d)
    cfg = json.loads((d / "config.json").read_text())
    kind = draw(st.sampled_from(["model field", "process field", "weights"]))
    if kind == "model field":
        cfg["model"][draw(st.sampled_from(sorted(cfg["model"])))] = draw(CONFIG_VALUES)
    elif kind == "process field":
        part = draw(st.sampled_from(["schedule", "noise"]))
        key = draw(st.sampled_from(sorted(cfg["process"][part])))
        cfg["process"][part][key] = draw(CONFIG_VALUES)
    else:
        w = d / "model.safetensors"
        how = draw(st.sampled_from(["truncate", "shuffle", "drop", "dtype"]))
        if how == "truncate":
            data = w.read_bytes()
            w.write_bytes(data[: draw(st.integers(0, len(data) - 1))])
        else:
            t = load_file(str(w))
            keys = sorted(t)
            i, j = draw(st.integers(0, len(keys) - 1)), draw(st.integers(0, len(keys) - 1))
            if how == "shuffle":
                t[keys[i]], t[keys[j]] = t[keys[j]], t[keys[i]]
            elif how == "drop":
                del t[keys[i]]
            else:
                t[keys[i]] = t[keys[i]].to(dtype=__import__("torch").int32)
            save_file(t, str(w), metadata={"step": str(cfg.get("step"))})
    (d / "config.json").write_text(json.dumps(cfg))
    return d


@FUZZ
@given(data=st.data())
def test_model_directories(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("model")
    d = data.draw(model_dirs(root))
    out = root / "out.png"
    check_contract(
        run("sample", "--model", d, "--num", "2", "--steps", "1", "--out", out), [out], "models"
    )


# ------------------------------------------------------------------ inversion files
INVERSION: dict[str, Path] = {}


def _inversion(tmp: Path) -> Path:
    if "path" not in INVERSION:
        p = tmp / "inv.safetensors"
        result = run("invert", SNEAKER, "-s", "sneaker", "--steps", "3", "--out", p)
        assert result.exit_code == 0, result.output
        INVERSION["path"] = p
    return INVERSION["path"]


@FUZZ
@given(
    how=st.sampled_from(["truncate", "shuffle", "reshape", "dtype", "drop", "grid", "none"]),
    pick=st.integers(0, 10**6),
    extra=st.sampled_from([[], ["--skip", "1"], ["--flip"], ["-t", "sandal"]]),
)
def test_inversion_files(tmp_path_factory, how, pick, extra):
    import torch

    tmp = tmp_path_factory.mktemp("inv")
    src = _inversion(tmp_path_factory.getbasetemp())
    bad = tmp / "inv.safetensors"
    shutil.copy(src, bad)
    shutil.copy(src.with_name(src.name + ".json"), bad.with_name(bad.name + ".json"))
    if how == "truncate":
        data = bad.read_bytes()
        bad.write_bytes(data[: pick % len(data)])
    elif how != "none":
        from safetensors import safe_open

        with safe_open(str(bad), "pt") as f:
            meta = f.metadata()
        t = load_file(str(bad))
        keys = sorted(t)
        k = keys[pick % len(keys)]
        if how == "shuffle":
            k2 = keys[(pick // 7) % len(keys)]
            t[k], t[k2] = t[k2], t[k]
        elif how == "reshape":
            t[k] = t[k].reshape(-1)[: max(1, t[k].numel() // 2)]
        elif how == "dtype":
            t[k] = t[k].to(torch.int16)
        elif how == "drop":
            del t[k]
        else:  # grid times outside the schedule
            t["grid.t"] = t["grid.t"] * (1 + pick % 5) * 1000
        save_file(t, str(bad), metadata=meta)
    out = tmp / "out.png"
    check_contract(run("regenerate", bad, *extra, "--out", out), [out], "inversions")
