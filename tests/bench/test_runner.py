"""The benchmark runner on a tiny grid: every cell runs, a rerun resumes (from the small files alone), one writer per
folder, tables list every method; the plan counts and estimates grids with several SSL methods, ratios and fractions;
the shipped presets load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from optidel.bench.config import BenchmarkConfig
from optidel.bench.estimate import RATES, pretrain_seconds
from optidel.bench.grid import FULL, Arm
from optidel.bench.runner import BenchmarkRunner, BenchmarkSelectionError
from optidel.bench.shipped import config_path, preset_path, shipped_configs
from optidel.config import ConfigError, config_hash, resolve_config
from optidel.runtime.lock import RunFolderLocked, run_lock


def _tiny(tiny_seg: Path, **changes) -> BenchmarkConfig:
    values = dict(
        name="tiny",
        data_root=str(tiny_seg.parent),
        datasets=(tiny_seg.name,),
        methods=("full", "random", "prototypes", "noise"),
        ratios=(0.25,),
        seeds=(0,),
        select={
            "proposal": {
                "patches": "grid",
                "embedder": "timm:resnet18",
                "proposer_options": {"scales": [0.5]},
            },
            "report": {"enabled": False},
        },
        pretrain={"img_size": 32, "patch_size": 8, "batch_size": 4, "steps": 2, "checkpoint_every": 1},
        finetune={
            "img_size": 32,
            "epochs": 1,
            "min_steps": 1,
            "batch_size": 4,
            "threads": 1,
            "mode": "probe",
        },
        n_boot=50,
    )
    return BenchmarkConfig(**{**values, **changes})


def test_tiny_benchmark_runs_resumes_and_tabulates(
    tmp_path: Path, tiny_seg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _tiny(tiny_seg)
    out = tmp_path / "bench"
    runner = BenchmarkRunner(cfg, out)
    plan = runner.plan()
    assert (plan["pretrainings"], plan["selections"], plan["finetunings"]) == (4, 3, 5)  # + random init
    # a partial run of one chosen arm ("killed" after one fine-tuning)
    runner.run(stop_after=1, only=["random_*"])
    assert BenchmarkRunner(cfg, out).plan()["finetunings done"] == 1
    done = [c.arm.key for c in runner.finetune_cells() if runner.layout.cell_done(c)]
    assert done == ["random_r0.25_mae_s0"] and not (out / "pretrain" / "full_r1_mae_s0").exists()
    with run_lock(out, command="another optidel benchmark"), pytest.raises(RunFolderLocked, match="another"):
        BenchmarkRunner(cfg, out).run()  # one writer per benchmark folder
    results = BenchmarkRunner(cfg, out).run()
    text = results.read_text()
    for method in ("full", "random", "prototypes", "noise", "random-init", "mean-mask prior"):
        assert f"\n{method}," in text
    md = (out / "results.md").read_text()
    assert "| prototypes | 0.25 |" in md and "NormDEL" in md
    # the tables name the config they came from, as --plan, plan.json and the log do
    assert f"hash `{config_hash(cfg)}`" in md and plan["config hash"] == config_hash(cfg)
    assert json.loads((out / "plan.json").read_text())["config hash"] == config_hash(cfg)
    assert f"config hash {config_hash(cfg)}" in (out / "log.txt").read_text()
    full_row = next(line for line in md.splitlines() if line.startswith("| full |"))
    vs_init, vs_random, vs_full = (c.strip() for c in full_row.strip("|").split("|")[5:8])
    assert vs_init.startswith(("+", "-")) and "[" in vs_init  # paired with the random-init run of its seed
    assert vs_random == "-" and vs_full == "-"  # no random selection at ratio 1; full is itself
    assert "not decided" in md  # one seed: no spread, so the dataset cannot be called informative
    assert (out / "plots" / "miou_per_method.png").is_file()
    assert (out / "plots" / "miou_vs_ratio_mae_lf1.png").is_file()
    arms = runner.all_arms()
    sel = runner.select_config(next(a for a in arms if a.method == "random"))
    assert all(p.endswith(":train") for p in sel.pool)  # the pool is the train split only
    assert [a.method for a in arms] == [
        "random-init",
        "full",
        "random",
        "prototypes",
        "noise",
    ]  # references first
    noise = runner.layout.select_dir(next(a for a in arms if a.method == "noise")) / "images"
    assert sorted(p.name for p in noise.iterdir())[0] == "noise_00000.png"  # the control pre-trains on noise

    # a later session with only the small files of the fine-tunings: nothing is selected or pre-trained again
    for folder in ("select", "pretrain", "patch-cache"):
        shutil.rmtree(out / folder, ignore_errors=True)
    before = (out / "results.md").read_text()

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished cell needed its encoder")

    monkeypatch.setattr("optidel.ssl.train.pretrain", must_not_run)
    monkeypatch.setattr("optidel.select.pipeline.run_selection", must_not_run)
    resumed = BenchmarkRunner(cfg, out)
    assert resumed.plan()["finetunings done"] == 5 and resumed.plan()["pretrainings done"] == 4
    resumed.run()
    assert (out / "results.md").read_text() == before


def test_plan_counts_and_estimates_a_grid_of_ssl_methods_ratios_and_fractions(
    tmp_path: Path, tiny_seg: Path
) -> None:
    cfg = _tiny(
        tiny_seg,
        methods=("full", "random", "optidel"),
        ratios=(0.05, 0.2),
        ssl=("mae", "simclr"),
        seeds=(0, 1),
        label_fractions=(0.1, 1.0),
        select={"proposal": {"patches": "sam"}},
        pretrain={"img_size": 64, "patch_size": 8, "batch_size": 64, "steps": 500},
    )
    runner = BenchmarkRunner(cfg, tmp_path / "b")
    plan = runner.plan()
    # per seed and SSL method: full + 2 ratios x (random, optidel) = 5 pre-trainings; a selection serves both SSL
    # methods: 4 per seed; random init: one folder per architecture (ViT-Tiny for MAE, ResNet-18 for SimCLR)
    assert plan["pretrainings"] == 2 * 2 * 5 and plan["selections"] == 2 * 4 and plan["patch stage"] == 1
    assert plan["finetunings"] == (20 + 2 * 2) * 2  # x 2 label fractions (1 dataset)
    assert "h left of" in plan["estimated time, 2 CPU cores"] and "simclr" in plan["grid"]
    mae = runner.pretrain_config(Arm(FULL, 1.0, "mae", 0))
    simclr = runner.pretrain_config(Arm(FULL, 1.0, "simclr", 0))
    assert simclr.arch == "resnet18" and mae.arch == "vit_tiny"
    ratio = RATES["mae_vit_tiny8_64px_img_per_s"] / RATES["simclr_resnet18_64px_img_per_s"]
    assert pretrain_seconds(simclr) / pretrain_seconds(mae) == pytest.approx(ratio)
    # a finished fine-tuning (its DONE and metrics alone) counts as done and shortens the time left
    est = {e.stage: e for e in runner.stage_estimates()}
    cell = runner.finetune_cells()[0]
    d = runner.layout.finetune_dir(cell)
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps({"test": {"miou": 0.5}}))
    (d / "DONE").write_text("{}")
    after = {e.stage: e for e in runner.stage_estimates()}
    assert (
        after["finetunings"].done == 1 and after["finetunings"].seconds_left < est["finetunings"].seconds_left
    )


def test_plan_counts_the_patch_stage_only_for_methods_that_read_patches(
    tmp_path: Path, tiny_seg: Path
) -> None:
    """A grid of whole-image methods (full, random, the noise control) never runs SAM: no patch stage to plan."""
    images_only = BenchmarkRunner(_tiny(tiny_seg, methods=("full", "random", "noise")), tmp_path / "a")
    assert images_only.plan()["selections"] == 2 and images_only.plan()["patch stage"] == 0
    est = {e.stage: e for e in images_only.stage_estimates()}
    assert est["patch stage"].seconds_total == 0
    assert not images_only.needs_patches(Arm("noise", 0.25, "mae", 0))
    assert not images_only.needs_patches(Arm(FULL, 1.0, "mae", 0))
    with_patches = BenchmarkRunner(
        _tiny(tiny_seg, methods=("random", "optidel"), seeds=(0, 1)), tmp_path / "b"
    )
    assert with_patches.plan()["patch stage"] == 1 and with_patches.needs_patches(
        Arm("optidel", 0.25, "mae", 0)
    )
    # seed 0's selection finished, its small files restored on a machine without the patch cache: seed 1's
    # selection runs SAM again, so the patch stage is still to do, until the cache holds a finished one
    (d := with_patches.layout.select_dir(Arm("optidel", 0.25, "mae", 0))).mkdir(parents=True)
    (d / "DONE").write_text("{}")
    assert with_patches.plan()["selections done"] == 1 and with_patches.plan()["patch stage done"] == 0
    (with_patches.layout.patch_cache / ".patches-abc.partial").mkdir(parents=True)
    assert with_patches.plan()["patch stage done"] == 0
    (with_patches.layout.patch_cache / "patches-abc").mkdir()
    assert with_patches.plan()["patch stage done"] == 1


def test_workers_run_arms_in_processes_with_the_results_of_one_worker(
    tmp_path: Path, tiny_seg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--workers 2: every cell runs in worker processes, and with the same torch thread count (1) the results equal
    a one-worker run's exactly; arms sharing an unfinished selection folder never run together."""
    import torch

    cfg = _tiny(tiny_seg, methods=("full", "random"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = BenchmarkRunner(cfg, tmp_path / "serial").run()
    finally:
        torch.set_num_threads(before)
    monkeypatch.setattr("optidel.runtime.processes.cpu_cores", lambda: 2)  # 2 workers x 1 thread
    runner = BenchmarkRunner(cfg, tmp_path / "parallel")
    parallel = runner.run(workers=2)
    assert parallel.read_text() == serial.read_text().replace("/serial/", "/parallel/")
    log = (tmp_path / "parallel" / "log.txt").read_text()
    assert "3 arm(s) on 2 worker processes x 1 torch threads" in log
    assert "fine-tuning random_r0.25_mae_s0" in log  # the workers' lines reach the benchmark's log
    # arms that share a selection folder do not start together until it is finished; the rest keep queue order
    two = BenchmarkRunner(_tiny(tiny_seg, methods=("random", "full"), ssl=("mae", "simclr")), tmp_path / "x")
    arms = {a.key: a for a in two.all_arms()}
    mae, simclr, full = arms["random_r0.25_mae_s0"], arms["random_r0.25_simclr_s0"], arms["full_r1_mae_s0"]
    assert two.next_arm([simclr, full], [mae]) == full
    assert two.next_arm([simclr], [mae, full]) is None
    (two.layout.select_dir(mae) / "DONE").parent.mkdir(parents=True)
    (two.layout.select_dir(mae) / "DONE").write_text("{}")
    assert two.next_arm([simclr, full], [mae]) == simclr
    with pytest.raises(ValueError, match="workers must be at least 1"):
        runner.run(workers=0)


def test_a_score_with_variant_scores_patches_with_the_grids_full_mae_which_runs_first(
    tmp_path: Path, tiny_seg: Path
) -> None:
    """``score_with: full``: the variant's selection ranks by reconstruction error under the full-pool MAE of its
    seed, which is pre-trained first even when ``--only`` leaves it out; two workers never pre-train it twice."""
    import numpy as np
    import pyarrow.parquet as pq

    variants = {"recon": {"select": {"scoring": {"score": "reconstruction"}}, "score_with": "full"}}
    cfg = _tiny(
        tiny_seg,
        methods=("full", "random"),
        variants=variants,
        blocks=({"methods": ["optidel"], "variant": "recon"},),
    )
    runner = BenchmarkRunner(cfg, tmp_path / "b")
    arms = {a.key: a for a in runner.all_arms()}
    recon, full = arms["optidel+recon_r0.25_mae_s0"], arms["full_r1_mae_s0"]
    assert runner.scorer(recon) == full and runner.scorer(full) is None
    # the scoring arm is busy: the variant arm waits (and so does the scoring arm while the variant pre-trains it)
    assert runner.next_arm([recon, arms["random_r0.25_mae_s0"]], [full]) == arms["random_r0.25_mae_s0"]
    assert runner.next_arm([full], [recon]) is None
    runner.run(only=["optidel+recon_*"])
    assert (tmp_path / "b" / "pretrain" / "full_r1_mae_s0" / "DONE").is_file()
    sel = runner.select_config(recon)
    assert sel.scoring.score == "reconstruction" and sel.scoring.mae_run == str(
        runner.layout.pretrain_dir(full)
    )
    manifest = pq.read_table(runner.layout.select_dir(recon) / "manifest.parquet")
    scores = manifest.column("score_reconstruction").to_numpy()
    assert np.isfinite(scores).all() and scores.std() > 0
    # the scorer is pre-trained: nothing to wait for either way
    assert runner.next_arm([recon], [full]) == recon and runner.next_arm([full], [recon]) == full
    md = (tmp_path / "b" / "results.md").read_text()
    assert "| optidel+recon | 0.25 |" in md
    # the scoring arm must be in the grid for every seed the variant runs
    with pytest.raises(ConfigError, match=r"score_with: full needs the arm full \(mae, ratio 1, seed 1\)"):
        _tiny(
            tiny_seg,
            methods=("full",),
            variants=variants,
            blocks=({"methods": ["random"], "variant": "recon", "seeds": [1]},),
        ).validate()
    with pytest.raises(ConfigError, match="score_with: expected a method name"):
        _tiny(tiny_seg, variants={"recon": {"score_with": 3}})


INTERRUPT_SCRIPT = """
import sys
from pathlib import Path
from optidel.bench.config import BenchmarkConfig
from optidel.bench.runner import BenchmarkRunner

if __name__ == "__main__":
    data = Path(sys.argv[1])
    cfg = BenchmarkConfig(
        name="long", data_root=str(data.parent), datasets=(data.name,), methods=("full", "random"), ratios=(0.25,),
        seeds=(0,), select={"proposal": {"patches": "grid"}, "report": {"enabled": False}},
        pretrain={"img_size": 32, "patch_size": 8, "batch_size": 4, "steps": 100000},
        finetune={"img_size": 32, "epochs": 1, "min_steps": 1, "batch_size": 4, "mode": "probe"},
    )
    BenchmarkRunner(cfg, sys.argv[2]).run(workers=2)
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads child processes from /proc (Linux)")
def test_ctrl_c_stops_the_workers_at_once(tmp_path: Path, tiny_seg: Path) -> None:
    """Ctrl-C during a --workers run (the workers in 100,000-step pre-trainings) ends the run and its workers in
    seconds, not after their arms."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script, out = tmp_path / "long.py", tmp_path / "bench"
    script.write_text(INTERRUPT_SCRIPT)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore", OPTIDEL_PROGRESS="0")
    proc = subprocess.Popen([sys.executable, str(script), str(tiny_seg), str(out)], env=env)
    children: list[int] = []
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not list(out.glob("pretrain/*/log.txt")):
            time.sleep(0.5)
        children = [
            int(c) for f in Path(f"/proc/{proc.pid}/task").glob("*/children") for c in f.read_text().split()
        ]
        assert list(out.glob("pretrain/*/log.txt")) and len(children) >= 2, "the workers did not start"
        t0 = time.time()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) != 0
        while time.time() < t0 + 30 and any(Path(f"/proc/{c}").exists() for c in children):
            time.sleep(0.2)
        alive = [
            c
            for c in children
            if Path(f"/proc/{c}/status").exists() and "zombie" not in Path(f"/proc/{c}/status").read_text()
        ]
        assert not alive, "worker processes outlived Ctrl-C"
        assert time.time() - t0 < 60
        assert not (out / "pretrain" / "full_r1_mae_s0" / "DONE").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        for c in children:
            if Path(f"/proc/{c}").exists():
                os.kill(c, signal.SIGKILL)


def test_only_schedules_arms_by_pattern_in_the_order_given(tmp_path: Path, tiny_seg: Path) -> None:
    runner = BenchmarkRunner(_tiny(tiny_seg, seeds=(0, 1)), tmp_path / "b")
    keys = [a.key for a in runner.arms_to_run(["prototypes_*_s1", "*_s0"])]
    assert keys[0] == "prototypes_r0.25_mae_s1"  # the first pattern first, then the second in run order
    assert keys[1:] == [a.key for a in runner.all_arms() if a.seed == 0]
    assert runner.arms_to_run([]) == runner.all_arms()
    plan = runner.plan(["full_*"])
    assert plan["--only"].endswith("full_r1_mae_s0, full_r1_mae_s1")
    assert plan["arms unfinished (run order)"].startswith("random-init_vit_tiny_s0, full_r1_mae_s0")
    with pytest.raises(
        BenchmarkSelectionError, match=r"--only 'optidle\*' matches no arm .* random-init_vit_tiny_s0"
    ):
        runner.arms_to_run(["optidle*"])


def test_presets_resolve() -> None:
    assert {"cpu-default", "gpu-paper"} <= set(shipped_configs())
    assert not any(
        name.startswith("demo") for name in shipped_configs()
    )  # the demo's grids need the demo's data
    for name in ("cpu-default", "gpu-paper", "cpu-endoscopy"):
        resolve_config(BenchmarkConfig, config_path(name)).validate()
    for name in ("demo", "demo-quick"):
        resolve_config(BenchmarkConfig, preset_path(name)).validate()
    with pytest.raises(FileNotFoundError, match="neither a file nor one of"):
        config_path("nope")


def test_benchmark_command_only_plans_and_names_a_bad_pattern(tmp_path: Path, tiny_seg: Path) -> None:
    from typer.testing import CliRunner

    from optidel.cli import app
    from optidel.config import save_config

    cfg_file = tmp_path / "tiny.yaml"
    save_config(_tiny(tiny_seg), cfg_file)
    base = ["benchmark", "--config", str(cfg_file), "--out", str(tmp_path / "b"), "--plan"]
    r = CliRunner().invoke(app, [*base, "--only", "prototypes_*"], terminal_width=400)
    assert r.exit_code == 0 and "1 arms, 1 unfinished" in r.output and "prototypes_r0.25_mae_s0" in r.output
    r = CliRunner().invoke(app, [*base, "--only", "nope*"], terminal_width=400)
    errors = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert r.exit_code == 2 and len(errors) == 1 and "--only 'nope*' matches no arm" in errors[0]
    assert "Traceback" not in r.output
    assert not (tmp_path / "b" / "select").exists()  # a plan runs nothing
    # --tables-only writes the tables from what has finished (nothing here) and the grid they were written with
    r = CliRunner().invoke(app, [*base[:-1], "--tables-only"], terminal_width=400)
    assert r.exit_code == 0 and "tables written to" in r.output, r.output
    assert resolve_config(BenchmarkConfig, tmp_path / "b" / "config.yaml") == _tiny(tiny_seg)
    assert (tmp_path / "b" / "results.md").is_file() and not (tmp_path / "b" / "select").exists()
