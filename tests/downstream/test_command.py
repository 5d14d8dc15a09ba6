"""``optidel finetune`` / ``optidel evaluate`` through the real CLI app."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from optidel.cli import app

runner = CliRunner()
FAST = [
    "--img-size",
    "32",
    "--patch-size",
    "8",
    "--epochs",
    "1",
    "--set",
    "min_steps=0",
    "--set",
    "head_dim=16",
]


def test_help_lists_options():
    r = runner.invoke(app, ["finetune", "--help"])
    assert r.exit_code == 0
    for opt in ("--encoder", "--dataset", "--out", "--mode", "--label-fraction", "--config", "--set"):
        assert opt in r.output
    r = runner.invoke(app, ["evaluate", "--help"])
    assert r.exit_code == 0 and "--dataset" in r.output


def test_finetune_command(tiny_seg: Path, tmp_path: Path):
    cfg_file = tmp_path / "ft.yaml"
    cfg_file.write_text("batch_size: 8\nseed: 5\naugment:\n  rotate_deg: 0\n")
    out = tmp_path / "run"
    r = runner.invoke(
        app,
        [
            "finetune",
            "--encoder",
            "none",
            "--dataset",
            str(tiny_seg),
            "--out",
            str(out),
            "--config",
            str(cfg_file),
            "--seed",
            "7",
            *FAST,
        ],
    )
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    # --set beats the named options, which beat the file, which beats the defaults
    assert (
        m["config"]["seed"] == 7
        and m["config"]["batch_size"] == 8
        and m["config"]["augment"]["rotate_deg"] == 0
    )
    assert m["config"]["head_dim"] == 16 and m["config"]["img_size"] == 32
    assert (out / "DONE").is_file()

    # a run's config.yaml reruns it: --dataset and --encoder come from it, --out from the command line
    again = tmp_path / "again"
    r = runner.invoke(app, ["finetune", "--config", str(out / "config.yaml"), "--out", str(again)])
    assert r.exit_code == 0, r.output
    m2 = json.loads((again / "metrics.json").read_text())
    assert m2["test"] == m["test"] and m2["config"]["dataset"] == str(tiny_seg)
    # without a config, each of them is still required, one line naming it (never a silent random init)
    for drop in ("--encoder", "--dataset", "--out"):
        args = {"--encoder": "none", "--dataset": str(tiny_seg), "--out": str(tmp_path / "x")}
        del args[drop]
        r = runner.invoke(app, ["finetune", *[v for kv in args.items() for v in kv], *FAST])
        errors = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
        assert r.exit_code == 2 and errors == [
            f"error: {drop} is missing (give it, or a --config that sets {drop[2:]})"
        ]
    assert not (tmp_path / "x").exists()


def test_finetune_command_errors(tiny_seg: Path, tmp_path: Path):
    r = runner.invoke(
        app,
        [
            "finetune",
            "--encoder",
            "none",
            "--dataset",
            str(tiny_seg),
            "--out",
            str(tmp_path),
            "--mode",
            "linear",
        ],
    )
    assert r.exit_code == 2 and "mode" in r.output
    r = runner.invoke(
        app,
        [
            "finetune",
            "--encoder",
            "none",
            "--dataset",
            str(tiny_seg),
            "--out",
            str(tmp_path),
            "--set",
            "no_such_key=1",
        ],
    )
    assert r.exit_code == 2 and "no_such_key" in r.output


def test_evaluate_command(tiny_seg: Path, tmp_path: Path):
    out = tmp_path / "eval"
    r = runner.invoke(
        app, ["evaluate", "--encoder", "none", "--dataset", str(tiny_seg), "--out", str(out), *FAST]
    )
    assert r.exit_code == 0, r.output
    assert (out / "results.csv").is_file() and (out / "synthetic-tiny" / "DONE").is_file()
