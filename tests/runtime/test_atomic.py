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


def test_disk_full_during_a_write_is_one_line_naming_the_file(tmp_path: Path) -> None:
    import errno

    from optidel.runtime.errors import OptidelError, RunFileError

    p = tmp_path / "ckpt.pt"
    atomic_write_text(p, "old")
    with pytest.raises(RunFileError) as err, atomic_open(p, "wb") as f:
        f.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")  # what a full disk raises, without a file name
    msg = str(err.value)
    assert msg.startswith(f"no space left on device writing {p} (") and "free on" in msg and "\n" not in msg
    assert isinstance(err.value, OptidelError) and isinstance(err.value, OSError)
    assert err.value.errno == errno.ENOSPC
    assert p.read_text() == "old" and [q.name for q in tmp_path.iterdir()] == ["ckpt.pt"]


def test_unwritable_folder_is_one_line(tmp_path: Path) -> None:
    from optidel.runtime.errors import RunFileError

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RunFileError, match=f"{blocker}"):
        atomic_write_text(blocker / "sub" / "x.txt", "x")  # a parent that is a file
