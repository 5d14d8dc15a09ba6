"""Hardness scores: definitions, orientation, rankings, and MAE reconstruction scores wired to the right patches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from optidel.select.rank.scores import (
    hardness,
    margin_score,
    prototype_score,
    rank_order,
    reconstruction_scores,
)


def test_margin_and_prototype() -> None:
    d1 = np.array([0.1, 0.5, 0.2], np.float32)
    d2 = np.array([0.15, 0.9, 0.8], np.float32)
    assert np.allclose(margin_score(d1, d2), [0.05, 0.4, 0.6])
    assert np.allclose(prototype_score(d1), d1)
    # margin: small = hard; prototype: far = hard
    assert rank_order(hardness("margin", margin_score(d1, d2)))[0] == 0
    assert rank_order(hardness("prototype", prototype_score(d1)))[0] == 1


def test_rank_order_ties_and_missing() -> None:
    h = hardness("reconstruction", np.array([1.0, np.nan, 3.0, 1.0]))
    assert rank_order(h).tolist() == [2, 0, 3, 1]  # ties keep index order, NaN last
    assert rank_order(h, descending=False).tolist() == [0, 3, 2, 1]  # easiest first, NaN still last
    with pytest.raises(ValueError, match="unknown score"):
        hardness("nope", h)


def test_reconstruction_scores_score_the_right_crops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in MAE whose error is the mean intensity: each patch must get the mean of its own crop."""
    import torch

    import optidel.models.mae as mae

    class Stub(torch.nn.Module):
        img_size = 16

    seen: dict[str, object] = {}

    def fake_load(run: str, device: str = "cpu") -> Stub:
        seen["run"] = run
        return Stub()

    def fake_err(model: Stub, imgs: torch.Tensor, seed: int = 0) -> torch.Tensor:
        assert imgs.shape[1:] == (3, 16, 16) and imgs.min() >= 0 and imgs.max() <= 1
        seen["seed"] = seed
        return imgs.mean(dim=(1, 2, 3))

    monkeypatch.setattr(mae, "load_mae", fake_load)
    monkeypatch.setattr(mae, "reconstruction_error", fake_err)
    img = np.zeros((40, 40, 3), np.uint8)
    img[:20, :20] = 255  # bright top-left quadrant
    paths = []
    for i in range(2):
        p = tmp_path / f"im{i}.png"
        Image.fromarray(img if i == 0 else 255 - img).save(p)
        paths.append(str(p))
    image_index = np.array([1, 0, 0, 1])
    boxes = np.array([[0, 0, 20, 20], [0, 0, 20, 20], [20, 20, 40, 40], [20, 20, 40, 40]])
    s = reconstruction_scores(paths, image_index, boxes, "RUN", seed=5, batch_size=3)
    assert np.allclose(s, [0.0, 1.0, 0.0, 1.0], atol=0.02)
    assert seen == {"run": "RUN", "seed": 5}
