"""The pre-training checkpoint: everything an exact resume needs, written atomically, read with ``weights_only``.

``RUN/checkpoint.pt`` holds the model, AdamW moments, scheduler, step, RNG states and the sampler's state (with a
fingerprint of the pool, so a changed pool is refused); ``RUN/checkpoint.json`` says its step and is written after it.
"""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from optidel.models.encoder_io import state_dict_mismatch
from optidel.runtime.atomic import atomic_torch_save, atomic_write_json
from optidel.runtime.schedule import StepSampler
from optidel.ssl.result import PretrainError

__all__ = ["CHECKPOINT", "CHECKPOINT_INFO", "checkpoint_step", "load_checkpoint", "save_checkpoint"]

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_INFO = "checkpoint.json"
CHECKPOINT_FORMAT = 1


def checkpoint_step(out: Path) -> int | None:
    """The step of ``out``'s checkpoint (from ``checkpoint.json``), None when unknown."""
    info = out / CHECKPOINT_INFO
    with contextlib.suppress(OSError, ValueError, KeyError):
        return int(json.loads(info.read_text())["step"])
    return None


def _rng_state(device: torch.device) -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(
    out: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    sampler: StepSampler,
    data_fingerprint: str,
    train_time: float,
    device: torch.device,
) -> None:
    """Write ``checkpoint.pt`` (atomically), then ``checkpoint.json`` with its step."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_state(device),
        "sampler": {**sampler.state_dict(), "data_fingerprint": data_fingerprint},
        "train_time": train_time,
    }
    atomic_torch_save(state, out / CHECKPOINT)
    atomic_write_json(out / CHECKPOINT_INFO, {"step": step, "train_time_s": round(train_time, 2)})


def load_checkpoint(
    out: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    sampler: StepSampler,
    data_fingerprint: str,
    device: torch.device,
) -> tuple[int, float]:
    """Restore a run's state from ``checkpoint.pt``; returns (step, train_time).

    Raises:
        PretrainError: the checkpoint is unreadable or malformed (checked field by field: one line naming the file
            and what is wrong), or the data changed since it was written.
    """
    path = out / CHECKPOINT
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refusals, truncation, not a torch file: all mean "unusable"
        raise PretrainError(f"{path} cannot be read ({_first_line(e)}); {_RESTART}") from e
    state = _checked(state, path)
    saved = dict(state["sampler"])
    if saved.pop("data_fingerprint") != data_fingerprint or saved != sampler.state_dict():
        raise PretrainError(
            f"{path}: the pool changed since this checkpoint (now {sampler.n_images} images; it was trained on "
            f"{saved.get('n_images')}), so the run cannot be resumed exactly; use another --out"
        )
    problem = state_dict_mismatch(model.state_dict(), state["model"])
    if problem:
        raise PretrainError(f"{path}: its model weights do not fit this run's model ({problem}); {_RESTART}")
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"], device)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
        raise PretrainError(
            f"{path}: its optimizer, scheduler or RNG state is unusable ({_first_line(e)}); {_RESTART}"
        ) from e
    return int(state["step"]), float(state["train_time"])


_RESTART = f"delete it and {CHECKPOINT_INFO} to restart the run from step 0"
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format": int,
    "step": int,
    "model": dict,
    "optimizer": dict,
    "scheduler": dict,
    "rng": dict,
    "sampler": dict,
    "train_time": (int, float),
}
_NESTED = {
    "optimizer": ("state", "param_groups"),
    "rng": ("torch", "numpy", "python"),
    "sampler": ("data_fingerprint",),
}


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _checked(state: Any, path: Path) -> dict[str, Any]:
    """``state`` if it has every field of a checkpoint with the right type, else a one-line :class:`PretrainError`.

    ``weights_only=True`` already keeps code out; this keeps a foreign or hand-edited file (a list, a dict missing
    keys, a tensor where a number belongs) from failing deep inside the restore with a traceback.
    """
    if not isinstance(state, dict):
        kind = type(state).__name__
        raise PretrainError(f"{path}: not an optidel checkpoint (holds a {kind}, not a dict); {_RESTART}")
    missing = [k for k in _FIELDS if k not in state]
    if missing:
        raise PretrainError(f"{path}: not an optidel checkpoint (missing {', '.join(missing)}); {_RESTART}")
    if state["format"] != CHECKPOINT_FORMAT:
        raise PretrainError(f"{path}: unknown checkpoint format {state['format']!r}; {_RESTART}")
    typed = {k for k, t in _FIELDS.items() if isinstance(state[k], t) and not isinstance(state[k], bool)}
    wrong = [f"{k} is a {type(state[k]).__name__}" for k in _FIELDS if k not in typed]
    for k, subs in _NESTED.items():
        wrong += [f"{k} has no {sub!r}" for sub in subs if k in typed and sub not in state[k]]
    if "model" in typed:
        model = state["model"]
        bad = [repr(k) for k, v in model.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
        wrong += [f"model entries that are not name -> tensor ({', '.join(bad[:3])})"] if bad else []
    if wrong:
        raise PretrainError(f"{path}: a malformed checkpoint ({'; '.join(wrong)}); {_RESTART}")
    return state
