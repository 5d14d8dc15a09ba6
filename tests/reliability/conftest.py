"""Fixtures of the reliability tests: one torch thread, a tiny encoder, its polyglot twin, a tiny image pool."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from reliability.helpers import invoke, pretrain_args, write_polyglot


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread (as every subprocess here): results compare bit for bit, the shared cores are spared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="package")
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():  # session fixtures below are made before this: they use one_torch_thread() too
        yield


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An optidel ``encoder.safetensors``: ViT-Tiny at 32 px with patch 8, random weights (seed 0)."""
    from optidel.models.backbone import backbone_kwargs, create_backbone, timm_name
    from optidel.models.encoder_io import save_encoder

    torch.manual_seed(0)
    model = create_backbone("vit_tiny", 32, 8)
    path = tmp_path_factory.mktemp("encoder") / "encoder.safetensors"
    save_encoder(model, path, timm_name("vit_tiny"), backbone_kwargs("vit_tiny", 32, 8))
    return path


@pytest.fixture(scope="session")
def polyglot(tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(``evil.pt``: the tiny encoder's keys, shapes and metadata plus a pickle payload; the marker it would create).

    Tests that make the payload run on purpose remove the marker; every test starts without it.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(tiny_encoder), framework="pt") as f:
        metadata = f.metadata()
    folder = tmp_path_factory.mktemp("polyglot")
    marker = folder / "PWNED"
    yield write_polyglot(folder / "evil.pt", marker, load_file(tiny_encoder), metadata), marker


@pytest.fixture(scope="session")
def tiny_pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six random 48 px RGB PNGs: an image-folder pool."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("pool") / "imgs"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(6):
        arr = torch.randint(0, 256, (48, 48, 3), generator=g, dtype=torch.uint8).numpy()
        Image.fromarray(arr).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="session")
def clean_pretrain(tiny_seg: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted tiny MAE run (the reference for resumed runs)."""
    out = tmp_path_factory.mktemp("pretrain") / "clean"
    with one_torch_thread():
        result = invoke("pretrain", *pretrain_args(tiny_seg), "--out", out)
    assert result.exit_code == 0, result.output
    return out


@dataclass(frozen=True)
class DiskFullRun:
    """A pretrain run whose second checkpoint write hit ENOSPC: ``out`` holds the step-3 checkpoint, no DONE."""

    out: Path
    exit_code: int
    output: str


@pytest.fixture(scope="session")
def disk_full_pretrain(tiny_seg: Path, tmp_path_factory: pytest.TempPathFactory) -> DiskFullRun:
    """Run the tiny pretrain with the disk "filling up" half-way through its second checkpoint (step 6).

    ``torch.save`` writes part of the file, then raises ``OSError(ENOSPC)``, as a full disk would. Tests copy
    ``out`` before changing it.
    """
    out = tmp_path_factory.mktemp("pretrain") / "disk-full"
    real_save = torch.save
    calls = []

    def save_until_the_disk_is_full(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) < 2:
            return real_save(obj, f, *args, **kwargs)
        f.write(b"\0" * 4096)  # a partial write, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.MonkeyPatch.context() as mp, one_torch_thread():
        mp.setattr(torch, "save", save_until_the_disk_is_full)
        result = invoke("pretrain", *pretrain_args(tiny_seg), "--out", out)
    assert len(calls) == 2, "the run should have tried two checkpoints"
    return DiskFullRun(out, result.exit_code, result.output)
