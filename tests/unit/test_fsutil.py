"""Laws of the atomic writers in offswitch.fsutil."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offswitch.fsutil import atomic_write_json

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(value=JSON_VALUES, sort_keys=st.booleans(), ensure_ascii=st.booleans())
def test_atomic_write_json_round_trips_into_new_folders(value, sort_keys, ensure_ascii):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a" / "b" / "figures.json"
        atomic_write_json(path, value, sort_keys=sort_keys, ensure_ascii=ensure_ascii, parents=True)
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n")
        assert json.loads(text) == value
        assert sorted(p.name for p in path.parent.iterdir()) == ["figures.json"]  # no temporary file left


def test_atomic_write_json_that_cannot_serialise_leaves_the_old_file(tmp_path):
    path = tmp_path / "figures.json"
    atomic_write_json(path, {"ok": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"bad": object()})
    assert json.loads(path.read_text(encoding="utf-8")) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["figures.json"]
    atomic_write_json(path, {"when": object()}, default=lambda _: "x")
    assert json.loads(path.read_text(encoding="utf-8")) == {"when": "x"}


def test_atomic_write_json_makes_no_folder_unless_asked(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write_json(tmp_path / "missing" / "figures.json", {"ok": 1})
    assert not (tmp_path / "missing").exists()
