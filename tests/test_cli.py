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


# -- every command: generated help defaults, the precedence line, one-line errors --------------------------------


def _help(*command: str) -> str:
    r = runner.invoke(app, [*command, "--help"], terminal_width=400)
    assert r.exit_code == 0, r.output
    return " ".join(r.output.replace("│", " ").split())


def _help_cases() -> list[tuple[str, type, str]]:
    from optidel.demo.command import DemoConfig
    from optidel.downstream.config import FinetuneConfig
    from optidel.select.config import SelectConfig
    from optidel.select.vinfo_command import VinfoConfig
    from optidel.ssl.config import PretrainConfig
    from optidel.theory.config import TheoryConfig

    return [
        ("select", SelectConfig, "ratio"),
        ("select", SelectConfig, "shard_size"),  # a nested key (runtime.shard_size) behind a flat option
        ("pretrain", PretrainConfig, "steps"),
        ("pretrain", PretrainConfig, "lr"),
        ("finetune", FinetuneConfig, "epochs"),
        ("evaluate", FinetuneConfig, "img_size"),
        ("theory", TheoryConfig, "jobs"),
        ("vinfo", VinfoConfig, "n_random"),
        ("demo", DemoConfig, "seed"),
    ]


COMMANDS = ("select", "pretrain", "finetune", "evaluate", "theory", "vinfo", "benchmark", "demo")


def test_help_defaults_are_read_from_the_config_dataclasses() -> None:
    import re

    from optidel.config import field_default, format_value

    for command, cls, key in _help_cases():
        text = _help(command)
        option = "--" + key.replace("_", "-")
        row = re.search(re.escape(option) + r" <\w+> ([^\[]*)\[default: ([^\]]*)\]", text)
        assert row is not None, (command, option)
        assert row.group(2) == format_value(field_default(cls, key)), (command, key, row.group(0))


def test_every_command_help_states_the_precedence_and_takes_config_and_set() -> None:
    from optidel.config import PRECEDENCE

    for command in COMMANDS:
        text = _help(command)
        assert PRECEDENCE in text and "--config" in text and "--set" in text, command


def test_benchmark_help_lists_the_shipped_configs() -> None:
    from optidel.bench.shipped import shipped_configs

    text = _help("benchmark")
    assert all(name in text for name in shipped_configs())


def test_every_registered_command_has_one_line_errors() -> None:
    import typer.main

    from optidel.cli import data_app

    for group in (app, data_app):
        for info in group.registered_commands:
            assert getattr(info.callback, "__wrapped__", None) is not None, info.name
    assert {c.name for c in app.registered_commands} >= set(COMMANDS)
    assert typer.main.get_command(app)  # the app still builds with the wrapped signatures


def test_config_error_is_one_line_with_exit_code_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("stpes: 5\n")
    r = runner.invoke(
        app, ["pretrain", "--out", str(tmp_path / "r"), "--config", str(bad)], terminal_width=400
    )
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and str(bad) in lines[0] and "stpes" in lines[0]
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["select", "--pool", "x", "--out", str(tmp_path), "--set", "cluster.k=abc"])
    assert r.exit_code == 2 and "cluster.k: expected an integer" in r.output and "Traceback" not in r.output


def test_optidel_and_os_errors_inside_a_command_print_one_line(tmp_path: Path, monkeypatch) -> None:
    import errno

    import optidel.data.commands as data_commands
    from optidel.runtime.errors import OptidelError

    class Broken(OptidelError):
        exit_code = 1

    def raise_optidel(*args: object, **kwargs: object) -> None:
        raise Broken(f"{tmp_path / 'x.npy'} is truncated")

    monkeypatch.setattr(data_commands, "take_inventory", raise_optidel)
    r = runner.invoke(app, ["data", "info", str(tmp_path)], terminal_width=400)
    assert r.exit_code == 1 and r.output.strip() == f"error: {tmp_path / 'x.npy'} is truncated"

    def raise_os(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "locked"))

    monkeypatch.setattr(data_commands, "take_inventory", raise_os)
    r = runner.invoke(app, ["data", "verify", str(tmp_path)], terminal_width=400)
    assert r.exit_code == 1 and r.output.strip() == f"error: permission denied: {tmp_path / 'locked'}"
