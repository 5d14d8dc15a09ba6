"""Patch embedders: features for patches whose proposer does not embed them (or to override its features).

- :class:`LiteMedSAMEmbedder`: LiteMedSAM's 256x64x64 image embedding, computed once per image, averaged inside each
  patch box (exact fractional cell coverage), L2-normalised (D = 256). The default for ``--patches grid``: the grid
  ablation then differs from ``--patches sam`` only in where the patches are, not in the features.
- :class:`TimmPatchEmbedder`: each patch cropped, resized to ``img_size`` and passed through a timm backbone's pooled
  features, L2-normalised. Either an optidel-pretrained encoder (``encoder.safetensors`` written by ``optidel ssl``,
  loaded with :func:`optidel.models.encoder_io.load_encoder`) or any timm architecture by name **with random weights**:
  no weights can be downloaded here, so ``timm:ARCH`` embeddings are an ablation (random features) only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from optidel.log import logger
from optidel.select.patches.types import ImagePatches

if TYPE_CHECKING:
    import torch.nn as nn

    from optidel.models.litemedsam import LiteMedSAM, Normalize


class LiteMedSAMEmbedder:
    """LiteMedSAM image embedding averaged inside each patch box (one encoder pass per image).

    Args:
        normalize: intensity normalisation before the encoder (see :func:`optidel.models.litemedsam.preprocess`).
        device: torch device.
        model: a loaded :class:`~optidel.models.litemedsam.LiteMedSAM` to share.
    """

    name = "litemedsam"
    dim = 256

    def __init__(
        self, normalize: Normalize = "minmax", device: str = "cpu", model: LiteMedSAM | None = None
    ) -> None:
        if model is None:
            from optidel.models.litemedsam import LiteMedSAM

            model = LiteMedSAM(device=device, normalize=normalize)
        self.model = model
        self.normalize = model.normalize

    def cache_key(self) -> dict[str, Any]:
        from optidel.models.litemedsam import checkpoint_sha256

        return {
            "embedder": "litemedsam-box-pool",
            "version": 1,
            "weights_sha256": checkpoint_sha256(),
            "normalize": self.normalize,
        }

    def embed(self, img: np.ndarray, patches: ImagePatches) -> np.ndarray:
        """img: (H, W, 3) uint8, its patches -> (P, 256) float32 unit-norm embeddings."""
        from optidel.models.litemedsam import box_weights, pool_features

        if len(patches) == 0:
            return np.zeros((0, self.dim), np.float32)
        enc = self.model.encode([img])[0]
        return pool_features(enc.features, box_weights(patches.boxes.astype(np.float32) / enc.scale))


class TimmPatchEmbedder:
    """Pooled features of a timm backbone on each patch crop.

    Args:
        arch: timm architecture (or optidel short name, e.g. ``vit_tiny``) with random initial weights; an ablation.
        encoder_path: an ``encoder.safetensors`` written by optidel (exclusive with ``arch``).
        img_size: crop side fed to the backbone (None: the encoder's training size, else 224).
        batch_size: crops per forward pass.
        device: torch device.
        seed: seed of the random initialisation (``arch`` only).

    Raises:
        ValueError: neither or both of ``arch`` and ``encoder_path``; an unknown architecture.
        FileNotFoundError: ``encoder_path`` does not exist.
    """

    def __init__(
        self,
        arch: str | None = None,
        encoder_path: str | Path | None = None,
        img_size: int | None = None,
        batch_size: int = 64,
        device: str = "cpu",
        seed: int = 0,
    ) -> None:
        import torch

        if (arch is None) == (encoder_path is None):
            raise ValueError("TimmPatchEmbedder needs exactly one of arch (random init) or encoder_path")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.arch: str
        self.encoder_path: Path | None = None
        self._file_meta: dict[str, Any] = {}
        if encoder_path is not None:
            from optidel.models.encoder_io import load_encoder, read_encoder_metadata

            self.encoder_path = Path(encoder_path).resolve()
            if not self.encoder_path.is_file():
                raise FileNotFoundError(f"encoder file {self.encoder_path} does not exist")
            meta = read_encoder_metadata(self.encoder_path)
            stored = int((meta.get("timm_kwargs") or {}).get("img_size") or 0)
            self.img_size = int(img_size or stored or 224)
            override = {"img_size": self.img_size} if stored and self.img_size != stored else {}
            model = load_encoder(self.encoder_path, **override)
            self.arch = str(meta["arch"])
            st = self.encoder_path.stat()
            self._file_meta = {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}
            self.name = f"encoder:{self.encoder_path.name}"
        else:
            from optidel.models.backbone import create_backbone

            assert arch is not None
            self.img_size = int(img_size or 224)
            torch.manual_seed(self.seed)
            model = create_backbone(arch, self.img_size)
            self.arch = arch
            self.name = f"timm:{arch}"
            logger.warning(
                "patch embeddings from a randomly initialised %s: an ablation only (no pretrained weights are "
                "available offline; pass an optidel encoder.safetensors for real features)",
                arch,
            )
        self.model: nn.Module = model.eval().to(self.device)
        self.dim = int(getattr(model, "num_features", 0) or self._probe_dim())

    def _probe_dim(self) -> int:
        import torch

        with torch.inference_mode():
            out = self.model(torch.zeros(1, 3, self.img_size, self.img_size, device=self.device))
        return int(out.reshape(1, -1).shape[1])

    def cache_key(self) -> dict[str, Any]:
        return {
            "embedder": "timm",
            "version": 1,
            "arch": self.arch,
            "encoder_path": None if self.encoder_path is None else str(self.encoder_path),
            "encoder_file": self._file_meta,
            "img_size": self.img_size,
            "seed": self.seed if self.encoder_path is None else None,
        }

    def crops(self, img: np.ndarray, patches: ImagePatches) -> np.ndarray:
        """(P, img_size, img_size, 3) uint8: each patch box cut out and stretched to the backbone's input."""
        import cv2

        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        img = np.ascontiguousarray(img[..., :3])
        s = self.img_size
        out = np.empty((len(patches), s, s, 3), np.uint8)
        for i, (x0, y0, x1, y1) in enumerate(patches.boxes.tolist()):
            crop = img[y0:y1, x0:x1]
            if crop.size == 0:
                raise ValueError(
                    f"patch box {(x0, y0, x1, y1)} is empty or outside the image {img.shape[:2]}"
                )
            interp = cv2.INTER_AREA if crop.shape[0] > s and crop.shape[1] > s else cv2.INTER_LINEAR
            out[i] = cv2.resize(crop, (s, s), interpolation=interp)
        return out

    def embed(self, img: np.ndarray, patches: ImagePatches) -> np.ndarray:
        """img: (H, W, 3) uint8, its patches -> (P, D) float32 unit-norm embeddings."""
        import torch

        from optidel.models.inputs import normalize, to_float

        if len(patches) == 0:
            return np.zeros((0, self.dim), np.float32)
        crops = self.crops(img, patches)
        outs = []
        with torch.inference_mode():
            for s in range(0, len(crops), self.batch_size):
                x = normalize(to_float(torch.from_numpy(crops[s : s + self.batch_size]).to(self.device)))
                f = self.model(x).reshape(x.shape[0], -1).float()
                outs.append(torch.nn.functional.normalize(f, dim=1).cpu())
        return torch.cat(outs).numpy().astype(np.float32)
