"""The CLI's shared helpers without a model: conditions seam, output checks, batch rows."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from nidiff.cli.batch import read_rows, shard_of_env
from nidiff.cli.common import InputError, check_outputs, class_conditions, record_path


def fake_model(class_names: list[str]) -> SimpleNamespace:
    inner = SimpleNamespace(num_classes=len(class_names), class_names=class_names)
    return SimpleNamespace(m=inner, name="fake")


def test_an_unconditional_model_takes_no_class():
    with pytest.raises(InputError, match=r"fake is unconditional .* takes no class or prompt") as e:
        class_conditions(fake_model([]), "a cat", "a dog")
    assert e.value.exit_code == 2
    assert class_conditions(fake_model([]), None) == [None]


def test_class_names_of_any_model():
    m = fake_model(["Cat", "Big dog"])
    src, tgt, by_id, none = class_conditions(m, "cat", "big-dog", "1", None)
    assert (int(src), int(tgt), int(by_id), none) == (0, 1, 1, None)
    with pytest.raises(InputError, match="valid names: 'Cat', 'Big dog'"):
        class_conditions(m, "bird")


def test_check_outputs(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    check_outputs([a, None], [b], overwrite=False)
    with pytest.raises(InputError, match="is an input file"):
        check_outputs([a], [a], overwrite=True)
    with pytest.raises(InputError, match="named for two outputs"):
        check_outputs([a, a], [], overwrite=True)
    a.write_text("x")
    with pytest.raises(InputError, match="pass --overwrite"):
        check_outputs([a], [], overwrite=False)
    assert record_path(a) == tmp_path / "a.png.json"


def test_csv_rows_and_shards(tmp_path, monkeypatch):
    table = tmp_path / "rows.csv"
    table.write_text("a.png,sneaker,sandal\nsub/b.png,,coat\n")
    rows = read_rows(table, "shirt", None, Path("out"), "ngdm")
    assert [(r.image, r.source, r.target) for r in rows] == [
        (tmp_path / "a.png", "sneaker", "sandal"),
        (tmp_path / "sub" / "b.png", "shirt", "coat"),
    ]
    assert rows[1].out == Path("out") / "b-ngdm-coat.png"
    table.write_text("a.png,sneaker\n")
    with pytest.raises(InputError, match="row 1"):
        read_rows(table, None, None, Path("out"), "ngdm")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(InputError, match="RANK=2"):
        shard_of_env()
    monkeypatch.setenv("RANK", "1")
    assert shard_of_env() == (1, 2)
