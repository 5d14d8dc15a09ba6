"""Shared fixtures: the real datasets in ../shared/data (skipped with a reason when absent), offline hubs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OPTIDEL_PROGRESS", "0")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_dataset(name: str) -> Path:
    """Path of ../shared/data/<name>; skips the test (with the reason) when it is not there."""
    p = SHARED_DATA / name
    if not (p / "images").is_dir():
        pytest.skip(f"shared dataset {name!r} not found at {p} (tests use ../shared/data beside the repo)")
    return p


@pytest.fixture(scope="session")
def kvasir() -> Path:
    return shared_dataset("kvasir-seg")


@pytest.fixture(scope="session")
def busi() -> Path:
    return shared_dataset("busi")


@pytest.fixture(scope="session")
def drive() -> Path:
    return shared_dataset("drive")


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Array caches of a test session go to a temporary folder, never to the user's ~/.cache."""
    os.environ["OPTIDEL_CACHE"] = str(tmp_path_factory.mktemp("optidel-cache"))


@pytest.fixture(scope="session")
def tiny_seg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated 24-pair segmentation dataset at 64 px (18 train / 6 test), labelled synthetic."""
    from optidel.data.synthetic import make_synthetic_seg_dataset

    return make_synthetic_seg_dataset(
        tmp_path_factory.mktemp("tiny-seg") / "synthetic-tiny", n=24, size=64, seed=0
    )
