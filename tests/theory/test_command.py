"""The ``optidel theory`` command function, through a typer test runner (``optidel vinfo``: tests/select)."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from optidel.theory import command

app = typer.Typer()
app.command("theory")(command.theory)


@app.callback()
def _group() -> None:
    """Keeps ``theory`` a subcommand (a Typer with one command would run it directly)."""


runner = CliRunner()


def test_theory_command_writes_a_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["theory", "--experiment", "theta", "--out", str(out), "--repeats", "2"]
    args += ["--set", "alpha_ts=5,20", "--set", "n_f=3", "--seed", "3"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (out / "DONE").is_file() and (out / "theta.png").is_file()
    cfg = (out / "config.yaml").read_text()
    assert "seed: 3" in cfg and "repeats: 2" in cfg
    assert "alpha_t = 20" in res.output


def test_theory_command_rejects_bad_settings(tmp_path: Path) -> None:
    res = runner.invoke(app, ["theory", "--experiment", "nope", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "unknown experiment" in res.output
    res = runner.invoke(app, ["theory", "--out", str(tmp_path), "--set", "no_such_key=1"])
    assert res.exit_code == 2 and "no_such_key" in res.output
