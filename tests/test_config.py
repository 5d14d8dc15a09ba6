"""Typed configs: defaults, YAML, key=value overrides, nested sections, clear errors, round trip."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from optidel.config import ConfigError, load_config, resolve_config, save_config


@dataclass(frozen=True)
class Optim:
    lr: float = 1e-3
    betas: tuple[float, ...] = (0.9, 0.95)


@dataclass(frozen=True)
class Cfg:
    steps: int = 100
    ssl: Literal["mae", "simclr"] = "mae"
    data: tuple[str, ...] = ()
    out: Path | None = None
    norm_pix: bool = True
    optim: Optim = field(default_factory=Optim)


def test_defaults_yaml_and_overrides(tmp_path: Path) -> None:
    assert resolve_config(Cfg) == Cfg()
    y = tmp_path / "c.yaml"
    y.write_text("steps: 7\noptim:\n  lr: 0.5\ndata: [a, b]\n")
    cfg = resolve_config(Cfg, y, ["optim.lr=0.25", "ssl=simclr", "norm_pix=false", "out=runs/x"])
    assert cfg.steps == 7 and cfg.optim.lr == 0.25 and cfg.optim.betas == (0.9, 0.95)
    assert (
        cfg.ssl == "simclr" and cfg.norm_pix is False and cfg.out == Path("runs/x") and cfg.data == ("a", "b")
    )


def test_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown config key.*optim.momentum"):
        resolve_config(Cfg, overrides=["optim.momentum=0.9"])
    with pytest.raises(ConfigError, match="steps: expected an integer"):
        resolve_config(Cfg, overrides=["steps=many"])
    with pytest.raises(ConfigError, match="ssl: 'byol' is not one of"):
        resolve_config(Cfg, overrides=["ssl=byol"])
    with pytest.raises(ConfigError, match="key=value"):
        resolve_config(Cfg, overrides=["steps"])
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config(Cfg, tmp_path / "missing.yaml")


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    cfg = resolve_config(Cfg, overrides=["steps=3", "data=[x]"])
    save_config(cfg, tmp_path)
    assert (tmp_path / "config.yaml").is_file()
    assert load_config(Cfg, tmp_path / "config.yaml") == cfg
