"""The benchmark configs shipped with optidel (``src/optidel/configs/benchmark-*.yaml``)."""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def shipped_configs() -> dict[str, Path]:
    """{name: path} of the shipped ``benchmark-<name>.yaml`` files."""
    return {p.stem.removeprefix("benchmark-"): p for p in sorted(CONFIG_DIR.glob("benchmark-*.yaml"))}


def config_path(name_or_path: str) -> Path:
    """A shipped config's path by name, or the given file; a clear error when neither exists."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = shipped_configs()
    if name_or_path in shipped:
        return shipped[name_or_path]
    raise FileNotFoundError(
        f"benchmark config {name_or_path!r} is neither a file nor one of {sorted(shipped)}"
    )
