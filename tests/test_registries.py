"""The one-home registries: methods and samplers drive the CLI's choices; options that do not
apply to a method are errors naming the methods they apply to; importing a package loads only
what it needs (checked in fresh processes)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cli_calls import bad

from nidiff.bundled import ASSETS
from nidiff.methods import METHODS, OPTION_NAMES, check_options
from nidiff.samplers import SAMPLERS


def test_the_method_registry_drives_the_cli():
    from nidiff.cli.edit import edit

    (method,) = [p for p in edit.params if p.name == "method"]
    assert list(method.type.choices) == list(METHODS)
    for info in METHODS.values():
        assert info.options <= set(OPTION_NAMES), info.name
        assert info.label and info.run is not None


@pytest.mark.parametrize(
    ("method", "flag", "value", "users"),
    [
        (
            "sdedit",
            "--skip",
            "3",
            "ef, ddim, cycle, flowedit, p2p, zero-shot, zero-shot-ddim, pnp, pnp-ddim",
        ),
        ("ef", "--strength", "0.4", "ngdm, ngdm-ef, sdedit, diffedit, strokes"),
        ("sdedit", "--clusters", "2", "strokes"),
        ("ngdm", "--factor", "2", "ilvr"),
        (
            "ddim",
            "--eta",
            "0.5",
            "ngdm, ef, ngdm-ef, sdedit, ilvr, cycle, p2p, zero-shot, pnp, strokes",
        ),
    ],
)
def test_an_option_that_does_not_apply_is_an_error(tmp_path, method, flag, value, users):
    out = tmp_path / "o.png"
    bad("edit", ASSETS / "examples" / "sneaker-0.png", "-s", "sneaker", "-t", "sandal",
        "--method", method, "--steps", "4", flag, value, "--out", out,
        match=f"{flag} does not apply to --method {method}; it applies to {users}",
        out=out)  # fmt: skip


def test_check_options_accepts_what_applies():
    for name, info in METHODS.items():
        check_options(name, set(info.options) | {"steps", "guidance"})
    with pytest.raises(ValueError, match="--map-n does not apply to --method ef"):
        check_options("ef", {"map_n"})


def test_sampler_registry_is_complete():
    assert {"ddpm", "ddim", "dpm++2m", "dpm++2m-sde", "euler-ancestral", "heun", "flow-euler",
            "flow-heun", "sde-euler", "edge-posterior", "langevin"} == set(SAMPLERS)  # fmt: skip
    assert [n for n, s in SAMPLERS.items() if s.multistep] == ["dpm++2m", "dpm++2m-sde"]


CORE = ["nidiff.samplers", "nidiff.schedule", "nidiff.noise", "nidiff.process", "nidiff.spec"]
NEVER = [
    "diffusers",
    "transformers",
    "nidiff.models.stable_diffusion",
    "nidiff.models.attention",
    "nidiff.models.diffusers_unet",
    "nidiff.cli",
    "nidiff.bench",
    "matplotlib",
]


@pytest.mark.parametrize("module", CORE)
def test_the_core_loads_no_adapter(module):
    """``import nidiff.samplers`` (and the rest of the core) loads no Stable Diffusion, attention
    or diffusers code, no CLI and no benchmark (a fresh interpreter each)."""
    code = f"import sys, {module}; print(sorted(m for m in {NEVER!r} if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]", f"{module} loaded {r.stdout.strip()}"


def test_editing_and_inversion_import_without_each_others_cycle():
    """``nidiff.inversion`` first, then ``nidiff.editing`` (and the reverse) in fresh processes:
    no partially initialised module (the cycle through EditResult is gone)."""
    for first, second in (("inversion", "editing"), ("editing", "inversion")):
        code = f"import nidiff.{first}, nidiff.{second}; print('ok')"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert r.stdout.strip() == "ok", r.stderr[-1500:]
    code = "import sys, nidiff.inversion; print('nidiff.editing' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"


def test_the_benchmarks_read_the_method_registry():
    from nidiff.bench._editing_methods import BENCH_METHODS, EXCLUDED
    from nidiff.bench._editing_methods import METHODS as LABELS
    from nidiff.bench.overhead import _check_covers_registry

    assert tuple(METHODS[n].label for n in BENCH_METHODS) == LABELS
    # every pixel-space method is run by the editing benchmark or excluded with a reason
    assert not set(BENCH_METHODS) & set(EXCLUDED) and all(EXCLUDED.values())
    assert set(BENCH_METHODS) | set(EXCLUDED) == {n for n, m in METHODS.items() if not m.text_only}
    with pytest.raises(ValueError, match="no row for the methods"):
        _check_covers_registry(["ngdm", "ef invert"])


def test_metrics_does_not_import_bundled():
    """The metrics read the bundled classifier through the assets path, so ``nidiff.metrics``
    and ``nidiff.bundled`` do not import each other."""
    code = (
        "import sys, nidiff.metrics; from nidiff.metrics import ClassifierFeatures; "
        "ClassifierFeatures().classifier; print('nidiff.bundled' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"
