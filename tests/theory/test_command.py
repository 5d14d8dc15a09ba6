"""``optidel theory`` and ``optidel vinfo`` command functions, through a typer test runner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import typer
from typer.testing import CliRunner

from optidel.theory import command

app = typer.Typer()
app.command("theory")(command.theory)
app.command("vinfo")(command.vinfo)
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


def _select_output(root: Path, with_patch_id: bool = True) -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 6)) * 4
    emb = (centres[rng.integers(0, 3, 400)] + rng.standard_normal((400, 6))).astype(np.float32)
    root.mkdir(parents=True)
    np.save(root / "embeddings.npy", emb)
    order = rng.permutation(400)  # manifest rows in another order than the embedding rows
    selected = np.zeros(400, bool)
    selected[:40] = True
    cols = {"selected": pa.array(selected)}
    if with_patch_id:
        cols["patch_id"] = pa.array(order.astype(np.int64))
    pq.write_table(pa.table(cols), root / "manifest.parquet")
    return emb[order][selected] if with_patch_id else emb[selected]


def test_load_set_embeddings_follows_patch_id(tmp_path: Path) -> None:
    expected = _select_output(tmp_path / "sel")
    feats, selected = command.load_set_embeddings(tmp_path / "sel")
    np.testing.assert_array_equal(feats[selected], expected)


def test_vinfo_command_writes_json(tmp_path: Path) -> None:
    _select_output(tmp_path / "sel")
    res = runner.invoke(app, ["vinfo", str(tmp_path / "sel"), "--k", "3", "--n-random", "3"])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "sel" / "vinfo.json").read_text())
    assert rep["estimator"]["n_set"] == 40 and rep["estimator"]["n_pool"] == 400
    assert rep["set"]["k"] == 3 and rep["random"]["n_draws"] == 3
    assert "I_V(set)" in rep["verdict"] and "V-information" in res.output


def test_vinfo_command_names_missing_files(tmp_path: Path) -> None:
    res = runner.invoke(app, ["vinfo", str(tmp_path)])
    assert res.exit_code == 2 and "manifest.parquet" in res.output


def test_load_set_embeddings_without_patch_id_uses_row_order(tmp_path: Path) -> None:
    expected = _select_output(tmp_path / "sel", with_patch_id=False)
    feats, selected = command.load_set_embeddings(tmp_path / "sel")
    np.testing.assert_array_equal(feats[selected], expected)
