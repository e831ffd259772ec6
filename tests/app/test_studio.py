"""The studio's parts in-process, without a server or browser: the inversion cache and its
bounds, the fields taken from ``nidiff edit``, the adapter to the method registry, the change
map's conversions, and the actions on the bundled model and on a tiny Stable Diffusion
pipeline (prompt boxes, latent-resolution maps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from studio_server import EXAMPLES, SKIP, STEPS, fields

from nidiff.app import fields as app_fields
from nidiff.app.images import editor_value, grid_shape, lam_from_layer, layer_from_lam, save_map
from nidiff.app.inputs import Inputs, read_map
from nidiff.app.limits import LIMITS
from nidiff.app.manipulate import Manipulation, manipulate
from nidiff.app.methods import SEED_FIXED, available, edit_options
from nidiff.app.session import CachedInversion, InversionCache, SessionStore
from nidiff.app.studio import Studio, message_of
from nidiff.methods import (
    EF_PAPER,
    METHODS,
    OPTION_NAMES,
    PIXEL_DEFAULTS,
    PNP_PAPER,
    method_defaults,
)

SNEAKER = Inputs(example="sneaker-0.png", source="sneaker", target="sandal")


@pytest.fixture(scope="module")
def model():
    from nidiff.cli.model import load_cli_model

    return load_cli_model("default", device="cpu")


@pytest.fixture
def studio(model, tmp_path):
    return Studio(model, tmp_path)


# ---- the cache and its bounds -----------------------------------------------------------------


def test_inversion_cache_is_lru_and_bounded():
    cache, made = InversionCache(2), []

    def make(k):
        return lambda: made.append(k) or CachedInversion(k, 0.0, 1)

    for k in ("a", "b", "a", "c", "a", "b"):  # "b" is dropped by "c", "a" stays recent
        cache.get(k, make(k))
    assert made == ["a", "b", "c", "b"] and cache.made == 4 and len(cache) == 2
    with pytest.raises(ValueError):
        InversionCache(0)


def test_session_store_bounds_sessions_and_forgets_closed_pages():
    store = SessionStore(max_sessions=3, cache_entries=2)
    first = store.get("s0")
    assert store.get("s0") is first
    for i in range(1, 5):
        store.get(f"s{i}")
    assert len(store) == 3 and store.get("s0") is not first  # dropped, then a fresh one
    store.drop("s4")
    assert len(store) == 2
    assert store.get("s1").cache.capacity == 2


def test_the_byte_budget_bounds_every_session_together():
    """Inversions of 1 KiB each under a 3 KiB budget: a fourth, in any session, drops the least
    recently used one anywhere; closing a page or dropping a session frees its bytes."""
    from nidiff.app.session import tensor_bytes

    def entry(k):
        return lambda: CachedInversion({"zs": [torch.zeros(256)], "name": k}, 0.0, 1)

    shared = torch.zeros(256)
    assert tensor_bytes({"a": shared, "b": [shared, shared[:10]]}) == 1024  # one storage
    store = SessionStore(max_sessions=4, cache_entries=8, cache_bytes=3 * 1024)
    a, b = store.get("a").cache, store.get("b").cache
    a.get("a1", entry("a1"))
    b.get("b1", entry("b1"))
    a.get("a2", entry("a2"))
    a.get("a1", entry("a1"))  # a1 is now the most recent
    b.get("b2", entry("b2"))  # over budget: b1, the least recently used anywhere, goes
    assert "b1" not in b and {"a1", "a2"} <= set(a._entries) and "b2" in b
    assert store.budget.held == 3 * 1024
    store.drop("a")
    assert store.budget.held == 1024
    big = SessionStore(max_sessions=1, cache_entries=2, cache_bytes=100)
    big.get("x").cache.get("k", entry("k"))  # larger than the budget: kept alone
    assert len(big.get("x").cache) == 1
    big.get("y")  # a new session drops "x" (max_sessions 1) and its bytes
    assert big.budget.held == 0


# ---- fields from the CLI, the method adapter --------------------------------------------------


def test_fields_are_the_cli_options():
    from nidiff.cli.edit import edit

    options = {p.name: p for p in edit.params}
    for f in app_fields.fields():
        option = options[app_fields.FROM_CLI[f.name][0]]
        assert f.info and f.info in " ".join(str(option.help).split())
        if f.kind in (int, float) and option.type.min is not None:
            assert f.lo == option.type.min
    d = app_fields.defaults()
    sdedit = method_defaults("sdedit", latent=False)["strength"]  # the registry's, as the CLI's
    assert (d["steps"], d["guidance"], d["sdedit_strength"]) == (50, 3.0, sdedit)
    sd = app_fields.defaults(lambda m: method_defaults(m, latent=True, family="sd"), 64, True)
    assert (sd["steps"], sd["source_guidance"], sd["ef_guidance"], sd["ef_skip"]) == (
        EF_PAPER["steps"], EF_PAPER["source_guidance"], EF_PAPER["guidance"], 36)  # fmt: skip
    assert (sd["p2p_skip"], sd["p2p_guidance"], sd["p2p_self_replace"]) == (12, 9.0, 0.2)
    assert (sd["self_replace"], sd["pnp_guidance"]) == (PNP_PAPER["self_replace"], 10.0)
    assert (sd["xa_guidance"], sd["zero_shot_ddim_xa_guidance"]) == (0.03, 0.1)


def test_per_method_fields_cover_the_registry_defaults():
    """Every per-method pixel default of the editing benchmark has its field or is the shared
    field's (the value most methods share); methods without one read the shared field."""
    from nidiff.app.per_method import OPTION_OF

    d = app_fields.defaults()
    for method, own in PIXEL_DEFAULTS.items():
        for key in own:
            option = OPTION_OF[key]
            assert app_fields.option_field(method, option) in d, (method, option)
    assert ("ef", "strength") not in app_fields.PER_METHOD.values()  # EF reads no strength
    assert app_fields.option_field("ngdm", "strength") == "strength"  # 0.7, as most share
    assert app_fields.option_field("zero-shot", "skip") == "skip"  # 0 on SD, as most share
    for name in app_fields.FROM_CLI:
        assert app_fields.used_by(name, available(True) + available(False)), name
    assert not app_fields.used_by("p2p_skip", available(False))  # hidden on pixel models


#: The options the page starts per method, compared with nidiff edit's resolution.
PER_OPTION = {"skip", "strength", "factor", "self_replace", "xa_guidance"}


def page_is_cli(studio: Studio, steps: bool = True) -> None:
    """Each method's options as the page starts them are those ``nidiff edit`` resolves with
    no option given (one home: the registry's per-method defaults)."""
    from nidiff.cli.edit import edit, resolve_options

    with edit.make_context("edit", ["x.png"]) as ctx:
        given = {k: ctx.params[k] for k in OPTION_NAMES if k in ctx.params}
        for name in studio.methods:
            cli = resolve_options(studio.m, name, given)
            page = edit_options(name, app_fields.validate(studio.defaults))
            options = {"guidance"} | ({"steps"} if steps else set())
            options |= METHODS[name].options & PER_OPTION
            if not steps and "skip" in options:  # the same fraction of each one's steps
                options.remove("skip")
                frac = page["skip"] / page["steps"], cli["skip"] / cli["steps"]
                assert abs(frac[0] - frac[1]) <= 0.5 / min(page["steps"], cli["steps"]), name
            assert {k: page[k] for k in options} == {k: cli[k] for k in options}, name


def test_studio_defaults_are_the_clis(studio):
    page_is_cli(studio)


def test_skip_fields_follow_the_steps():
    """A skip keeps its fraction of the steps and stays valid: the page's defaults (chosen
    for 50 steps) pass validation at any steps the page allows, once they followed."""
    d = app_fields.defaults()
    skips = {name: d[name] for name in app_fields.SKIP_FIELDS}
    assert {"skip", "ef_skip"} <= set(skips) and d["ef_skip"] == 20
    assert app_fields.follow_steps({"ef_skip": 20}, 50, 10) == {"ef_skip": 4}
    assert app_fields.follow_steps({"ef_skip": 20}, 50, 100) == {"ef_skip": 40}
    assert app_fields.follow_steps({"ef_skip": 9}, 10, 2) == {"ef_skip": 1}  # below steps
    for steps in (1, 2, 7, 10, 199, LIMITS.max_steps):
        moved = app_fields.follow_steps(skips, d["steps"], steps)
        app_fields.validate(d | {"steps": steps} | moved)


@pytest.mark.parametrize(
    ("change", "message"),
    [({"steps": 500}, "steps 500"), ({"guidance": float("nan")}, "finite"),
     ({"eta": "1"}, "number"), ({"preserve": 1}, "true or false"), ({"steps": 2.5}, "whole"),
     ({"sdedit_strength": 0.0}, "(0, 1]"), ({"skip": STEPS}, "less than steps"),
     ({"ef_skip": STEPS}, "EF skip"),
     ({"p2p_mode": "other"}, "one of"), ({"map_mode": "add"}, "one of")],
)  # fmt: skip
def test_validate_names_the_field(change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("]", r"\]")):
        app_fields.validate(fields(**change))


def test_methods_come_from_the_one_registry():
    from nidiff.cli.methods import METHODS as CLI_METHODS

    assert CLI_METHODS is METHODS
    assert available(False) == [n for n, m in METHODS.items() if not m.text_only]
    assert available(True) == [n for n, m in METHODS.items() if not m.pixel_only]
    assert "strokes" in available(False) and "strokes" not in available(True)
    assert set(METHODS) >= SEED_FIXED
    opts = edit_options("sdedit", app_fields.validate(fields(sdedit_strength=0.7)))
    assert opts["strength"] == 0.7 and opts["steps"] == STEPS


# ---- the change map ---------------------------------------------------------------------------


def test_map_layer_round_trip_and_file_convention(studio):
    lam = torch.rand(1, 1, 28, 28)
    layer = layer_from_lam(lam, 280)
    assert layer.shape == (280, 280, 4)
    back = lam_from_layer(layer, (28, 28))
    assert (back - lam).abs().max() <= 0.5 / 255 + 1e-6
    assert lam_from_layer(np.zeros((280, 280, 4), np.uint8), (28, 28)) is None  # not painted
    with pytest.raises(ValueError, match="100×100"):
        lam_from_layer(np.zeros((100, 100, 4), np.uint8), (28, 28))
    path = save_map(lam, studio.root / "map.png")  # as `nidiff edit --save-map` writes it
    read = read_map(studio.m, path, studio.root, LIMITS)  # as `nidiff edit --map` reads it
    assert (read - lam).abs().max() <= 0.5 / 255 + 1e-6
    Image.new("L", (56, 56), 255).save(studio.root / "big.png")  # any square: resized
    assert read_map(studio.m, studio.root / "big.png", studio.root, LIMITS).min() == 1.0
    Image.new("L", (28, 40)).save(studio.root / "tall.png")
    with pytest.raises(ValueError, match="28×40"):
        read_map(studio.m, studio.root / "tall.png", studio.root, LIMITS)
    with pytest.raises(ValueError, match="uploaded"):  # only files in the studio's folder
        read_map(studio.m, EXAMPLES / "sneaker-0.png", studio.root, LIMITS)


def test_cli_save_map_reads_back(studio):
    from cli_calls import ok

    out, lam_file = studio.root / "e.png", studio.root / "lam.png"
    ok("edit", EXAMPLES / "sneaker-0.png", "-s", "sneaker", "-t", "sandal", "--steps", "2",
       "--out", out, "--save-map", lam_file)  # fmt: skip
    lam = read_map(studio.m, lam_file, studio.root, LIMITS)
    assert lam.min() >= 0 and lam.max() <= 1 and lam.max() > 0.5


# ---- actions ----------------------------------------------------------------------------------


def test_invert_once_edit_many(studio):
    out = studio.edit("s", SNEAKER, ["ef", "ngdm-ef"], fields())
    assert out.inversion["reused"] is False and out.inversion["error"] < 1e-5
    assert out.results[0].calls == 2 * STEPS + STEPS - SKIP  # invert, check, regenerate
    assert out.results[1].record["inversion"]["reused"] is True and out.inversions_made == 1
    for change in ({"ef_skip": 5}, {"guidance": 5.0}, {"ef_skip": 1, "guidance": 2.0}):
        again = studio.edit("s", SNEAKER, ["ef"], fields(**change))
        assert again.inversions_made == 1 and again.calls == STEPS - change.get("ef_skip", SKIP)
    other_target = Inputs(example="sneaker-0.png", source="sneaker", target="ankle boot")
    assert studio.edit("s", other_target, ["ef"], fields()).inversions_made == 1
    for change in ({"seed": 1}, {"steps": 8}, {"source_guidance": 2.0}, {"eta": 0.5}):
        assert studio.edit("s", SNEAKER, ["ef"], fields(**change)).inversion["reused"] is False
    assert studio.store.get("s").cache.made == 5 and len(studio.store.get("s").cache) == 4
    assert studio.edit("other", SNEAKER, ["ef"], fields()).inversion["reused"] is False


def test_sampler_field(studio):
    """The page's sampler is ``nidiff edit --sampler``: a DPM-Solver++ SDE inversion is its
    own cache entry and reconstructs exactly; a rule the model cannot run is one sentence."""
    f = {x.name: x for x in app_fields.fields()}["sampler"]
    assert f.choices[0] == app_fields.OWN and f.check(app_fields.OWN) is None
    assert studio.defaults["sampler"] == app_fields.OWN
    own = studio.edit("sampler", SNEAKER, ["ef"], fields())
    sde = studio.edit("sampler", SNEAKER, ["ef"], fields(sampler="dpm++2m-sde"))
    assert sde.inversion["reused"] is False and sde.inversions_made == 2
    assert sde.inversion["error"] < 1e-4
    assert sde.results[0].record["resolved"]["sampler"] == "dpm++2m-sde"
    assert not torch.equal(own.results[0].image, sde.results[0].image)
    with pytest.raises(ValueError, match="langevin") as err:
        studio.edit("sampler", SNEAKER, ["ef"], fields(sampler="langevin"))
    assert "\n" not in message_of(err.value, studio.root)


def test_edits_are_the_cli_methods(studio, model):
    from nidiff.cli.methods import run_method

    x0 = model.load_image(EXAMPLES / "sneaker-0.png", True)
    src, tgt = model.conditions("sneaker", "sandal")
    out = studio.edit("s", SNEAKER, ["ngdm", "ef", "sdedit", "strokes"], fields(seed=3))
    for r in out.results:
        res, _ = run_method(model, x0, r.record["method"], src, tgt, seed=3,
                            **edit_options(r.record["method"],
                                           app_fields.validate(fields(seed=3))))  # fmt: skip
        assert torch.equal(r.image, res.x0[0].clamp(-1, 1)), r.caption


def test_painted_map_drives_ngdm(studio):
    lam = torch.zeros(1, 1, 28, 28)
    lam[..., 8:20, :] = 1.0
    view = studio.prepare(SNEAKER).view
    painted = Inputs(**{**SNEAKER.__dict__, "editor": editor_value(view, lam)})
    out = studio.edit("s", painted, ["ngdm"], fields(strength=1.0))  # the grid's top
    (r,) = out.results
    assert r.record["map"] == "painted" and r.calls == STEPS  # no weighting map computed
    x0 = studio.prepare(SNEAKER).x0[0]
    kept = (r.image - x0).abs()[..., :6, :].max()
    assert kept < 1e-6  # λ = 0: the source itself
    assert (r.image - x0).abs()[..., 8:20, :].mean() > 0.1


def test_seed_gallery_and_manipulations(studio):
    out = studio.seeds("s", SNEAKER, "sdedit", 3, fields())
    images = [r.image for r in out.results]
    assert [r.record["seed"] for r in out.results] == [0, 1, 2]
    assert not torch.equal(images[0], images[1])
    with pytest.raises(ValueError, match="does not depend on the seed"):
        studio.seeds("s", SNEAKER, "ef", 2, fields())
    studio.edit("s", SNEAKER, ["ef"], fields())
    shifted = manipulate(studio, "s", SNEAKER, fields(), Manipulation(dx=3))
    assert shifted.inversion["reused"] is True and shifted.calls == STEPS
    same = manipulate(studio, "s", SNEAKER, fields(), Manipulation())
    assert (same.results[0].image - studio.prepare(SNEAKER).x0[0]).abs().max() < 1e-5
    colour = manipulate(studio, "s", SNEAKER, fields(), Manipulation(color="#ffffff", strength=0.2))
    assert colour.results[0].record["map"] == "computed"
    with pytest.raises(ValueError, match="cannot be combined"):
        manipulate(studio, "s", SNEAKER, fields(), Manipulation(dx=1, color="#ffffff"))
    with pytest.raises(ValueError, match="smaller than"):
        manipulate(studio, "s", SNEAKER, fields(), Manipulation(dy=28))


def test_outputs_follow_the_cli_formats(studio, tmp_path):
    import json

    from nidiff.inversion import load_inversion

    out = studio.edit("s", SNEAKER, ["ngdm", "ef"], fields())
    names = {p.name: p for p in out.files}
    assert {"sneaker-0-ngdm-1.png", "sneaker-0-map.png", "sneaker-0.inv.safetensors"} <= set(names)
    rec = json.loads(names["sneaker-0-ngdm-1.png.json"].read_text())
    for key in ("command", "params", "nidiff", "torch", "seed", "method", "info", "nfe",
                "resolved", "model", "source_class", "target_class", "outputs"):  # fmt: skip
        assert key in rec, key
    assert (rec["source_class"], rec["target_class"], rec["map"]) == (7, 5, "computed")
    inv = load_inversion(names["sneaker-0.inv.safetensors"], process=studio.m.process)
    assert inv.steps == STEPS
    assert all(p.is_relative_to(studio.root) for p in out.files)


def test_messages_are_one_sentence(studio, tmp_path):
    for inp, words in [
        (Inputs(source="sneaker", target="sandal"), "no image"),
        (Inputs(image=str(EXAMPLES / "sneaker-0.png"), source="a", target="b"), "uploaded"),
        (Inputs(example="sneaker-0.png", source="sneaker", target="nothing"), "unknown"),
    ]:
        with pytest.raises(Exception) as info:
            studio.edit("s", inp, ["ngdm"], fields())
        assert words in message_of(info.value, studio.root).lower()
    assert message_of(RuntimeError("boom\nTraceback")).startswith("Internal error (RuntimeError)")


def test_text_model_studio(tmp_path_factory):
    """A Stable Diffusion pipeline (tiny, offline): prompt boxes, maps at latent resolution,
    the EF paper's defaults, P2P offered."""
    import tiny_sd

    from nidiff.cli.model import load_cli_model

    work = tmp_path_factory.mktemp("sd")
    tiny_sd.save_tiny_pipeline(work)
    m = load_cli_model(str(work / "pipeline"), device="cpu", size=32)
    st = Studio(m, work / "root")
    assert st.classes is None and "p2p" in st.methods and st.defaults["steps"] == 100
    page_is_cli(st, steps=False)  # one grid for the page: EF's 100 steps, not each paper's
    assert grid_shape(m) == (16, 16)
    inp = Inputs(example="sneaker-0.png", source="a photo of a shoe", target="a photo of a boot")
    out = st.edit("s", inp, ["ngdm", "ef"], fields(steps=4, ef_skip=1))
    assert out.lam.shape[-2:] == (16, 16) and out.inversion["error"] < 1e-3
    assert out.results[1].record["inversion"]["reused"] is False
    assert tuple(out.results[0].image.shape) == (3, 32, 32)
    again = st.edit("s", inp, ["ef"], fields(steps=4, ef_skip=2))
    assert again.inversions_made == 1 and again.calls == 2


def test_the_actions_do_not_import_gradio():
    import subprocess
    import sys

    code = "import sys, nidiff.app.manipulate, nidiff.app.studio; print('gradio' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "False", r.stdout + r.stderr
