"""Atomic writes leave the old file intact when writing fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from optidel.runtime.atomic import atomic_open, atomic_write_json, atomic_write_text
from optidel.runtime.run_dir import is_done, mark_done


def test_failed_write_keeps_old_content_and_leaves_no_temp(tmp_path: Path) -> None:
    p = tmp_path / "x.txt"
    atomic_write_text(p, "old")
    with pytest.raises(RuntimeError), atomic_open(p, "wb") as f:
        f.write(b"half")
        raise RuntimeError("killed")
    assert p.read_text() == "old"
    assert [q.name for q in tmp_path.iterdir()] == ["x.txt"]


def test_json_and_done_marker(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "m.json", {"b": 1, "a": [1, 2]})
    assert '"a"' in (tmp_path / "m.json").read_text()
    assert not is_done(tmp_path)
    mark_done(tmp_path, {"steps": 3})
    assert is_done(tmp_path)
