"""``optidel vinfo`` on real (tiny) selections: Y from masks or pixels by default, never the select report's file.

Two selections are built with the select pipeline (grid patches from the fast fake proposer, report off): one of a
segmentation dataset's train split (every image has a mask) and one of a plain image folder (no masks).
"""

from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from select_fakes import FakeGridProposer, make_pool
from typer.testing import CliRunner

from optidel.cli import app
from optidel.select.pipeline import run_selection, selection_config
from optidel.select.vinfo_command import load_set_embeddings

runner = CliRunner()
FAST = ["--n-random", "3"]
SENTINEL = '{"written by": "the select report"}\n'


def _select(pool: str, out: Path) -> Path:
    cfg = selection_config(pool=[pool], out=out, ratio=0.8, leakage_guard=False, **{"report.enabled": False})
    run_selection(cfg, proposer=FakeGridProposer())
    (out / "vinfo.json").write_text(SENTINEL)  # stands in for the report's estimate (report off: faster)
    return out


@pytest.fixture(scope="module")
def seg_set(tiny_seg: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _select(f"{tiny_seg}:train", tmp_path_factory.mktemp("vinfo-seg") / "sel")


@pytest.fixture(scope="module")
def plain_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vinfo-plain")
    return _select(str(make_pool(root / "pool", n=16, size=56)), root / "sel")


def _run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, ["vinfo", *args], terminal_width=200)
    return res.exit_code, res.output


def _one_line_error(code: int, output: str, *words: str) -> None:
    assert code == 2, output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1, output
    assert output.startswith("error: ") and all(w in output for w in words), output


def _n_selected(set_dir: Path) -> int:
    return int(np.asarray(pq.read_table(set_dir / "manifest.parquet").column("selected")).sum())


def test_auto_uses_lesion_labels_when_every_image_has_a_mask(seg_set: Path, tmp_path: Path) -> None:
    code, output = _run(str(seg_set), *FAST)
    assert code == 0, output
    rep = json.loads((seg_set / "vinfo-lesion.json").read_text())
    est = rep["estimator"]
    assert est["label_source"] == "lesion" and est["circular"] is False and est["labels_option"] == "auto"
    assert est["k"] == 3 and est["n_set"] == est["n_selected_total"] == _n_selected(seg_set)
    assert "Y = lesion (not circular" in output and rep["verdict"] in " ".join(output.split())
    assert (seg_set / "vinfo.json").read_text() == SENTINEL  # the select report's file is left alone
    code, output = _run(str(seg_set), *FAST, "--labels", "lesion", "--out", str(tmp_path / "l.json"))
    assert code == 0, output
    assert json.loads((tmp_path / "l.json").read_text())["set"] == rep["set"]  # auto = lesion here


def test_same_estimate_as_the_select_report(
    seg_set: Path, tiny_seg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command's lesion and embedding reports equal the report stage's (one implementation), default seed."""
    from optidel.metrics.vinfo import vinfo_report
    from optidel.select.stages import vinfo_labels

    monkeypatch.setattr(vinfo_labels, "vinfo_report", partial(vinfo_report, n_random=3))  # FAST, for speed

    d = pq.read_table(seg_set / "manifest.parquet").to_pydict()
    order = np.argsort(d["patch_id"])  # the patch store's rows
    paths = dict(zip(d["image_index"], d["image_path"], strict=True))
    store = SimpleNamespace(
        embeddings=np.load(next(seg_set.glob("cache/patches-*/embeddings.npy"))),
        image_index=np.asarray(d["image_index"])[order],
        boxes=np.stack([np.asarray(d[c])[order] for c in ("x0", "y0", "x1", "y1")], axis=1),
    )
    ctx = SimpleNamespace(
        patches=lambda: store,
        pool=[SimpleNamespace(path=paths.get(i)) for i in range(max(paths) + 1)],
        cfg=SimpleNamespace(pool=[f"{tiny_seg}:train"]),
    )
    stage = vinfo_labels.selection_vinfo(ctx, np.asarray(d["selected"])[order], seed=0, normalize=True)
    assert stage is not None and stage["estimator"]["label_source"] == "lesion"
    for labels, expected in (("auto", stage), ("embedding", stage["alternatives"][-1])):
        out = tmp_path / f"{labels}.json"
        assert _run(str(seg_set), *FAST, "--labels", labels, "--out", str(out))[0] == 0
        rep = json.loads(out.read_text())
        assert rep["estimator"]["label_source"] == expected["estimator"]["label_source"]
        assert rep["set"] == expected["set"] and rep["random"] == expected["random"]


def test_auto_uses_lowlevel_labels_without_masks(plain_set: Path) -> None:
    code, output = _run(str(plain_set), *FAST)
    assert code == 0, output
    est = json.loads((plain_set / "vinfo-lowlevel.json").read_text())["estimator"]
    assert est["label_source"] == "lowlevel" and est["circular"] is False and est["k"] == 10
    assert est["n_set"] == _n_selected(plain_set) and not (plain_set / "vinfo-lesion.json").exists()
    assert (plain_set / "vinfo.json").read_text() == SENTINEL
    _one_line_error(*_run(str(plain_set), "--labels", "lesion"), "needs a mask", "img_0")


def test_embedding_labels_are_marked_circular(seg_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "emb.json"
    code, output = _run(str(seg_set), *FAST, "--labels", "embedding", "--k", "4", "--out", str(out))
    assert code == 0, output
    est = json.loads(out.read_text())["estimator"]
    assert est["label_source"] == "embedding" and est["circular"] is True and est["k"] == 4
    assert "CIRCULAR" in output and "warning: Y is built from the embeddings" in " ".join(output.split())
    assert (seg_set / "vinfo.json").read_text() == SENTINEL


def test_reference_is_only_for_embedding_labels(seg_set: Path, tmp_path: Path) -> None:
    feats, _ = load_set_embeddings(seg_set)
    ref = tmp_path / "pool.npy"
    np.save(ref, feats[::-1].copy())
    _one_line_error(*_run(str(seg_set), "--reference", str(ref)), "embeddings only", "--labels embedding")
    out = tmp_path / "ref.json"
    code, output = _run(
        str(seg_set), *FAST, "--reference", str(ref), "--labels", "embedding", "--out", str(out)
    )
    assert code == 0, output
    est = json.loads(out.read_text())["estimator"]
    assert est["circular"] is True and est["n_pool"] == feats.shape[0] and est["reference_file"] == str(ref)


def test_bad_options_and_files_give_one_line(seg_set: Path, tmp_path: Path) -> None:
    _one_line_error(*_run(str(seg_set), "--labels", "masks"), "labels must be one of", "'masks'")
    _one_line_error(*_run(str(seg_set), "--out", str(seg_set / "vinfo.json")), "select report")
    _one_line_error(*_run(str(tmp_path)), "manifest.parquet")
    _one_line_error(
        *_run(str(seg_set), "--reference", str(tmp_path / "no.npy"), "--labels", "embedding"), "no.npy"
    )
    assert (seg_set / "vinfo.json").read_text() == SENTINEL


def test_relative_image_paths_are_read_from_the_current_folder(
    seg_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(seg_set, copy)
    table = pq.read_table(copy / "manifest.parquet")
    paths = table.column("image_path").to_pylist()
    base = Path(paths[0]).parent  # the dataset's image folder
    rel = pa.array([str(Path(p).relative_to(base)) for p in paths], table.schema.field("image_path").type)
    table = table.set_column(table.schema.get_field_index("image_path"), "image_path", rel)
    pq.write_table(table, copy / "manifest.parquet")
    monkeypatch.chdir(tmp_path)
    _one_line_error(
        *_run(str(copy), "--labels", "lowlevel"), "does not exist", rel[0].as_py(), "current folder"
    )
    monkeypatch.chdir(base)
    code, output = _run(str(copy), *FAST, "--labels", "lowlevel")
    assert code == 0, output
    assert json.loads((copy / "vinfo-lowlevel.json").read_text())["estimator"]["n_set"] == _n_selected(copy)


# ------------------------------------------------------------------- embeddings of a synthetic select output folder
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
    feats, selected = load_set_embeddings(tmp_path / "sel")
    np.testing.assert_array_equal(feats[selected], expected)


def test_load_set_embeddings_without_patch_id_uses_row_order(tmp_path: Path) -> None:
    expected = _select_output(tmp_path / "sel", with_patch_id=False)
    feats, selected = load_set_embeddings(tmp_path / "sel")
    np.testing.assert_array_equal(feats[selected], expected)


def test_embedding_labels_on_a_manifest_without_pixels(tmp_path: Path) -> None:
    _select_output(tmp_path / "sel")
    code, output = _run(str(tmp_path / "sel"), "--labels", "embedding", "--k", "3", "--n-random", "3")
    assert code == 0, output
    rep = json.loads((tmp_path / "sel" / "vinfo-embedding.json").read_text())
    assert rep["estimator"]["n_set"] == 40 and rep["estimator"]["n_pool"] == 400
    assert rep["set"]["k"] == 3 and rep["random"]["n_draws"] == 3 and "I_V(set)" in rep["verdict"]
    assert not (tmp_path / "sel" / "vinfo.json").exists()
    _one_line_error(*_run(str(tmp_path / "sel")), "image_path", "cannot read the patch pixels")
