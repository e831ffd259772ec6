"""Every code block of README.md runs as written (issue 19).

Each fenced block names its kind: ``python`` blocks run (the blocks of one ``##`` section share
one namespace, in order, so a block may continue the one before it), twice in the same folder,
so a snippet that cannot be run again (an output it refuses to overwrite) fails; ``sh`` blocks
run each command: ``nidiff ...`` in-process through the CLI, ``make TARGET`` as a dry run of the
Makefile (``make test`` is what CI itself runs); ``text`` blocks are synopses, not commands. A
block without a kind fails, so no block goes untested by accident.

The liberties taken: the README's own placeholders (:data:`PLACEHOLDERS`) — pipeline and model
directories become tiny offline pipelines of the same families, photos a random image — and
``--size 32`` added to the commands that load the tiny SDXL, SD3 or FLUX pipeline (their default
sides, 256 px for the tiny FLUX, make a command minutes long on a CPU; the sizes are checked by
``tests/cli/test_family_cli.py``, the commands here).
"""

from __future__ import annotations

import re
import runpy
import shlex
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("diffusers")

import tiny_families
import tiny_sd
from cli_calls import ok

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\S*)\s*$")


def blocks() -> list[tuple[str, str, int, str]]:
    """``(section, kind, line, code)`` of every fenced block, in order."""
    out, section, kind, start, lines = [], "", None, 0, []
    for i, line in enumerate(README.read_text().splitlines(), 1):
        fence = FENCE.match(line)
        if kind is None and fence:
            kind, start, lines = fence.group(1), i, []
        elif kind is not None and line.startswith("```"):
            out.append((section, kind, start, "\n".join(lines) + "\n"))
            kind = None
        elif kind is not None:
            lines.append(line)
        elif line.startswith("## "):
            section = line[3:].strip()
    return out


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, str]:
    """What the README's placeholders stand for here."""
    from diffusers import DDPMScheduler, UNet2DModel

    root = tmp_path_factory.mktemp("readme")
    sd = tiny_sd.save_tiny_pipeline(root / "sd")
    dirs = {f: tiny_families.save_tiny(f, root / f) for f in ("sdxl", "sd3", "flux")}
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                       block_out_channels=(8, 16), norm_num_groups=4,
                       down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))  # fmt: skip
    unet.save_pretrained(root / "ddpm" / "unet")
    DDPMScheduler(num_train_timesteps=100).save_pretrained(root / "ddpm" / "scheduler")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / "photo.png")
    return {
        "SD_DIR": str(sd), "SDXL_DIR": str(dirs["sdxl"]), "SD3_DIR": str(dirs["sd3"]),
        "FLUX_DIR": str(dirs["flux"]), "photo.png": str(root / "photo.png"),
        "cat.png": str(root / "photo.png"), "/path/to/stable-diffusion-v1-5": str(sd),
        "/path/to/ddpm/unet": str(root / "ddpm" / "unet"),
        "/path/to/ddpm/scheduler": str(root / "ddpm" / "scheduler"),
    }  # fmt: skip


#: The README's placeholders (the keys of the ``places`` fixture).
PLACEHOLDERS = (
    "SD_DIR", "SDXL_DIR", "SD3_DIR", "FLUX_DIR", "photo.png", "cat.png",
    "/path/to/stable-diffusion-v1-5", "/path/to/ddpm/unet", "/path/to/ddpm/scheduler",
)  # fmt: skip


def substitute(code: str, places: dict[str, str]) -> str:
    for name in sorted(PLACEHOLDERS, key=len, reverse=True):
        code = re.sub(rf"(?<![\w/.-]){re.escape(name)}(?![\w/-])", places[name], code)
    return code


#: Placeholders of pipelines run at ``--size 32`` here (module docstring).
SMALL = ("SDXL_DIR", "SD3_DIR", "FLUX_DIR")


def commands(code: str) -> list[list[str]]:
    """The commands of a shell block (backslash continuations joined, comments dropped)."""
    return [shlex.split(c, comments=True) for c in code.replace("\\\n", " ").splitlines()
            if shlex.split(c, comments=True)]  # fmt: skip


def test_every_block_says_what_it_is():
    found = blocks()
    assert len(found) >= 8
    kinds = {kind for _, kind, _, _ in found}
    untagged = [line for _, kind, line, _ in found if kind not in ("python", "sh", "text")]
    assert not untagged, f"README.md blocks at lines {untagged} need python, sh or text"
    assert {"python", "sh"} <= kinds


def test_placeholders_are_what_the_readme_uses():
    text = README.read_text()
    assert all(name in text for name in PLACEHOLDERS)


def test_python_blocks_run_twice(tmp_path, monkeypatch, places):
    monkeypatch.chdir(tmp_path)
    sections: dict[str, list[tuple[int, str]]] = {}
    for section, kind, line, code in blocks():
        if kind == "python":
            sections.setdefault(section, []).append((line, substitute(code, places)))
    assert len(sections) >= 3
    for section, codes in sections.items():
        for attempt in (1, 2):
            namespace: dict = {"__name__": "__readme__"}
            for line, code in codes:
                script = tmp_path / f"readme-{line}.py"
                script.write_text(code)
                try:
                    namespace = runpy.run_path(str(script), init_globals=namespace)
                except Exception as err:
                    raise AssertionError(
                        f"README.md block at line {line} ({section}), run {attempt}: {err!r}"
                    ) from err


def test_shell_blocks_run(tmp_path, monkeypatch, places):
    ran = 0
    for _, kind, line, code in blocks():
        if kind != "sh":
            continue
        work = tmp_path / f"block-{line}"
        work.mkdir()
        monkeypatch.chdir(work)
        small = {places[name] for name in SMALL}
        for argv in commands(substitute(code, places)):
            if small & set(argv):
                argv = [*argv, "--size", "32"]
            if argv[0] == "make":
                done = subprocess.run(["make", "-n", *argv[1:]], cwd=ROOT, capture_output=True,
                                      text=True)  # fmt: skip
                assert done.returncode == 0, (line, argv, done.stderr)
            else:
                assert argv[0] == "nidiff", f"README.md line {line}: not a nidiff command {argv}"
                started = time.perf_counter()
                ok(*argv[1:])
                seconds = time.perf_counter() - started
                print(f"README.md line {line}: {shlex.join(argv[:2])} ({seconds:.1f} s)")
            ran += 1
    assert ran >= 10
