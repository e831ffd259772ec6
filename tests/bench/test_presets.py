"""``--preset`` and ``--set KEY=VALUE``: values read by the field type, and the preset chosen."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from nidiff.bench._presets import choose_preset, override, parse_value


@dataclass(frozen=True)
class Sizes:
    images: int
    strengths: tuple[float, ...]
    pairs: tuple[tuple[int, int], ...] = ((7, 5),)
    methods: tuple[str, ...] = ("SDEdit", "NGDM")
    real: int | None = None
    ddim: bool = False
    guidance: float = 3.0


PRESETS = {"quick": Sizes(4, (0.5,)), "full": Sizes(200, (0.2, 0.5)), "cpu": Sizes(32, (0.3,))}


@pytest.mark.parametrize(
    ("text", "annotation", "value"),
    [
        ("100", int, 100),
        (" 2.5", float, 2.5),
        ("true", bool, True),
        ("No", bool, False),
        ("0.3, 0.5,0.7", tuple[float, ...], (0.3, 0.5, 0.7)),
        ("NGDM+EF,DDIM inv.", tuple[str, ...], ("NGDM+EF", "DDIM inv.")),
        ("7:5,2:4", tuple[tuple[int, int], ...], ((7, 5), (2, 4))),
        ("none", int | None, None),
        ("40", int | None, 40),
    ],
)
def test_values_are_read_by_the_field_type(text, annotation, value):
    assert parse_value(text, annotation) == value


@pytest.mark.parametrize(
    ("text", "annotation", "match"),
    [
        ("1.5", int, "not an int"),
        ("many", float, "not a float"),
        ("maybe", bool, "not a boolean"),
        ("7:5:1", tuple[tuple[int, int], ...], "2 parts"),
        ("x", dict, "cannot be set"),
    ],
)
def test_bad_values_say_what_was_expected(text, annotation, match):
    with pytest.raises(ValueError, match=match):
        parse_value(text, annotation, "key")


def test_override_replaces_only_the_named_fields():
    p = override(PRESETS["cpu"], ["images=8", "strengths=0.3,0.7", "real=none", "ddim=yes"])
    assert p == Sizes(8, (0.3, 0.7), real=None, ddim=True)
    assert PRESETS["cpu"].images == 32  # presets are frozen, never changed in place


def test_override_rejects_unknown_fields_and_missing_equals():
    with pytest.raises(ValueError, match="no such field; this preset has images, strengths"):
        override(PRESETS["cpu"], ["image=8"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        override(PRESETS["cpu"], ["images"])


def test_choose_preset_defaults_to_quick_or_full_and_labels_changes():
    assert choose_preset(PRESETS, True, None) == ("quick", PRESETS["quick"])
    assert choose_preset(PRESETS, False, None) == ("full", PRESETS["full"])
    label, p = choose_preset(PRESETS, True, "cpu", ["images = 8", "methods=DDIM inv.,EF"])
    assert label == "cpu, images=8, methods=DDIM inv.,EF"
    assert (p.images, p.methods) == (8, ("DDIM inv.", "EF"))
    with pytest.raises(ValueError, match="no preset 'gpu'; choose one of quick, full, cpu"):
        choose_preset(PRESETS, True, "gpu")


def test_module_entry_points_refuse_a_bad_set_with_exit_2(capsys):
    from nidiff.bench import inversion

    with pytest.raises(SystemExit) as exit_info:
        inversion.main(["--set", "batch=many"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: --set batch: 'many' is not an int\n"
