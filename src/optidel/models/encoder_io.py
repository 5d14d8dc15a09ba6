"""Save and load a pre-trained backbone as ``encoder.safetensors`` in timm's own key names.

The file's safetensors metadata records how to rebuild the model: ``arch`` (the timm name), ``timm_kwargs`` (JSON,
e.g. ``{"img_size": 64, "patch_size": 8, "num_classes": 0}``) and ``optidel_version``. Restoring it is one line::

    model = timm.create_model(arch, checkpoint_path="encoder.safetensors", **timm_kwargs)

or ``optidel.models.encoder_io.load_encoder("encoder.safetensors")``, which reads arch and kwargs from the metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import timm
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as st_save

from optidel import __version__
from optidel.runtime.atomic import atomic_write_bytes


def save_encoder(
    model: nn.Module, path: str | Path, arch: str, timm_kwargs: dict[str, Any], **meta: Any
) -> None:
    """Write the backbone's state dict (timm key names) with rebuild metadata, atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"arch": arch, "timm_kwargs": json.dumps(timm_kwargs), "optidel_version": __version__}
    metadata.update({k: json.dumps(v) for k, v in meta.items()})
    atomic_write_bytes(path, st_save(state, metadata=metadata))


def read_encoder_metadata(path: str | Path) -> dict[str, Any]:
    """``{"arch": str, "timm_kwargs": dict, ...}`` from an ``encoder.safetensors``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"encoder file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except Exception as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from e
    if "arch" not in raw:
        raise ValueError(
            f"{path}: no 'arch' in its metadata; not written by optidel (use timm.create_model directly)"
        )
    out: dict[str, Any] = {"arch": raw["arch"]}
    for k, v in raw.items():
        if k == "arch":
            continue
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def load_encoder(path: str | Path, **override_kwargs: Any) -> nn.Module:
    """Rebuild the timm backbone saved by :func:`save_encoder` and load its weights (strict).

    ``override_kwargs`` replace stored timm kwargs, e.g. ``img_size=128`` to run a ViT at another resolution (timm
    resamples the position embeddings when loading).
    """
    meta = read_encoder_metadata(path)
    stored = dict(meta.get("timm_kwargs") or {})
    kwargs = {**stored, **override_kwargs}
    if kwargs == stored:
        return timm.create_model(meta["arch"], pretrained=False, checkpoint_path=str(path), **kwargs)
    model = timm.create_model(meta["arch"], pretrained=False, **kwargs)
    state = load_file(str(path))
    if hasattr(model, "pos_embed"):  # ViT at another size: timm resamples the position embeddings
        from timm.models.vision_transformer import checkpoint_filter_fn

        state = checkpoint_filter_fn(state, model)
    model.load_state_dict(state, strict=True)
    return model
