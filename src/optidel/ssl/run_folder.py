"""What to do with a pre-training run folder: start fresh, resume, or leave a finished run alone.

A finished folder (``DONE``) with the same result-defining config is left as it is; a folder holding a different
config, or an unfinished run without ``resume``, is a :class:`~optidel.ssl.result.PretrainError` that says what to do.
Fields that do not change results (``EXECUTION_FIELDS``: workers, strict, checkpoint_every, log_every, device) may
differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optidel.config import ConfigError, load_config, to_dict
from optidel.data.pool import PoolSource, parse_source
from optidel.models.backbone import is_vit
from optidel.runtime.lock import LOCK_NAME
from optidel.runtime.run_dir import is_done
from optidel.ssl.checkpoint import CHECKPOINT, checkpoint_step
from optidel.ssl.config import EXECUTION_FIELDS, PretrainConfig
from optidel.ssl.result import PretrainError

__all__ = ["config_differences", "inspect_run_dir"]


def _normalized(cfg: PretrainConfig) -> dict[str, Any]:
    """The result-defining part of a config: data sources resolved to absolute paths; the other method's section,
    and the patch size of a CNN, left out."""
    cfg = cfg.resolved()
    d = to_dict(cfg)
    sources = [parse_source(s) for s in d["data"]]
    d["data"] = [str(PoolSource(s.path.expanduser().resolve(), s.split)) for s in sources]
    unused = set(EXECUTION_FIELDS) | {"simclr" if cfg.ssl == "mae" else "mae"}
    if not is_vit(cfg.arch):
        unused.add("patch_size")
    return {k: v for k, v in d.items() if k not in unused}


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def config_differences(saved: PretrainConfig, new: PretrainConfig) -> list[str]:
    """``["lr: 0.001 (in the folder) vs 0.002 (now)", ...]`` over the result-defining fields."""
    a, b = _flatten(_normalized(saved)), _flatten(_normalized(new))
    return [
        f"{k}: {a.get(k)!r} (in the folder) vs {b.get(k)!r} (now)"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    ]


def inspect_run_dir(out: Path, cfg: PretrainConfig, resume: bool) -> str:
    """Decide what to do with ``out``: ``"fresh"`` (start at step 0), ``"resume"`` (from its checkpoint) or
    ``"done"`` (a finished run with this config).

    Raises:
        PretrainError: ``out`` is not a run folder, holds a different config, or holds an unfinished run and
            ``resume`` is False.
    """
    if not out.exists():
        return "fresh"
    if not out.is_dir():
        raise PretrainError(f"--out {out} exists and is not a folder")
    cfg_path = out / "config.yaml"
    if not cfg_path.is_file():
        if any(p.name != LOCK_NAME for p in out.iterdir()):  # the run's own lock file does not count
            raise PretrainError(
                f"{out} is not empty and holds no config.yaml (not a pretrain run); choose another --out"
            )
        return "fresh"
    try:
        saved = load_config(PretrainConfig, cfg_path)
    except ConfigError as e:
        raise PretrainError(
            f"{cfg_path} cannot be read as a pretrain config ({e}); choose another --out"
        ) from e
    diffs = config_differences(saved, cfg)
    has_ckpt = (out / CHECKPOINT).is_file()
    if is_done(out):
        if diffs:
            raise PretrainError(
                f"{out} holds a finished run with a different config ({'; '.join(diffs)}); "
                "choose another --out, or delete that folder to redo it"
            )
        return "done"
    if diffs:
        what = "resume it with" if resume else "reuse it for"
        raise PretrainError(
            f"{out} holds an unfinished run with a different config ({'; '.join(diffs)}); cannot {what} this "
            "config: choose another --out, or rerun with the folder's config.yaml"
        )
    if has_ckpt and not resume:
        step = checkpoint_step(out)
        at = f" at step {step}" if step is not None else ""
        raise PretrainError(
            f"{out} holds an unfinished run (checkpoint{at}); pass --resume to continue it, or choose another --out"
        )
    return "resume" if has_ckpt else "fresh"
