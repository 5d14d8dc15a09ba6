"""The whole select pipeline on tiny generated pools with a fast fake proposer: outputs, traceability, caching,
resume after an injected failure and after a real kill, two-rank torch.distributed, the CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image
from select_fakes import FakeGridProposer, make_pool
from typer.testing import CliRunner

from optidel.data.image import ImageDecodeError, load_rgb
from optidel.data.pool import list_pool
from optidel.select.outputs.manifest import read_manifest
from optidel.select.outputs.mosaic import bar_fraction, box_cut, render_tile
from optidel.select.pipeline import run_selection, selection_config

HERE = Path(__file__).resolve().parent
N_A, N_B = 30, 10  # pool images (+1 unreadable in A)


@pytest.fixture(scope="session")
def pools(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("pools")
    return [str(make_pool(root / "alpha", N_A, broken=1)), str(make_pool(root / "beta", N_B, seed=1))]


def cfg_for(pools: list[str], out: Path, **kw: object):
    base = {"pool": pools, "out": out, "ratio": 0.1, "runtime.shard_size": 8, "report.enabled": False}
    base.update(kw)
    return selection_config(**base)


@pytest.fixture(scope="session")
def reference(pools: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "out"
    run_selection(cfg_for(pools, out, **{"report.enabled": True}), proposer=FakeGridProposer())
    return out


def manifest_dict(out: Path) -> dict:
    """The manifest as comparable lists (NaN != NaN, so NaN becomes the string "nan")."""
    d = pq.read_table(out / "manifest.parquet").to_pydict()
    return {k: ["nan" if isinstance(x, float) and x != x else x for x in v] for k, v in d.items()}


def test_outputs_and_traceability(reference: Path, pools: list[str]) -> None:
    out = reference
    for name in ("DONE", "config.yaml", "log.txt", "metrics.json", "report.html", "manifest.parquet"):
        assert (out / name).is_file(), name
    n_images = round(0.1 * (N_A + 1 + N_B))  # the unreadable file counts as a pool image
    files = sorted(p.name for p in (out / "images").iterdir())
    assert files == [f"mosaic_{i:05d}.png" for i in range(n_images)]
    assert all(Image.open(out / "images" / f).size == (256, 256) for f in files)

    table, meta = read_manifest(out / "manifest.parquet")
    d = table.to_pydict()
    assert meta["method"] == "optidel" and meta["n_output_images"] == n_images
    assert table.num_rows == 9 * (N_A + N_B)  # every patch of every readable pool image
    sel = np.asarray(d["selected"])
    assert sel.sum() == 4 * n_images
    ranks = sorted(r for r in d["rank"] if r is not None)
    assert ranks == list(range(4 * n_images))
    # scores: margin = d2 - d1, prototype = d1, no MAE run -> NaN; the selected are the smallest margins
    d1, d2, margin = (np.asarray(d[c], np.float64) for c in ("d1", "d2", "score_margin"))
    assert np.allclose(margin, d2 - d1, atol=1e-6) and np.allclose(d["score_prototype"], d1)
    assert np.isnan(np.asarray(d["score_reconstruction"], np.float64)).all()
    assert margin[sel].max() <= margin[~sel].min() + 1e-7
    # each mosaic holds 4 tiles 0..3
    per_file: dict[str, list[int]] = {}
    for o, t in zip(d["output_image"], d["tile"], strict=True):
        if o is not None:
            per_file.setdefault(o, []).append(t)
    assert sorted(per_file) == files and all(sorted(v) == [0, 1, 2, 3] for v in per_file.values())
    # every row traces to a real image and a box inside it
    pool = {im.uid: im for im in list_pool(pools)}
    for i in range(0, table.num_rows, 7):
        im = pool[d["image_uid"][i]]
        assert (
            str(im.path) == d["image_path"][i] and d["image_uid"][i] == f"{d['source'][i]}/{d['image_id'][i]}"
        )
        assert (
            0 <= d["x0"][i] < d["x1"][i] <= d["image_w"][i]
            and 0 <= d["y0"][i] < d["y1"][i] <= d["image_h"][i]
        )
    # the pixels of a tile are the square around its box in the source image, resized
    i = int(np.flatnonzero(sel)[0])
    img = load_rgb(d["image_path"][i])
    assert (img.shape[1], img.shape[0]) == (d["image_w"][i], d["image_h"][i])
    tile = render_tile(img, (d["x0"][i], d["y0"][i], d["x1"][i], d["y1"][i]), 128, "context")  # the default
    r, c = divmod(d["tile"][i], 2)
    mosaic = np.asarray(Image.open(out / "images" / d["output_image"][i]))
    assert np.array_equal(mosaic[r * 128 : (r + 1) * 128, c * 128 : (c + 1) * 128], tile)
    # the unreadable image is reported, not in the manifest; the output works as a pool
    assert not any("zz_broken" in u for u in d["image_uid"])
    assert "zz_broken_0" in (out / "report.html").read_text()
    # under each gallery: what a thumbnail shows
    assert "with the patch&#x27;s own box in yellow" in (out / "report.html").read_text()
    assert len(list_pool([out])) == n_images
    # stage times do not overlap: the lazily computed patches and k-means are not counted again in "selection"
    m = json.loads((out / "metrics.json").read_text())
    assert sum(v["seconds"] for v in m["stages"].values()) <= m["total_seconds"] + 0.05
    # the summary's black-bar share is what the selected boxes leave black under the default tile fit (context)
    bars = [
        bar_fraction(
            (d["x0"][i], d["y0"][i], d["x1"][i], d["y1"][i]), d["image_h"][i], d["image_w"][i], "context"
        )
        for i in np.flatnonzero(sel)
    ]
    assert m["summary"]["black bars"] == (
        f"{np.mean(bars):.1%} of the tiles' area ({sum(b >= 1 / 128 for b in bars)} of {sel.sum()} tiles letterboxed)"
    )
    assert m["summary"]["black bars"].startswith("0.0% ")  # context squares never leave bars
    cut = [
        box_cut((d["x0"][i], d["y0"][i], d["x1"][i], d["y1"][i]), d["image_h"][i], d["image_w"][i])
        for i in np.flatnonzero(sel)
    ]
    assert m["summary"]["boxes cut by the frame"].startswith(f"{sum(c > 0 for c in cut)} of {sel.sum()}")
    # 16 selected patches are too few for a V-information estimate: said in the report, no vinfo.json
    assert "V-information not estimated" in (out / "report.html").read_text()
    assert not (out / "vinfo.json").exists()


def test_report_has_vinfo_of_the_selection(pools: list[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_selection(cfg_for(pools, out, ratio=0.5, **{"report.enabled": True}), proposer=FakeGridProposer())
    v = json.loads((out / "vinfo.json").read_text())
    n_sel = 4 * round(0.5 * (N_A + 1 + N_B))
    assert v["estimator"]["n_set"] == n_sel and v["estimator"]["n_pool"] == 9 * (N_A + N_B)
    assert v["random"]["n_draws"] == 20
    assert np.isclose(v["set"]["vinfo_nats"], v["set"]["h_y_nats"] - v["set"]["h_y_given_x_nats"])
    lo, hi = v["set"]["vinfo_ci95_nats"]
    assert lo <= v["set"]["vinfo_nats"] <= hi
    html = (out / "report.html").read_text()
    assert "V-information" in html and v["verdict"] in html
    # `optidel vinfo` on the output gives the report's numbers (same rows, geometry and seed): its default Y is the
    # report's headline Y, `--labels embedding` the report's circular alternative; the report's file is left alone
    from optidel.cli import app

    before = (out / "vinfo.json").read_text()
    res = CliRunner().invoke(app, ["vinfo", str(out)])
    assert res.exit_code == 0, res.output
    headline = v["estimator"]["label_source"]
    assert headline != "embedding"
    assert json.loads((out / f"vinfo-{headline}.json").read_text())["set"] == v["set"]
    res = CliRunner().invoke(app, ["vinfo", str(out), "--labels", "embedding"])
    assert res.exit_code == 0, res.output
    emb = next(a for a in v["alternatives"] if a["estimator"]["label_source"] == "embedding")
    assert json.loads((out / "vinfo-embedding.json").read_text())["set"] == emb["set"]
    assert (out / "vinfo.json").read_text() == before


def test_rerun_is_cached_and_identical(reference: Path, pools: list[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    before = (out / "manifest.parquet").read_bytes()
    calls: list[int] = []
    run_selection(cfg_for(pools, out, **{"report.enabled": True}), proposer=FakeGridProposer(calls=calls))
    stages = json.loads((out / "metrics.json").read_text())["stages"]
    assert calls == []  # no image was processed again
    assert all(stages[s]["cached"] for s in ("patches", "kmeans", "images", "manifest", "report"))
    assert (out / "manifest.parquet").read_bytes() == before and (out / "DONE").is_file()


def test_changed_config_recomputes_downstream_only(reference: Path, pools: list[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    run_selection(cfg_for(pools, out, ratio=0.2), proposer=FakeGridProposer())
    st = json.loads((out / "metrics.json").read_text())["stages"]
    assert st["patches"]["cached"] and st["kmeans"]["cached"] and not st["images"]["cached"]
    assert len(list((out / "images").iterdir())) == 8
    run_selection(cfg_for(pools, out, ratio=0.2, **{"cluster.k": 3}), proposer=FakeGridProposer())
    st = json.loads((out / "metrics.json").read_text())["stages"]
    assert st["patches"]["cached"] and not st["kmeans"]["cached"]
    assert set(pq.read_table(out / "manifest.parquet").column("cluster").to_pylist()) == {0, 1, 2}


def test_sources_are_cached_apart_and_reused_by_another_pool(
    reference: Path, pools: list[str], tmp_path: Path
) -> None:
    cache = tmp_path / "shared-cache"
    calls: list[int] = []
    run_selection(
        cfg_for(pools[1:], tmp_path / "beta", **{"runtime.cache_dir": cache}),
        proposer=FakeGridProposer(calls=calls),
    )
    assert len(calls) == N_B
    calls.clear()  # the two-source pool computes only alpha; beta's patches come from the cache
    run_selection(
        cfg_for(pools, tmp_path / "both", **{"runtime.cache_dir": cache}),
        proposer=FakeGridProposer(calls=calls),
    )
    assert len(calls) == N_A  # the broken image is never proposed
    assert manifest_dict(tmp_path / "both") == manifest_dict(reference)  # same result as computing it at once
    calls.clear()
    run_selection(
        cfg_for(pools[:1], tmp_path / "alpha", **{"runtime.cache_dir": cache}),
        proposer=FakeGridProposer(calls=calls),
    )
    assert calls == []
    alpha = pq.read_table(tmp_path / "alpha" / "manifest.parquet").to_pydict()
    both = pq.read_table(tmp_path / "both" / "manifest.parquet").to_pydict()
    n = len(alpha["patch_id"])  # alpha's rows open the two-source table, with the same boxes
    assert (
        n == 9 * N_A
        and [both[c][:n] == alpha[c] for c in ("image_uid", "x0", "y0", "x1", "y1")] == [True] * 5
    )


def test_a_changed_pool_proposes_only_its_new_images(tmp_path: Path) -> None:
    """Images dropped, added or changed in a folder: the rest come from the earlier store, and the result is the
    one a fresh run gives (failures included)."""
    first = make_pool(tmp_path / "pool", 20, broken=1)
    cache = tmp_path / "cache"
    calls: list[int] = []
    run_selection(
        cfg_for([str(first)], tmp_path / "a", **{"runtime.cache_dir": cache}), FakeGridProposer(calls=calls)
    )
    assert len(calls) == 20
    (first / "img_003.png").unlink()  # dropped (as by the leakage guard)
    (first / "img_011.png").unlink()
    make_pool(tmp_path / "new", 2, seed=7)
    shutil.copy(tmp_path / "new" / "img_000.png", first / "img_100.png")  # added
    shutil.copy(tmp_path / "new" / "img_001.png", first / "img_005.png")  # same path, other content
    calls.clear()
    run_selection(
        cfg_for([str(first)], tmp_path / "b", **{"runtime.cache_dir": cache}), FakeGridProposer(calls=calls)
    )
    assert len(calls) == 2  # img_100 and the changed img_005; 16 reused, the broken file's failure too
    fresh = tmp_path / "fresh"
    run_selection(cfg_for([str(first)], fresh), FakeGridProposer())
    assert manifest_dict(tmp_path / "b") == manifest_dict(fresh)
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert metrics["summary"]["unreadable pool images"] == 1
    calls.clear()  # the same pool again: the whole store is cached, nothing proposed
    run_selection(
        cfg_for([str(first)], tmp_path / "c", **{"runtime.cache_dir": cache}), FakeGridProposer(calls=calls)
    )
    assert calls == []
    moved = shutil.copytree(first, tmp_path / "moved" / "pool")  # elsewhere, with one file twice
    shutil.copy(moved / "img_000.png", moved / "img_000_copy.png")
    run_selection(
        cfg_for([str(moved)], tmp_path / "d", **{"runtime.cache_dir": cache}), FakeGridProposer(calls=calls)
    )
    assert calls == []  # the patches follow the bytes, not the path
    fresh = tmp_path / "fresh-moved"
    run_selection(cfg_for([str(moved)], fresh), FakeGridProposer())
    assert manifest_dict(tmp_path / "d") == manifest_dict(fresh)


def test_pool_fingerprint_follows_content_not_mtime(tmp_path: Path) -> None:
    """A pool unpacked again (new mtimes, same bytes) keeps its SAM cache key; changed bytes change it."""
    from optidel.select.stage_cache import pool_fingerprint

    root = make_pool(tmp_path / "p", 4)
    before = pool_fingerprint(list_pool([str(root)]))
    first = sorted(root.rglob("*.png"))[0]
    os.utime(first, ns=(1, 1))
    assert pool_fingerprint(list_pool([str(root)])) == before
    first.write_bytes(first.read_bytes() + b"\0")
    assert pool_fingerprint(list_pool([str(root)])) != before


def test_resume_after_injected_failure(reference: Path, pools: list[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="injected"):
        run_selection(cfg_for(pools, out), proposer=FakeGridProposer(fail_after=20))  # 2 full shards of 8
    shard_dir = next((out / "cache").glob("patches-*"))
    assert sorted(p.name for p in shard_dir.glob("shard_*.parquet")) == [
        "shard_00000.parquet",
        "shard_00001.parquet",
    ]
    assert not (out / "DONE").exists()
    calls: list[int] = []
    run_selection(cfg_for(pools, out), proposer=FakeGridProposer(calls=calls))
    assert (
        len(calls) == N_A + N_B - 16
    )  # only the images of the missing shards (the broken one is never proposed)
    assert manifest_dict(out) == manifest_dict(reference)
    assert not list(shard_dir.glob("shard_*"))  # merged, shards removed


def test_batched_proposer_gives_the_same_manifest(reference: Path, pools: list[str], tmp_path: Path) -> None:
    sizes: list[int] = []

    class Batched(FakeGridProposer):
        def process_batch(self, imgs: list[np.ndarray]) -> list:
            sizes.append(len(imgs))
            return [self.process(im) for im in imgs]

    out = tmp_path / "out"
    calls: list[int] = []
    run_selection(cfg_for(pools, out, **{"proposal.proposer_batch": 3}), proposer=Batched(calls=calls))
    assert max(sizes) == 3 and len(calls) == N_A + N_B  # batches of up to 3 images, every image once
    assert manifest_dict(out) == manifest_dict(reference)


def test_shards_of_a_changed_proposer_are_not_resumed(tmp_path: Path) -> None:
    from optidel.select.stages.patches import check_shard_spec

    root = tmp_path / "patches-x"
    root.mkdir()
    for name in ("shard_00000.parquet", "emb_00000.npy"):
        (root / name).write_bytes(b"old")
    check_shard_spec(root, {"proposer_key": {"version": 1}})
    assert (root / "shard_00000.parquet").exists()  # first spec: shards kept
    check_shard_spec(root, {"proposer_key": {"version": 1}})
    assert (root / "shard_00000.parquet").exists()  # same proposer: resumed
    check_shard_spec(root, {"proposer_key": {"version": 2}})
    assert not list(root.glob("shard_*")) and not list(root.glob("emb_*"))
    assert json.loads((root / "spec.json").read_text()) == {"proposer_key": {"version": 2}}


KILL_SCRIPT = """
import sys, time
from select_fakes import FakeGridProposer
from optidel.select.pipeline import run_selection, selection_config

class Slow(FakeGridProposer):
    def process(self, img):
        time.sleep(0.15)
        return super().process(img)

pools = sys.argv[2:]
run_selection(selection_config(pool=pools, out=sys.argv[1], ratio=0.1, runtime={"shard_size": 8}, report={"enabled": False}), proposer=Slow())
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    env["OPTIDEL_PROGRESS"] = "0"
    env.pop("WORLD_SIZE", None)
    return env


def test_resume_after_kill(reference: Path, pools: list[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(out), *pools], env=_env())
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not list((out / "cache").glob("patches-*/shard_00001.parquet")):
            assert proc.poll() is None, "the selection process ended before it could be killed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    shard_dir = next((out / "cache").glob("patches-*"))
    done_shards = len(list(shard_dir.glob("shard_*.parquet")))
    assert 2 <= done_shards < 6 and not (shard_dir / "done.json").exists()
    calls: list[int] = []
    run_selection(cfg_for(pools, out), proposer=FakeGridProposer(calls=calls))
    assert len(calls) < N_A + N_B  # resumed, not restarted
    assert manifest_dict(out) == manifest_dict(reference)


DIST_SCRIPT = """
import sys
from select_fakes import FakeGridProposer
from optidel.select.pipeline import run_selection, selection_config

calls = []
run_selection(selection_config(pool=sys.argv[2:], out=sys.argv[1], ratio=0.1, runtime={"shard_size": 8}, report={"enabled": False}),
              proposer=FakeGridProposer(calls=calls))
print("IMAGES", len(calls))
"""


@pytest.mark.slow
def test_two_ranks_with_gloo(reference: Path, pools: list[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = _env()
        env.update(
            {
                "WORLD_SIZE": "2",
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
            }
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", DIST_SCRIPT, str(out), *pools],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    counts = [int(o[0].split("IMAGES")[1]) for o in outs]
    assert counts[0] > 0 and counts[1] > 0 and sum(counts) == N_A + N_B  # the work was split
    assert (out / "DONE").is_file() and (out / "log.rank1.txt").is_file()
    assert manifest_dict(out) == manifest_dict(reference)


def test_strict_fails_on_unreadable_image(pools: list[str], tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="zz_broken_0.png: empty file"):
        run_selection(
            cfg_for(pools, tmp_path / "out", **{"runtime.strict": True}), proposer=FakeGridProposer()
        )


def test_image_level_random_copies_files(pools: list[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_selection(cfg_for([pools[1]], out, method="random", ratio=0.5))
    table, meta = read_manifest(out / "manifest.parquet")
    d = table.to_pydict()
    assert meta["level"] == "image" and table.num_rows == 5 and d["patch_id"] == [None] * 5
    for name, src in zip(d["output_image"], d["image_path"], strict=True):
        assert (out / "images" / name).read_bytes() == Path(src).read_bytes()
    assert not list((out / "cache").glob("patches-*"))  # no patch stage for an image-level method


def test_noise_control_writes_seeded_noise_in_place_of_random_pool_images(
    pools: list[str], tmp_path: Path
) -> None:
    """``--method noise``: as many images as ``random``, none of them a pool image, the same for a seed."""
    runs = {}
    for name, seed in (("a", 0), ("again", 0), ("other", 1)):
        out = tmp_path / name
        run_selection(
            cfg_for([pools[1]], out, method="noise", ratio=0.5, seed=seed, **{"synthesis.mosaic_size": 32})
        )
        runs[name] = out
    table, meta = read_manifest(runs["a"] / "manifest.parquet")
    d = table.to_pydict()
    assert meta["level"] == "image" and table.num_rows == 5  # round(0.5 x 10), as random
    imgs = {n: [load_rgb(runs[n] / "images" / f) for f in d["output_image"]] for n in runs}
    pool_pixels = [load_rgb(p) for p in d["image_path"]]  # the stand-ins: none of their pixels is used
    for img, src in zip(imgs["a"], pool_pixels, strict=True):
        assert img.shape == (32, 32, 3) and img.std() > 20  # noise with spread, not a flat image
        assert img.shape != src.shape or not np.array_equal(img, src)
    assert all(np.array_equal(x, y) for x, y in zip(imgs["a"], imgs["again"], strict=True))
    assert not any(np.array_equal(x, y) for x, y in zip(imgs["a"], imgs["other"], strict=True))
    assert not list((runs["a"] / "cache").glob("patches-*"))  # no patch stage
    report = tmp_path / "report"
    run_selection(cfg_for([pools[1]], report, method="noise", ratio=0.5, **{"report.enabled": True}))
    assert "noise, 256 px (no pool pixel)" in (report / "report.html").read_text()
    random_out = tmp_path / "random"
    run_selection(
        cfg_for([pools[1]], random_out, method="random", ratio=0.5, **{"synthesis.mosaic_size": 32})
    )
    assert len(list((random_out / "images").iterdir())) == len(imgs["a"])


def test_cli_select_with_config_and_overrides(pools: list[str], tmp_path: Path) -> None:
    from optidel.cli import app

    cfg_file = tmp_path / "sel.yaml"
    cfg_file.write_text(yaml.safe_dump({"ratio": 0.5, "seed": 1, "method": "full"}))
    out = tmp_path / "out"
    args = [
        "select",
        "--pool",
        pools[1],
        "--out",
        str(out),
        "--config",
        str(cfg_file),
        "--method",
        "random",
        "--set",
        "seed=7",
        "--no-report",
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (
        saved["method"] == "random" and saved["ratio"] == 0.5 and saved["seed"] == 7
    )  # file < option < --set
    assert len(list((out / "images").iterdir())) == 5 and not (out / "report.html").exists()
    r = CliRunner().invoke(app, ["select", "--pool", pools[1], "--out", str(out), "--method", "nope"])
    assert r.exit_code == 2 and "unknown selection method" in r.output


@pytest.mark.slow
def test_real_grid_proposer_through_the_cli(tmp_path: Path) -> None:
    """The real factories (grid patches + LiteMedSAM box features) on 2 tiny images, end to end via the CLI, the
    images computed by 2 worker processes."""
    pytest.importorskip("optidel.select.patches.proposers")
    from optidel.cli import app

    pool = make_pool(tmp_path / "pool", 2, size=48, seed=3)
    out = tmp_path / "out"
    args = [
        "select",
        "--pool",
        str(pool),
        "--out",
        str(out),
        "--patches",
        "grid",
        "--ratio",
        "0.5",
        "--no-report",
        "--procs",
        "2",
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert re.search(r"2 worker processes x \d+ torch threads", (out / "log.txt").read_text())
    table, meta = read_manifest(out / "manifest.parquet")
    assert meta["n_output_images"] == 1 and sum(table.column("selected").to_pylist()) == 4
    assert np.isnan(
        np.asarray(table.column("pred_iou").to_pylist(), float)
    ).all()  # grid patches: no SAM scores
    spec = json.loads(next((out / "cache").glob("patches-*/spec.json")).read_text())
    assert spec["embedder_key"]["embedder"] == "litemedsam-box-pool"
    # two images more in the folder: the workers compute only them (the second shard), the first shard is the
    # first store's two images
    more = make_pool(tmp_path / "more", 2, size=48, seed=4)
    for name in ("img_000.png", "img_001.png"):
        shutil.copy(more / name, pool / name.replace("img_0", "img_9"))
    out2 = tmp_path / "out2"
    args2 = [a if a != str(out) else str(out2) for a in args]
    args2 += ["--set", f"runtime.cache_dir={out / 'cache'}", "--set", "runtime.shard_size=2"]
    r = CliRunner().invoke(app, args2)
    assert r.exit_code == 0, r.output
    log = (out2 / "log.txt").read_text()
    assert "patches: 2 images reused from patches-" in log and "2 worker processes" in log
    first, second = read_manifest(out / "manifest.parquet")[0], read_manifest(out2 / "manifest.parquet")[0]
    n = first.num_rows  # the two old images open the new table, with the same boxes
    assert [second.column(c).to_pylist()[:n] == first.column(c).to_pylist() for c in ("x0", "y1")] == [
        True
    ] * 2
    assert second.num_rows > n and set(second.column("image_index").to_pylist()) == {0, 1, 2, 3}


def test_second_select_on_the_same_out_stops_at_once(
    reference: Path, pools: list[str], tmp_path: Path
) -> None:
    """``run_selection`` holds ``OUT``'s run lock: a concurrent second run fails at once naming the holder, and the
    first one finishes undisturbed."""
    from optidel.runtime.lock import RunFolderLocked, lock_holder

    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(out), *pools], env=_env())
    try:
        deadline = time.time() + 60
        while time.time() < deadline and lock_holder(out) is None:
            assert proc.poll() is None, "the first selection ended before the second one started"
            time.sleep(0.05)
        t0 = time.perf_counter()
        with pytest.raises(RunFolderLocked, match=rf"pid {proc.pid} .*optidel select"):
            run_selection(cfg_for(pools, out), proposer=FakeGridProposer())
        assert time.perf_counter() - t0 < 10  # refused before any stage ran
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (out / "DONE").is_file() and manifest_dict(out) == manifest_dict(reference)


def test_compare_select_outputs_script(reference: Path, tmp_path: Path) -> None:
    """benchmarks/compare_select_outputs.py: a copy is equal (NaN columns too); a changed column or image is named."""
    import importlib.util

    import pyarrow as pa
    import pyarrow.compute as pc

    path = HERE.parents[1] / "benchmarks" / "compare_select_outputs.py"
    spec = importlib.util.spec_from_file_location("compare_select_outputs", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    copy = tmp_path / "copy"
    shutil.copytree(reference, copy)
    assert mod.compare_outputs(reference, copy) == [] and mod.main([str(reference), str(copy)]) == 0
    table = pq.read_table(copy / "manifest.parquet")
    i = table.schema.get_field_index("d1")
    d1 = pc.add(table.column("d1"), pa.scalar(1.0, pa.float32()))
    pq.write_table(table.set_column(i, table.schema.field(i), d1), copy / "manifest.parquet")
    first = sorted((copy / "images").iterdir())[0]
    first.write_bytes(first.read_bytes() + b"\0")
    assert mod.compare_outputs(reference, copy) == ["column 'd1' differs", f"image {first.name} differs"]
