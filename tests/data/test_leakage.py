"""Leakage guard: exact and near duplicates of test images are found, distinct images are not; the CLI's outputs."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from optidel.data.leakage import (
    LeakageThresholds,
    check_pool,
    downstream_test_splits,
    find_leaks,
    fingerprint_images,
)


def _scene(seed: int, size: int = 96) -> Image.Image:
    """A smooth random colour scene (blobs): distinct seeds give distinct images."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size, 3))
    for _ in range(6):
        cx, cy, r = rng.uniform(0, 1, 3)
        img += rng.uniform(0, 1, 3) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (0.02 + 0.1 * r))[..., None]
    return Image.fromarray((255 * img / img.max()).astype(np.uint8))


def _save(img: Image.Image, path: Path, quality: int | None = None) -> Path:
    if quality is None:
        img.save(path)
    else:
        img.save(path, format="JPEG", quality=quality)
    return path


def test_exact_and_near_duplicates_found_distinct_not(tmp_path: Path) -> None:
    test_dir, pool_dir = tmp_path / "test", tmp_path / "pool"
    test_dir.mkdir()
    pool_dir.mkdir()
    tests = [_save(_scene(i), test_dir / f"t{i}.png") for i in range(6)]
    pool = [_save(_scene(100 + i), pool_dir / f"p{i}.png") for i in range(20)]  # distinct scenes
    shutil.copy(tests[0], pool_dir / "exact.png")  # the same bytes
    _save(_scene(1), pool_dir / "jpeg.jpg", quality=55)  # re-encoded
    _save(_scene(2).resize((61, 61), Image.Resampling.BICUBIC), pool_dir / "small.jpg", quality=80)  # resized
    pool += [pool_dir / "exact.png", pool_dir / "jpeg.jpg", pool_dir / "small.jpg"]
    pf, tf = fingerprint_images(pool), fingerprint_images(tests)
    assert pf.ok.all() and np.allclose(np.linalg.norm(pf.thumb, axis=1), 1, atol=1e-4)
    leaks = find_leaks(pf, tf)
    found = {
        (Path(pf.paths[i]).name, Path(tf.paths[j]).name, k)
        for i, j, k in zip(leaks.pool, leaks.test, leaks.kind, strict=True)
    }
    assert found == {
        ("exact.png", "t0.png", "exact"),
        ("jpeg.jpg", "t1.png", "near"),
        ("small.jpg", "t2.png", "near"),
    }
    # a looser cosine admits pairs the hash still vetoes: the hash distance of every reported pair is within its limit
    loose = find_leaks(pf, tf, LeakageThresholds(cosine_min=0.0, hamming_max=4))
    assert (loose.hamming <= 4).all() and {("jpeg.jpg", "t1.png")} <= {
        (Path(pf.paths[i]).name, Path(tf.paths[j]).name) for i, j in zip(loose.pool, loose.test, strict=True)
    }


def test_fingerprint_cache_and_unreadable(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"not an image")
    good = _save(_scene(0), tmp_path / "good.png")
    fp = fingerprint_images([good, tmp_path / "bad.png"], cache_dir=tmp_path / "cache")
    assert fp.ok.tolist() == [True, False] and not fp.thumb[1].any()
    again = fingerprint_images([good, tmp_path / "bad.png"], cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("leakage-fp-*.npz"))) == 1
    assert np.array_equal(again.phash, fp.phash) and again.sha1 == fp.sha1


def test_kvasir_pool_with_20_test_images_finds_exactly_those(kvasir: Path, tmp_path: Path) -> None:
    """100 Kvasir-SEG train images + 20 test images (8 as they are, 6 re-encoded, 6 resized and re-encoded)."""
    from optidel.cli import app
    from optidel.data.pool import list_pool

    train = list_pool([f"{kvasir}:train"])[:100]
    test = list_pool([f"{kvasir}:test"])[:20]
    pool = tmp_path / "pool"
    pool.mkdir()
    for im in train:
        (pool / im.path.name).symlink_to(im.path)
    planted = {}
    for n, im in enumerate(test):
        name = f"leak_{n:02d}.jpg"
        if n < 8:
            (pool / name).symlink_to(im.path)
        else:
            img = Image.open(im.path).convert("RGB")
            if n >= 14:
                img = img.resize((img.width * 2 // 3, img.height * 2 // 3), Image.Resampling.BICUBIC)
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=70 if n % 2 else 92)
            (pool / name).write_bytes(buf.getvalue())
        planted[f"pool/leak_{n:02d}"] = im.uid
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["data", "leakage", "--pool", str(pool), "--against", f"{kvasir}:test", "--out", str(out)]
    )
    assert res.exit_code == 1, res.output
    rows = list(csv.DictReader((out / "leaks.csv").open()))
    assert {(r["pool_image"], r["test_image"]) for r in rows} == set(planted.items())
    assert sum(r["kind"] == "exact" for r in rows) == 8
    assert (out / "gallery.html").is_file() and (out / "gallery.png").is_file()
    # the pool's own train images do not duplicate the test split: the same check without the planted ones passes
    check = check_pool(
        [im.uid for im in train], [im.path for im in train], [f"{kvasir}:test"], cache_dir=out / "cache"
    )
    assert len(check.pairs) == 0 and not check.leaking().any()
    assert (
        downstream_test_splits([f"{kvasir}:train"]) == [f"{kvasir}:test"]
        and downstream_test_splits([f"{kvasir}:test"]) == []
    )


def test_cli_bad_against_is_one_line_exit_2(tmp_path: Path) -> None:
    from optidel.cli import app

    _save(_scene(0), tmp_path / "a.png")
    res = CliRunner().invoke(
        app,
        [
            "data",
            "leakage",
            "--pool",
            str(tmp_path),
            "--against",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 2 and "does not exist" in res.output and "Traceback" not in res.output
