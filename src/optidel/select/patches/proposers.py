"""Factories: a patch proposer by kind, a patch embedder by spec.

Proposers (``--patches``):

- ``sam``: :class:`~optidel.select.patches.litemedsam.LiteMedSAMProposer` (LiteMedSAM, bundled weights, offline;
  embeds its own patches).
- ``sam-checkpoint``: :class:`~optidel.select.patches.sam_checkpoint.SamCheckpointProposer` (Meta's SAM with a
  checkpoint the user downloaded; embeds its own patches).
- ``grid``: :class:`~optidel.select.patches.grid.GridProposer` (multi-scale crops; no embeddings).

Embedder specs (``--embedder``):

- ``None``: the proposer's own embeddings; for a proposer without them (``grid``), LiteMedSAM features pooled in
  each box (:class:`~optidel.select.patches.embedders.LiteMedSAMEmbedder`).
- ``litemedsam``: that embedder, for any proposer.
- a path to an ``encoder.safetensors`` written by optidel (or a run directory holding one): its backbone on each crop.
- ``timm:ARCH``: a randomly initialised timm backbone (an ablation; no weights can be downloaded).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from optidel.select.patches.types import PatchEmbedder, PatchProposer

PROPOSER_KINDS: tuple[str, ...] = ("sam", "sam-checkpoint", "grid")
ENCODER_FILENAME = "encoder.safetensors"


def _proposer_class(kind: str) -> type:
    if kind == "sam":
        from optidel.select.patches.litemedsam import LiteMedSAMProposer

        return LiteMedSAMProposer
    if kind == "sam-checkpoint":
        from optidel.select.patches.sam_checkpoint import SamCheckpointProposer

        return SamCheckpointProposer
    if kind == "grid":
        from optidel.select.patches.grid import GridProposer

        return GridProposer
    raise ValueError(f"unknown patch proposer {kind!r}; choose one of {', '.join(PROPOSER_KINDS)}")


def _check_options(cls: type, what: str, options: dict[str, Any]) -> None:
    params = inspect.signature(cls.__init__).parameters
    accepted = [p for p in params if p != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"{what} does not take option(s) {', '.join(unknown)}; it takes: {', '.join(accepted)}"
        )


def make_proposer(kind: str, **options: Any) -> PatchProposer:
    """A patch proposer by kind (``sam``, ``sam-checkpoint``, ``grid``), options passed to its constructor.

    Raises:
        ValueError: unknown kind, or an option the proposer does not take (the message lists the ones it does).
        SamCheckpointMissingError: ``sam-checkpoint`` without an existing ``checkpoint`` file.
    """
    cls = _proposer_class(kind)
    _check_options(cls, f"the {kind!r} patch proposer", options)
    return cls(**options)


def make_embedder(
    spec: str | Path | None, proposer: PatchProposer | None = None, **options: Any
) -> PatchEmbedder | None:
    """The embedder a spec names, or None when the proposer's own embeddings are to be used.

    Args:
        spec: None, ``"litemedsam"``, ``"timm:ARCH"``, or a path to an ``encoder.safetensors`` (or to a directory
            holding one).
        proposer: the proposer in use (decides what ``spec=None`` means; a shared LiteMedSAM model is reused).
        options: constructor options of the embedder (e.g. ``img_size``, ``batch_size``, ``device``).

    Returns:
        an embedder, or None for ``spec=None`` with a proposer that embeds (``proposer.embed_dim`` is not None).

    Raises:
        ValueError: a spec of no known form, ``timm:`` without an architecture, an option the embedder does not take.
        FileNotFoundError: a path that does not exist, or a directory without ``encoder.safetensors``.
    """
    from optidel.select.patches.embedders import LiteMedSAMEmbedder, TimmPatchEmbedder

    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "none", "proposer")):
        if proposer is not None and getattr(proposer, "embed_dim", None) is not None:
            return None
        spec = "litemedsam"
    if isinstance(spec, str) and spec.lower() == "litemedsam":
        _check_options(LiteMedSAMEmbedder, "the litemedsam embedder", options)
        shared = getattr(proposer, "model", None)
        from optidel.models.litemedsam import LiteMedSAM

        if isinstance(shared, LiteMedSAM) and "model" not in options and "normalize" not in options:
            options = {**options, "model": shared}
        return LiteMedSAMEmbedder(**options)
    if isinstance(spec, str) and spec.startswith("timm:"):
        arch = spec[len("timm:") :].strip()
        if not arch:
            raise ValueError(
                "embedder spec 'timm:' needs an architecture name, e.g. 'timm:vit_tiny_patch16_224'"
            )
        _check_options(TimmPatchEmbedder, "the timm embedder", options)
        return TimmPatchEmbedder(arch=arch, **options)
    path = Path(spec)
    looks_like_path = (
        isinstance(spec, Path) or path.suffix == ".safetensors" or "/" in str(spec) or path.exists()
    )
    if not looks_like_path:
        raise ValueError(
            f"unknown embedder spec {str(spec)!r}: use nothing (the proposer's own embeddings), 'litemedsam', "
            f"'timm:ARCH', or the path of an optidel {ENCODER_FILENAME}"
        )
    from optidel.models.encoder_io import resolve_encoder_path

    path = resolve_encoder_path(path)  # a run folder must be finished (DONE); its encoder.safetensors
    _check_options(TimmPatchEmbedder, "the encoder embedder", options)
    return TimmPatchEmbedder(encoder_path=path, **options)
