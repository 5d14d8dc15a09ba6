"""The presets shipped with optidel: benchmark grids in ``optidel/bench/presets/<name>.yaml``.

``optidel benchmark --config NAME`` takes a preset by name (``cpu-default``, ``gpu-paper`` ...); the demo's grids
(``demo``, ``demo-quick``) are presets too, run by ``optidel demo`` on the data it generates, and are not offered to
``optidel benchmark`` (their datasets exist only inside a demo folder).
"""

from __future__ import annotations

from pathlib import Path

from optidel.runtime.errors import OptidelError

PRESET_DIR = Path(__file__).resolve().parent / "presets"
DEMO_PREFIX = "demo"


class UnknownPreset(OptidelError, FileNotFoundError):
    """A config that is neither a file nor a shipped preset."""

    exit_code = 2


def presets() -> dict[str, Path]:
    """{name: path} of every shipped preset (benchmark and demo grids)."""
    return {p.stem: p for p in sorted(PRESET_DIR.glob("*.yaml"))}


def shipped_configs() -> dict[str, Path]:
    """{name: path} of the benchmark presets (the demo's own are left out)."""
    return {k: v for k, v in presets().items() if not k.startswith(DEMO_PREFIX)}


def preset_path(name: str) -> Path:
    """A preset's path by name (demo presets included)."""
    found = presets()
    if name not in found:
        raise UnknownPreset(f"{PRESET_DIR}: no preset {name!r} (shipped: {', '.join(found)})")
    return found[name]


def config_path(name_or_path: str) -> Path:
    """A benchmark preset's path by name, or the given file; a one-line error naming both when neither exists."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = shipped_configs()
    if name_or_path in shipped:
        return shipped[name_or_path]
    raise UnknownPreset(f"benchmark config {name_or_path!r} is neither a file nor one of {sorted(shipped)}")
