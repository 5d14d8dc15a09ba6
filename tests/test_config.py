"""The one config layering: defaults < --config FILE < named options < --set, for every command's builder; renamed
keys; errors that name the key and the file; benchmark stage settings checked when the file is loaded."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest

from optidel.config import (
    ConfigDeprecationWarning,
    ConfigError,
    canonical_key,
    config_hash,
    field_default,
    layer_config,
    load_config,
    resolve_config,
    save_config,
)


@dataclass(frozen=True)
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)


@dataclass(frozen=True)
class Cfg:
    steps: int = 100
    ssl: Literal["mae", "simclr"] = "mae"
    data: tuple[str, ...] = ()
    out: Path | None = None
    norm_pix: bool = True
    optim: Optim = field(default_factory=Optim)

    RENAMED: ClassVar[dict[str, str]] = {"learning_rate": "optim.lr"}


def test_defaults_yaml_and_overrides(tmp_path: Path) -> None:
    assert resolve_config(Cfg) == Cfg()
    y = tmp_path / "c.yaml"
    y.write_text("steps: 7\noptim:\n  lr: 0.5\ndata: [a, b]\n")
    cfg = resolve_config(Cfg, y, ["optim.lr=0.25", "ssl=simclr", "norm_pix=false", "out=runs/x"])
    assert cfg.steps == 7 and cfg.optim.lr == 0.25 and cfg.optim.betas == (0.9, 0.95)
    assert cfg.ssl == "simclr" and cfg.norm_pix is False and cfg.out == Path("runs/x")
    assert cfg.data == ("a", "b")


def test_layer_order_and_not_given_options(tmp_path: Path) -> None:
    y = tmp_path / "c.yaml"
    y.write_text("steps: 2\nssl: simclr\noptim.lr: 0.5\n")  # a dotted key in a file nests like --set's
    cfg = layer_config(
        Cfg, base={"steps": 1, "norm_pix": False}, config_file=y, options={"steps": 3, "ssl": None}
    )
    assert cfg.steps == 3 and cfg.ssl == "simclr" and cfg.norm_pix is False and cfg.optim.lr == 0.5
    assert layer_config(Cfg, config_file=y, options={"steps": 3}, sets=["steps=4"]).steps == 4


def test_errors_name_the_key_and_the_layer(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--set: unknown config key optim\.momentum"):
        layer_config(Cfg, sets=["optim.momentum=0.9"])
    with pytest.raises(ConfigError, match="--set: steps: expected an integer, got 'many'"):
        layer_config(Cfg, sets=["steps=many"])
    with pytest.raises(ConfigError, match="ssl: 'byol' is not one of"):
        layer_config(Cfg, options={"ssl": "byol"})
    with pytest.raises(ConfigError, match="optim.betas: expected 2 values"):
        layer_config(Cfg, sets=["optim.betas=1,2,3"])
    with pytest.raises(ConfigError, match="key=value"):
        layer_config(Cfg, sets=["steps"])
    with pytest.raises(ConfigError, match="does not exist"):
        layer_config(Cfg, config_file=tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stpes: 5\n")
    with pytest.raises(ConfigError) as e:
        layer_config(Cfg, config_file=bad)
    msg = str(e.value)
    assert str(bad) in msg and "stpes" in msg and "did you mean steps" in msg and "\n" not in msg
    assert e.value.exit_code == 2
    bad.write_text("steps: [1, 2]\n")
    with pytest.raises(ConfigError, match=rf"config file {bad}: steps: expected an integer"):
        layer_config(Cfg, config_file=bad)


def test_renamed_keys_warn_with_the_new_key_in_every_layer(tmp_path: Path) -> None:
    y = tmp_path / "old.yaml"
    y.write_text("learning_rate: 0.5\n")
    for kwargs in ({"config_file": y}, {"sets": ["learning_rate=0.5"]}, {"options": {"learning_rate": 0.5}}):
        with pytest.warns(ConfigDeprecationWarning, match="'learning_rate' is now 'optim.lr'"):
            assert layer_config(Cfg, **kwargs).optim.lr == 0.5
    with pytest.warns(ConfigDeprecationWarning, match="optim.lr"):
        assert layer_config(Cfg, base={"learning_rate": 0.25}).optim.lr == 0.25  # the Python API
    with pytest.raises(ConfigError, match="both given"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layer_config(Cfg, sets=["learning_rate=0.5", "optim.lr=0.1"])
    assert canonical_key(Cfg, "learning_rate") == "optim.lr" and field_default(Cfg, "learning_rate") == 1e-3


def test_select_config_flat_keys_still_work_with_a_warning(tmp_path: Path) -> None:
    from optidel.select.config import SelectConfig

    y = tmp_path / "old-select.yaml"
    y.write_text("shard_size: 8\nreport: false\ndistance: l2\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = layer_config(SelectConfig, config_file=y)
    messages = [str(w.message) for w in caught if w.category is ConfigDeprecationWarning]
    assert any("'shard_size' is now 'runtime.shard_size'" in m for m in messages)
    assert any("'report' is now 'report.enabled'" in m for m in messages) and len(messages) == 3
    assert cfg.runtime.shard_size == 8 and cfg.report.enabled is False and cfg.cluster.distance == "l2"
    save_config(cfg, tmp_path / "run")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reading our own, current file: no warning
        assert load_config(SelectConfig, tmp_path / "run" / "config.yaml") == cfg
        assert load_config(SelectConfig, y) == cfg  # an old run's flat config.yaml maps silently


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    cfg = resolve_config(Cfg, overrides=["steps=3", "data=[x]"])
    save_config(cfg, tmp_path)
    assert (tmp_path / "config.yaml").is_file()
    assert load_config(Cfg, tmp_path / "config.yaml") == cfg


def test_config_hash_follows_the_settings_not_the_file_layout(tmp_path: Path) -> None:
    from optidel.bench.command import load_benchmark_config

    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("name: t\nseeds: [0, 1]\npretrain: {steps: 50, lr: 0.001}\n")
    b.write_text(
        "# the same settings, other order and layout\npretrain:\n  lr: 1.0e-3\n  steps: 50\nseeds: [0, 1]\nname: t\n"
    )
    (cfg_a, _), (cfg_b, _) = load_benchmark_config(str(a), []), load_benchmark_config(str(b), [])
    assert config_hash(cfg_a) == config_hash(cfg_b)
    assert len(config_hash(cfg_a)) == 12 and int(config_hash(cfg_a), 16) >= 0
    assert config_hash(load_benchmark_config(str(a), ["pretrain.steps=51"])[0]) != config_hash(cfg_a)
    save_config(
        cfg_a, tmp_path / "run"
    )  # a run folder's config.yaml hashes as the config it was written from
    assert config_hash(load_benchmark_config(str(tmp_path / "run" / "config.yaml"), [])[0]) == config_hash(
        cfg_a
    )


# -- the precedence table, through each command's own config builder ---------------------------------------------


def _select(file: Path | None, options: dict[str, Any], sets: list[str]) -> Any:
    from optidel.select.command import select_config

    return select_config(file, options, sets)


def _pretrain(file: Path | None, options: dict[str, Any], sets: list[str]) -> Any:
    from optidel.ssl.command import build_config

    return build_config(file, options, sets)


def _finetune(file: Path | None, options: dict[str, Any], sets: list[str]) -> Any:
    from optidel.downstream.command import build_config

    return build_config(file, sets, options)


def _theory(file: Path | None, options: dict[str, Any], sets: list[str]) -> Any:
    from optidel.theory.command import theory_config

    return theory_config(file, options, sets)


def _vinfo(file: Path | None, options: dict[str, Any], sets: list[str]) -> Any:
    from optidel.select.vinfo_command import VinfoConfig

    return layer_config(VinfoConfig, config_file=file, options=options, sets=sets)


def _demo(file: Path | None, options: dict[str, Any], sets: list[str]) -> Any:
    from optidel.demo.command import demo_config

    return demo_config(False, file, options, sets)


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


# (builder, option name, config key, file text, option value, --set value); every value differs from the default
PRECEDENCE_CASES = [
    ("select", _select, "ratio", "ratio", "ratio: 0.2\n", 0.3, "0.4"),
    ("select", _select, "k", "cluster.k", "cluster: {k: 4}\n", 5, "6"),
    (
        "select",
        _select,
        "tile_fit",
        "synthesis.tile_fit",
        "synthesis: {tile_fit: stretch}\n",
        "pad",
        "stretch",
    ),
    ("pretrain", _pretrain, "steps", "steps", "steps: 5\n", 6, "7"),
    ("pretrain", _pretrain, "lr", "lr", "lr: 0.01\n", 0.02, "0.03"),
    ("finetune", _finetune, "epochs", "epochs", "epochs: 2\n", 3, "4"),
    ("finetune", _finetune, "mode", "mode", "mode: probe\n", "finetune", "probe"),
    ("theory", _theory, "repeats", "repeats", "repeats: 4\n", 5, "6"),
    ("vinfo", _vinfo, "k", "k", "k: 4\n", 5, "6"),
    ("demo", _demo, "pool_images", "pool_images", "pool_images: 4\n", 5, "6"),
]


@pytest.mark.parametrize(
    ("builder", "option", "key", "text", "opt_value", "set_value"),
    [c[1:] for c in PRECEDENCE_CASES],
    ids=[f"{c[0]}-{c[3]}" for c in PRECEDENCE_CASES],
)
def test_each_level_beats_the_one_below(
    tmp_path: Path, builder: Any, option: str, key: str, text: str, opt_value: Any, set_value: str
) -> None:
    file = tmp_path / "cfg.yaml"
    file.write_text(text)
    default = _get(builder(None, {}, []), key)
    from_file = _get(builder(file, {}, []), key)
    from_option = _get(builder(file, {option: opt_value}, []), key)
    from_set = _get(builder(file, {option: opt_value}, [f"{key}={set_value}"]), key)
    assert from_file != default  # the file beats the defaults
    assert from_option == opt_value and from_option != from_file  # a named option beats the file
    assert str(from_set) == set_value and from_set != from_option  # --set beats the named option
    assert (
        _get(builder(None, {option: None}, []), key) == default
    )  # an option not given (None) changes nothing


def test_theory_base_is_the_experiments_own_settings(tmp_path: Path) -> None:
    from optidel.theory.command import theory_config
    from optidel.theory.experiments import default_config

    assert theory_config(None, {"experiment": "theta"}, []) == default_config("theta")
    quick = theory_config(None, {}, [], quick=True)
    assert quick.repeats == default_config("difficulty", quick=True).repeats
    file = tmp_path / "t.yaml"
    file.write_text("experiment: redundant\n")
    assert theory_config(file, {}, []).redundancy == default_config("redundant").redundancy
    with pytest.raises(Exception, match="unknown experiment"):
        theory_config(None, {"experiment": "nope"}, [])


def test_benchmark_precedence_and_stage_settings(tmp_path: Path) -> None:
    from optidel.bench.command import load_benchmark_config
    from optidel.bench.config import BenchmarkConfig

    file = tmp_path / "b.yaml"
    file.write_text(
        "name: t\nseeds: [5]\npretrain: {steps: 50, mae: {mask_ratio: 0.6}}\nfinetune: {epochs: 2}\n"
    )
    cfg, path = load_benchmark_config(str(file), [])
    assert path == file and cfg.seeds == (5,) != BenchmarkConfig().seeds  # the file beats the defaults
    assert cfg.pretrain == {"steps": 50, "mae": {"mask_ratio": 0.6}} and cfg.finetune == {"epochs": 2}
    cfg, _ = load_benchmark_config(str(file), ["seeds=[7]", "pretrain.steps=9", "select.cluster.k=4"])
    assert cfg.seeds == (7,) and cfg.pretrain == {
        "steps": 9,
        "mae": {"mask_ratio": 0.6},
    }  # --set beats the file
    assert cfg.select == {"cluster": {"k": 4}}


def test_benchmark_stage_typo_fails_at_load_naming_key_and_file(tmp_path: Path) -> None:
    from optidel.bench.command import load_benchmark_config

    file = tmp_path / "typo.yaml"
    file.write_text("pretrain: {stpes: 500}\n")
    with pytest.raises(ConfigError) as e:
        load_benchmark_config(str(file), [])
    assert str(file) in str(e.value) and "pretrain.stpes" in str(e.value) and "pretrain.steps" in str(e.value)
    file.write_text("finetune: {epochs: many}\n")
    with pytest.raises(ConfigError, match=r"finetune\.epochs: expected an integer"):
        load_benchmark_config(str(file), [])
    file.write_text("select: {cluster: {kk: 3}}\n")
    with pytest.raises(ConfigError, match=r"select\.cluster\.kk"):
        load_benchmark_config(str(file), [])
    file.write_text("name: ok\n")
    with pytest.raises(ConfigError, match=r"--set: unknown config key pretrain\.stpes"):
        load_benchmark_config(str(file), ["pretrain.stpes=3"])


def test_benchmark_old_list_form_works_with_a_warning(tmp_path: Path) -> None:
    from optidel.bench.command import load_benchmark_config

    old = tmp_path / "old.yaml"
    old.write_text("pretrain:\n  - steps=50\n  - mae.mask_ratio=0.6\nfinetune: [epochs=2]\n")
    new = tmp_path / "new.yaml"
    new.write_text("pretrain: {steps: 50, mae: {mask_ratio: 0.6}}\nfinetune: {epochs: 2}\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg_old, _ = load_benchmark_config(str(old), ["pretrain.lr=0.01"])
    messages = {str(w.message) for w in caught if w.category is ConfigDeprecationWarning}
    assert any("pretrain: a list of 'key=value' strings is deprecated" in m for m in messages)
    assert any("finetune: a list" in m for m in messages)
    cfg_new, _ = load_benchmark_config(str(new), ["pretrain.lr=0.01"])
    assert cfg_old == cfg_new  # and --set merges into the converted list instead of replacing it


def test_shipped_benchmarks_load_in_the_current_form() -> None:
    from optidel.bench.command import load_benchmark_config
    from optidel.bench.shipped import shipped_configs
    from optidel.downstream.config import FinetuneConfig
    from optidel.ssl.config import PretrainConfig

    assert shipped_configs()
    for name in shipped_configs():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no deprecated key or layout in what we ship
            cfg, _ = load_benchmark_config(name, [])
        assert cfg.pretrain and cfg.finetune
        pre = layer_config(PretrainConfig, config_file=cfg.pretrain)
        assert all(getattr(pre, k) == v for k, v in cfg.pretrain.items() if not isinstance(v, dict))
        layer_config(FinetuneConfig, config_file=cfg.finetune)


def test_demo_set_splits_demo_keys_from_grid_keys() -> None:
    from optidel.demo.command import demo_config

    cfg = demo_config(True, None, {}, ["seed=3", "seeds=[0,1]", "pretrain.steps=4"])
    assert cfg.seed == 3 and cfg.preset != "demo" and cfg.sets[-2:] == ("seeds=[0,1]", "pretrain.steps=4")
    with pytest.raises(ConfigError, match=r"--set: unknown config key pretrain\.stpes"):
        demo_config(False, None, {}, ["pretrain.stpes=4"])
