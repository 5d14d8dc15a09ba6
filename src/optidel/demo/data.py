"""The demo's data: the embedded default (offline) or a seeded sample of a user's dataset.

Embedded (no ``--data``): the downstream task is a **generated** segmentation dataset (:mod:`optidel.data.synthetic`,
labelled SYNTHETIC in every output) and the unlabeled pool is its train images (without their masks) plus crops of
the real images scikit-image ships (:mod:`optidel.data.bundled`): like the paper's setting, a pool that holds the
task's domain and other material, from which a selection must find what helps. With ``--data PATH`` (a segmentation
dataset): the pool is a seeded sample of its train images, the task the dataset itself.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optidel.data.bundled import make_bundled_pool
from optidel.data.pool import list_pool
from optidel.data.segmentation import is_seg_dataset
from optidel.data.synthetic import SYNTHETIC_MARKER, is_synthetic, make_synthetic_seg_dataset
from optidel.runtime.atomic import atomic_write_text
from optidel.runtime.errors import OptidelError

SYNTHETIC_NAME = "synthetic-blobs"
BUNDLED_NAME = "bundled-pool"


class DemoDataError(OptidelError, FileNotFoundError):
    """``--data`` is not a segmentation dataset."""

    exit_code = 2


@dataclass(frozen=True)
class DemoData:
    """Where the demo's grid finds its data (the fields of a benchmark config).

    Attributes:
        data_root: folder holding the downstream dataset.
        dataset: the downstream dataset's folder name under ``data_root``.
        pool: pool datasets (names under ``data_root`` or absolute folders).
        synthetic: the downstream task is generated data.
    """

    data_root: Path
    dataset: str
    pool: tuple[str, ...]
    synthetic: bool


def embedded_data(folder: Path, pool_images: int, synthetic_pairs: int, seed: int) -> DemoData:
    """Write (once) the bundled-image pool and the synthetic task into ``folder``; reused when present."""
    seg = folder / SYNTHETIC_NAME
    if not (seg / SYNTHETIC_MARKER).is_file():
        make_synthetic_seg_dataset(seg, n=synthetic_pairs, size=128, seed=seed)
    pool = folder / BUNDLED_NAME
    if not (pool / "BUNDLED.txt").is_file():
        make_bundled_pool(pool, n=pool_images, size=128, seed=seed)
    return DemoData(folder, SYNTHETIC_NAME, (SYNTHETIC_NAME, BUNDLED_NAME), True)


def train_sample(root: Path, n: int, seed: int, dest: Path) -> Path | str:
    """A pool of ``n`` train images of ``root`` drawn with ``seed``, linked into a folder under ``dest``.

    Keeps the demo's SAM stage at the embedded default's size (a 900-image train split would take ~30 min on 2
    cores). A split with at most ``n`` train images is used whole (returns ``"root:train"``). The folder holds
    symbolic links (copies where links are not allowed) and ``SAMPLE.txt`` naming the origin; it is reused when
    that file matches.
    """
    train = list_pool([f"{root}:train"])
    if len(train) <= n:
        return f"{root}:train"
    folder = dest / f"{root.name}-train-sample{n}"
    stamp = f"{n} of the {len(train)} train images of {root.resolve()}, drawn with seed {seed}\n"
    if (folder / "SAMPLE.txt").is_file() and (folder / "SAMPLE.txt").read_text() == stamp:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    pick = np.sort(np.random.default_rng(seed).choice(len(train), size=n, replace=False))
    for i in pick:
        im = train[int(i)]
        link = folder / (im.uid.split("/", 1)[-1].replace("/", "__") + im.path.suffix.lower())
        try:
            link.symlink_to(im.path.resolve())
        except OSError:
            shutil.copyfile(im.path, link)
    atomic_write_text(folder / "SAMPLE.txt", stamp)
    return folder


def user_data(root: Path, folder: Path, pool_images: int, seed: int) -> DemoData:
    """The demo on a user's segmentation dataset ``root``: its train sample as the pool, itself as the task."""
    if not is_seg_dataset(root):
        raise DemoDataError(f"{root}: --data is not a segmentation dataset (needs images/ and masks/)")
    root = root.resolve()
    sample = train_sample(root, pool_images, seed, folder)
    pool = root.name if isinstance(sample, str) else str(Path(sample).resolve())
    return DemoData(root.parent, root.name, (pool,), is_synthetic(root))
