"""The fine-tuning protocol end to end on tiny data: outputs, determinism, label fraction, encoder files, FOV."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from optidel.config import load_config
from optidel.downstream import FinetuneConfig, finetune
from optidel.downstream.result import FinetuneResult
from optidel.downstream.splits import holdout_indices, label_subset, load_split

FAST = {"img_size": 32, "patch_size": 8, "epochs": 2, "min_steps": 0, "batch_size": 8, "head_dim": 32}


def tiny_cfg(dataset: Path, out: Path, **kw) -> FinetuneConfig:
    return FinetuneConfig(dataset=str(dataset), out=str(out), **{**FAST, **kw})


@pytest.fixture(scope="module")
def run_a(tiny_seg: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FinetuneResult]:
    out = tmp_path_factory.mktemp("ft") / "a"
    return out, finetune(tiny_cfg(tiny_seg, out))


def test_outputs_written(run_a):
    out, metrics = run_a
    for name in (
        "config.yaml",
        "log.txt",
        "metrics.json",
        "per_image.csv",
        "history.csv",
        "overlays.png",
        "DONE",
    ):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["test"] == pytest.approx(metrics.test)
    assert FinetuneResult.read(out) == metrics  # the typed result is the metrics.json on disk
    assert metrics.run_dir == out and metrics.miou == metrics.test["miou"]
    for k in ("miou", "iou_fg", "dice_fg"):
        assert 0 <= metrics.test[k] <= 1
    assert set(metrics.floors) == {"all-background", "all-foreground", "mean-mask prior"}
    assert metrics.encoder["path"] == "none" and metrics.encoder["random_init"]
    assert metrics.dataset == {**metrics.dataset, "n_train": 16, "n_val": 2, "n_test": 6}
    assert 1 <= metrics.best_epoch <= 2 and metrics.epochs_run == 2
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert len(rows) == 6 and set(rows[0]) >= {"id", "iou_fg", "dice_fg", "fg_fraction"}
    assert np.mean([float(r["iou_fg"]) for r in rows]) == pytest.approx(metrics.test["iou_fg"], abs=1e-5)
    hist = list(csv.DictReader((out / "history.csv").open()))
    assert [int(h["epoch"]) for h in hist] == [1, 2] and set(hist[0]) >= {"train_loss", "val_miou"}
    assert max(float(h["val_miou"]) for h in hist) == pytest.approx(metrics.best_val_miou, abs=1e-5)
    assert (out / "overlays.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_config(FinetuneConfig, out / "config.yaml") == tiny_cfg(
        Path(metrics.metrics["config"]["dataset"]), out
    )


def test_same_seed_same_metrics(run_a, tiny_seg: Path, tmp_path: Path):
    _, a = run_a
    b = finetune(tiny_cfg(tiny_seg, tmp_path / "b"))
    assert b.test == a.test
    assert b.history == a.history
    assert b.floors == a.floors


def test_probe_with_encoder_file_and_label_fraction(tiny_seg: Path, tmp_path: Path):
    import torch

    from optidel.models.backbone import backbone_kwargs, create_backbone, timm_name
    from optidel.models.encoder_io import save_encoder

    torch.manual_seed(0)
    enc = create_backbone("vit_tiny", 32, 8)
    path = tmp_path / "run" / "encoder.safetensors"
    save_encoder(enc, path, timm_name("vit_tiny"), backbone_kwargs("vit_tiny", 32, 8), note="test")
    # the encoder was saved at 32 px and runs at 48 px (position embeddings resampled); arch/patch from the file
    m = finetune(
        tiny_cfg(
            tiny_seg,
            tmp_path / "p",
            encoder=str(path),
            mode="probe",
            img_size=48,
            patch_size=16,
            epochs=1,
            label_fraction=0.5,
        )
    )
    assert m.mode == "probe"
    assert m.encoder["random_init"] is False and m.encoder["patch_size"] == 8
    assert m.encoder["metadata"]["note"] == "test"
    assert m.dataset["n_train"] == 8 and m.dataset["n_train_available"] == 16 and m.dataset["n_val"] == 2


def test_holdout_and_label_subset_are_seeded_and_disjoint():
    keep, val = holdout_indices(100, 0.1, seed=3)
    assert len(val) == 10 and len(keep) == 90 and not set(keep) & set(val)
    assert np.array_equal(holdout_indices(100, 0.1, seed=3)[1], val)
    assert not np.array_equal(holdout_indices(100, 0.1, seed=4)[1], val)
    sub = label_subset(90, 0.1, seed=3)
    assert len(sub) == 9 and np.array_equal(sub, label_subset(90, 0.1, seed=3))
    assert np.array_equal(label_subset(90, 1.0, seed=3), np.arange(90))
    with pytest.raises(ValueError, match="at least 2"):
        holdout_indices(1, 0.1, 0)


def test_fov_masks_are_loaded_as_valid_pixels(tiny_seg: Path, tmp_path: Path):
    from optidel.data.segmentation import load_seg_dataset

    ds_root = tmp_path / "with-fov"
    shutil.copytree(tiny_seg, ds_root)
    (ds_root / "fov_masks").mkdir()
    yy, xx = np.mgrid[0:64, 0:64]
    disc = (np.hypot(yy - 32, xx - 32) < 28).astype(np.uint8) * 255
    for img in sorted((ds_root / "images").glob("*.png")):
        Image.fromarray(disc).save(ds_root / "fov_masks" / img.name)
    ds = load_seg_dataset(ds_root)
    test = load_split(ds.split("test"), 32, True, "test")
    assert test.valid is not None and test.valid.shape == test.masks.shape
    assert 0.6 < test.valid.mean() < 0.7  # pi * 28^2 / 64^2 = 0.60, at 32 px a little more
    assert not test.valid[:, 0, 0].any() and test.valid[:, 16, 16].all()


def test_bad_inputs_name_the_problem(tiny_seg: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        finetune(tiny_cfg(tiny_seg, tmp_path / "x", encoder=str(tmp_path / "missing.safetensors")))
    with pytest.raises(ValueError, match="label_fraction"):
        finetune(tiny_cfg(tiny_seg, tmp_path / "x", label_fraction=0.0))
    with pytest.raises(FileNotFoundError, match="not a segmentation dataset"):
        finetune(tiny_cfg(tmp_path / "nowhere", tmp_path / "x"))


@pytest.mark.slow
def test_real_kvasir_handful(kvasir: Path, tmp_path: Path):
    """A few real Kvasir-SEG pairs (linked into a small dataset) go through the whole protocol."""
    from optidel.data.segmentation import load_seg_dataset

    ds = load_seg_dataset(kvasir, check_sizes=False)
    pairs = ds.split("train")[:10] + ds.split("test")[:4]
    root = tmp_path / "kvasir-handful"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for p in pairs:
        (root / "images" / p.image.name).symlink_to(p.image)
        (root / "masks" / p.mask.name).symlink_to(p.mask)
    (root / "splits.csv").write_text("id,split\n" + "".join(f"{p.id},{p.split}\n" for p in pairs))
    m = finetune(tiny_cfg(root, tmp_path / "run", img_size=64, epochs=1))
    assert m.dataset["n_test"] == 4 and m.dataset["n_train"] + m.dataset["n_val"] == 10
    assert 0 < m.floors["all-background"]["miou"] < 0.5  # polyps are present in every test image
    assert m.floors["all-background"]["iou_fg"] == 0.0
    assert 0 <= m.test["miou"] <= 1


def test_resnet_backbone_runs(tiny_seg: Path, tmp_path: Path):
    m = finetune(tiny_cfg(tiny_seg, tmp_path / "r", arch="resnet18", epochs=1))
    assert m.encoder["arch"] == "resnet18" and m.encoder["patch_size"] is None
    assert 0 <= m.test["miou"] <= 1


@pytest.mark.parametrize("arch,patch", [("vit_tiny", 8), ("resnet18", None)])
def test_probe_validation_from_cached_features_equals_full_prediction(arch, patch):
    """Probe mode decodes the frozen encoder's cached validation features: same masks as running the whole model."""
    import torch

    from optidel.downstream.predict import predict, validation_predictor
    from optidel.downstream.seg_head import build_segmentation_model
    from optidel.models.backbone import create_backbone

    torch.manual_seed(0)
    model = build_segmentation_model(create_backbone(arch, 32, patch), 4, 16, freeze_encoder=True)
    images = np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    cached = validation_predictor(model, images, mean, std, batch_size=3)
    for _ in range(2):  # the head changes between epochs; the cached features must follow the new head
        with torch.no_grad():
            for p in model.head.parameters():
                p.add_(0.3 * torch.randn_like(p))
        want = predict(model, images, mean, std, batch_size=3)
        assert 0 < want.mean() < 1  # a real mask, not all one class
        np.testing.assert_array_equal(cached(), want)
    rerun = validation_predictor(model, images, mean, std, batch_size=3, max_bytes=0)
    np.testing.assert_array_equal(rerun(), want)
    assert rerun.__name__ == "full" and cached.__name__ == "from_cache"


def test_importing_the_package_does_not_import_torch():
    """The package docstring promises numpy-only imports (torch and timm load when a function runs)."""
    import subprocess
    import sys

    code = (
        "import sys, optidel.downstream, optidel.downstream.train, optidel.downstream.predict; "
        "print('torch' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "False"
