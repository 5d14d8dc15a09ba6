"""Save and load a pre-trained backbone as ``encoder.safetensors`` in timm's own key names.

The file's safetensors metadata records how to rebuild the model: ``arch`` (the timm name), ``timm_kwargs`` (JSON,
e.g. ``{"img_size": 64, "patch_size": 8, "num_classes": 0}``) and ``optidel_version``. Restore it with
``optidel.models.encoder_io.load_encoder("encoder.safetensors")``, which reads arch and kwargs from the metadata, or
by hand::

    model = timm.create_model(arch, pretrained=False, **timm_kwargs)
    model.load_state_dict(safetensors.torch.load_file("encoder.safetensors"), strict=True)

Weights never run code: a user's file is read only by ``safetensors`` (which parses a JSON header and raw tensor
bytes, nothing else) and loaded with a strict ``load_state_dict``. Its path is never handed to
``timm.create_model(checkpoint_path=...)`` or anything else that may fall back to ``torch.load`` / pickle for a name
not ending in ``.safetensors`` (timm < 1.0.26 did so with ``weights_only=False``): a file that is both valid
safetensors and a pickle is read as safetensors only. A file not named ``*.safetensors`` is refused outright, so that
no other tool is tempted to unpickle an encoder file optidel accepted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn as nn
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as st_save

from optidel import __version__
from optidel.models.backbone import BackboneError, check_patch_grid
from optidel.runtime.atomic import atomic_write_bytes
from optidel.runtime.errors import OptidelError
from optidel.runtime.run_dir import is_done

ENCODER_FILENAME = "encoder.safetensors"
_MAX_LISTED = 4  # keys named per category in a mismatch message (the count says how many more)


class EncoderFileError(OptidelError, ValueError):
    """An encoder file that cannot be used: not safetensors, metadata missing or malformed, wrong keys or shapes."""

    exit_code = 2


class EncoderFileNotFound(EncoderFileError, FileNotFoundError):
    """The encoder file (or the run folder's ``encoder.safetensors``) does not exist."""


def save_encoder(
    model: nn.Module, path: str | Path, arch: str, timm_kwargs: dict[str, Any], **meta: Any
) -> None:
    """Write the backbone's state dict (timm key names) with rebuild metadata, atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"arch": arch, "timm_kwargs": json.dumps(timm_kwargs), "optidel_version": __version__}
    metadata.update({k: json.dumps(v) for k, v in meta.items()})
    atomic_write_bytes(path, st_save(state, metadata=metadata))


def _parse_timm_kwargs(path: Path, raw: str | None) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        kwargs = json.loads(raw)
    except json.JSONDecodeError as e:
        raise EncoderFileError(
            f"{path}: metadata entry 'timm_kwargs' is not JSON ({e.msg} at character {e.pos}); it must be a JSON "
            'object of timm.create_model arguments, e.g. {"img_size": 64, "patch_size": 8, "num_classes": 0}'
        ) from None
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise EncoderFileError(
            f"{path}: metadata entry 'timm_kwargs' must be a JSON object of timm.create_model arguments, "
            f"got {type(kwargs).__name__}"
        )
    return kwargs


def read_encoder_metadata(path: str | Path) -> dict[str, Any]:
    """``{"arch": str, "timm_kwargs": dict, ...}`` from an ``encoder.safetensors`` (reads the header only).

    ``path`` may also be a finished pretrain run folder (see :func:`resolve_encoder_path`).

    Raises:
        EncoderFileNotFound: no such file (or run folder without one).
        EncoderFileError: not named ``*.safetensors``, not a safetensors file, no ``arch``, or ``timm_kwargs`` that
            is not a JSON object.
    """
    path = resolve_encoder_path(path)
    if path.suffix != ".safetensors":
        raise EncoderFileError(
            f"{path}: encoder files must be safetensors named *.safetensors; pickled weights (.pt, .pth, .bin) are "
            "never loaded because unpickling can run code (convert it with safetensors.torch.save_file)"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise EncoderFileError(f"{path}: not a readable safetensors file ({reason})") from None
    if "arch" not in raw:
        raise EncoderFileError(
            f"{path}: no 'arch' in its safetensors metadata; not an encoder written by optidel (load it with "
            "timm.create_model + safetensors.torch.load_file instead)"
        )
    out: dict[str, Any] = {
        "arch": raw["arch"],
        "timm_kwargs": _parse_timm_kwargs(path, raw.get("timm_kwargs")),
    }
    for k, v in raw.items():
        if k in out:
            continue
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _listed(keys: list[str]) -> str:
    more = f" and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def state_dict_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str | None:
    """One line listing missing keys, unexpected keys and shape mismatches; None when ``found`` fits ``expected``."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [
        f"{k} {tuple(found[k].shape)} vs {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(found))
        if tuple(found[k].shape) != tuple(expected[k].shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({_listed(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({_listed(unexpected)})")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches (file vs model: {_listed(shapes)})")
    return "; ".join(parts) or None


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors, by safetensors only (never pickle)."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:  # a truncated or corrupt file
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise EncoderFileError(f"{path}: cannot read its tensors as safetensors ({reason})") from None


def check_encoder(path: str | Path, **override_kwargs: Any) -> dict[str, Any]:
    """Check an encoder file without reading its weights (commands call it before they write anything).

    Checks: readable metadata, an architecture timm has, a patch grid that tiles the image size it will run at.

    Returns:
        the metadata (as :func:`read_encoder_metadata`), with ``timm_kwargs`` updated by ``override_kwargs``.

    Raises:
        EncoderFileNotFound, EncoderFileError: as :func:`load_encoder`, except for key and shape mismatches.
    """
    path = resolve_encoder_path(path)
    meta = read_encoder_metadata(path)
    arch = str(meta["arch"])
    kwargs = {**meta["timm_kwargs"], **override_kwargs}
    if not timm.is_model(arch):
        raise EncoderFileError(f"{path}: metadata names architecture {arch!r}, which this timm does not have")
    try:
        img_size, patch = int(kwargs.get("img_size", 224)), kwargs.get("patch_size")
        patch = None if patch is None else int(patch)
    except (TypeError, ValueError) as e:
        raise EncoderFileError(
            f"{path}: img_size and patch_size in timm_kwargs must be integers ({e})"
        ) from None
    try:
        check_patch_grid(arch, img_size, patch, what=str(path))
    except BackboneError as e:
        raise EncoderFileError(str(e)) from None
    return {**meta, "timm_kwargs": kwargs}


def _build(path: Path, arch: str, kwargs: dict[str, Any]) -> nn.Module:
    try:
        return timm.create_model(arch, pretrained=False, **kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError) as e:
        raise EncoderFileError(f"{path}: cannot build {arch} with timm_kwargs {kwargs} ({e})") from None


def load_encoder(path: str | Path, **override_kwargs: Any) -> nn.Module:
    """Rebuild the timm backbone saved by :func:`save_encoder` and load its weights (strict, safetensors only).

    ``override_kwargs`` replace stored timm kwargs, e.g. ``img_size=128`` to run a ViT at another resolution
    (timm's ``checkpoint_filter_fn`` resamples the position embeddings in memory). ``path`` may also be a finished
    pretrain run folder.

    Raises:
        EncoderFileNotFound: no such file.
        EncoderFileError: unreadable file or metadata, an image size the patch size does not divide, or weights whose
            keys or shapes do not fit the architecture (the one-line message lists them).
    """
    path = resolve_encoder_path(path)
    stored = read_encoder_metadata(path)["timm_kwargs"]
    meta = check_encoder(path, **override_kwargs)
    kwargs = meta["timm_kwargs"]
    model = _build(path, str(meta["arch"]), kwargs)
    state = _read_weights(path)
    if kwargs != stored and hasattr(model, "pos_embed"):
        from timm.models.vision_transformer import checkpoint_filter_fn

        try:  # operates on the in-memory dict only; resamples pos_embed to the new grid
            state = checkpoint_filter_fn(state, model)
        except (RuntimeError, ValueError, KeyError) as e:
            raise EncoderFileError(f"{path}: cannot adapt its weights to {override_kwargs} ({e})") from None
    problem = state_dict_mismatch(model.state_dict(), state)
    if problem:
        raise EncoderFileError(f"{path}: weights do not fit {meta['arch']} {kwargs}: {problem}")
    model.load_state_dict(state, strict=True)
    return model


def resolve_encoder_path(path: str | Path) -> Path:
    """An encoder file, or a finished pretrain run folder -> its ``encoder.safetensors``.

    Raises:
        EncoderFileNotFound: the path does not exist, or the folder holds no encoder file.
        EncoderFileError: the folder is an unfinished run (a ``config.yaml`` or ``checkpoint.pt`` but no ``DONE``):
            the message says how to resume it.
    """
    path = Path(path)
    if not path.is_dir():
        if not path.is_file():
            raise EncoderFileNotFound(f"encoder file {path} does not exist")
        return path
    looks_like_a_run = (path / "config.yaml").is_file() or (path / "checkpoint.pt").is_file()
    if looks_like_a_run and not is_done(path):
        raise EncoderFileError(
            f"{path} is an unfinished pretrain run (no DONE); finish it first: rerun its `optidel pretrain` command "
            f"with --resume (same options, --out {path}), then use its {ENCODER_FILENAME}"
        )
    if not (path / ENCODER_FILENAME).is_file():
        raise EncoderFileNotFound(f"run folder {path} holds no {ENCODER_FILENAME}")
    return path / ENCODER_FILENAME
