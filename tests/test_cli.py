"""The CLI as a user runs it: version, data info, data verify exit codes and tables."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from optidel import __version__
from optidel.cli import app

runner = CliRunner()


def test_version() -> None:
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output


def test_console_script_runs() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "optidel.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and "data" in r.stdout


def test_data_info_on_generated_dataset(tiny_seg: Path) -> None:
    r = runner.invoke(app, ["data", "info", str(tiny_seg)])
    assert r.exit_code == 0, r.output
    assert "24" in r.output and "train 18" in r.output and "test 6" in r.output


def test_verify_names_the_truncated_jpeg_and_exits_1(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"ok{i}.png")
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (tmp_path / "broken.jpg").write_bytes(buf.getvalue()[:300])
    r = runner.invoke(app, ["data", "verify", str(tmp_path)], terminal_width=200)
    assert r.exit_code == 1
    assert "broken.jpg" in r.output and "truncated" in r.output
    info = runner.invoke(app, ["data", "info", str(tmp_path)], terminal_width=200)
    assert info.exit_code == 0 and "unreadable files" in info.output


def test_verify_reports_dataset_problems_by_id(tmp_path: Path, tiny_seg: Path) -> None:
    import shutil

    ds = tmp_path / "ds"
    shutil.copytree(tiny_seg, ds)
    next((ds / "masks").glob("synth_0003.*")).unlink()
    r = runner.invoke(app, ["data", "verify", str(ds)], terminal_width=200)
    assert r.exit_code == 1 and "synth_0003" in r.output and "missing mask" in r.output


def test_verify_good_folder_exits_0(tiny_seg: Path) -> None:
    r = runner.invoke(app, ["data", "verify", str(tiny_seg)])
    assert r.exit_code == 0 and "all good" in r.output


def test_verify_shared_kvasir_exits_0(kvasir: Path) -> None:
    r = runner.invoke(app, ["data", "verify", str(kvasir)])
    assert r.exit_code == 0, r.output


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    r = runner.invoke(app, ["data", "info", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "does not exist" in r.output
