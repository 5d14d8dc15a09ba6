"""benchmarks/pair_arms.py: post-hoc pairs from a benchmark's kept small files, as results.md pairs them."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEPT = ROOT / "benchmarks" / "cpu-endoscopy-runs"


def _pair_arms():
    spec = importlib.util.spec_from_file_location("pair_arms", ROOT / "benchmarks" / "pair_arms.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_registered_pair_matches_results_md(capsys):
    """optidel - random (MAE, 10% labels) printed from the kept files equals the line results.md has for it."""
    assert _pair_arms().main([str(KEPT), "optidel:random", "--label-fractions", "0.1"]) == 0
    printed = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| optidel - random |")]
    section = (KEPT / "results.md").read_text().split("## mae, label fraction 1")[0]
    expected = [ln for ln in section.splitlines() if ln.startswith("| optidel - random |")]
    assert printed and printed == expected
    assert re.search(r"\| 0\.05 \| 5 \|", printed[0])


def test_bad_pair_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        _pair_arms().main([str(KEPT), "optidel-semdedup"])
    assert exc.value.code == 2
    assert "expected A:B" in capsys.readouterr().err


def test_unknown_method_is_named(capsys):
    with pytest.raises(SystemExit) as exc:
        _pair_arms().main([str(KEPT), "optidel:semdedupp"])
    assert exc.value.code == 2
    assert "no method 'semdedupp'" in capsys.readouterr().err
