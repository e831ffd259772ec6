"""``nidiff edit``'s per-method defaults on pixel models are the registry's
(:data:`nidiff.methods.PIXEL_DEFAULTS`, chosen from the editing benchmark), and ``--help`` says
where they come from."""

from __future__ import annotations

import pytest
from cli_calls import ok, record

from nidiff.bundled import ASSETS
from nidiff.methods import METHODS, EditOptions, default_factor, method_defaults

SNEAKER = ASSETS / "examples" / "sneaker-0.png"
PIXEL = [n for n, m in METHODS.items() if not m.text_only]


@pytest.mark.parametrize("method", PIXEL)
def test_unset_options_are_the_registrys_defaults(method, tmp_path):
    out, steps = tmp_path / "e.png", 10
    ok("edit", SNEAKER, "-s", "sneaker", "-t", "sandal", "--method", method, "--steps", steps,
       "--out", out)  # fmt: skip
    r, d = record(out)["resolved"], method_defaults(method, latent=False)
    assert r["guidance"] == d.get("guidance", EditOptions.guidance)
    assert r["skip"] == round(d["skip_frac"] * steps) and r["strength"] == d["strength"]
    assert r["factor"] == default_factor(28, d.get("factor_frac", 4 / 28))


def test_given_options_win_and_help_names_the_benchmark(tmp_path):
    out = tmp_path / "e.png"
    ok("edit", SNEAKER, "-s", "sneaker", "-t", "sandal", "--method", "ngdm-ef", "--steps", 10,
       "--strength", 0.4, "--guidance", 2, "--out", out)  # fmt: skip
    r = record(out)["resolved"]
    assert (r["strength"], r["guidance"]) == (0.4, 2.0)
    text = " ".join(ok("edit", "--help").output.split())
    assert "editing benchmark" in text and "Default settings of nidiff edit" in text
