"""DICOM through pydicom: frames to 8-bit RGB the way a viewer shows them.

Per frame, in the order of the standard's grey pipeline (PS3.3 C.11):

1. **Modality LUT**: ``RescaleSlope`` / ``RescaleIntercept`` (also from the shared or per-frame functional groups of
   enhanced multi-frame objects) or a Modality LUT Sequence -> stored values become e.g. Hounsfield units.
2. **Window**: the option ``window`` (``optidel.data.sources.window``). ``auto`` uses the file's VOI LUT Sequence,
   else its first ``WindowCenter`` / ``WindowWidth`` (frame groups first), else the frame's min-max.
3. **MONOCHROME1** is inverted after windowing (so bright is dense, as with MONOCHROME2).

Colour frames (RGB, YBR_* are converted to RGB by pydicom, PALETTE COLOR through its LUT) skip the window.

A multi-frame object gives one item per frame (``FILE::dicom:frame=K``). Single-frame files of one
``SeriesInstanceUID`` in one folder form a series, read in slice order: by position along the slice normal
(``ImagePositionPatient`` . (row x column of ``ImageOrientationPatient``)), else ``InstanceNumber``, else file name.

Compressed transfer syntaxes are decoded by whatever pydicom has: Pillow for JPEG baseline and JPEG 2000 here, and
pylibjpeg / GDCM / pyjpegls when installed (``pip install 'optidel[dicom-codecs]'``). A file whose syntax has no
decoder is skipped with "needs optional decoder ..."; files without pixel data (DICOMDIR, structured reports, RT
plans) are skipped with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optidel.data.errors import ImageDecodeError
from optidel.data.sources.item import SkipFile
from optidel.data.sources.window import Window, apply_range, apply_window, parse_window

DICOM_EXTENSIONS = (".dcm", ".dicom", ".ima")
CODECS_HINT = "pip install 'optidel[dicom-codecs]'"


def looks_like_dicom(path: Path) -> bool:
    """A DICOM extension, or a file with the ``DICM`` preamble marker (extension-less archives)."""
    if path.suffix.lower() in DICOM_EXTENSIONS:
        return True
    if path.suffix:
        return False
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


@dataclass(frozen=True)
class DicomInfo:
    """What the header says about one file (read without the pixels)."""

    path: Path
    series_uid: str
    series_number: int | None
    n_frames: int
    rows: int
    columns: int
    instance_number: int | None
    position: float | None  # along the slice normal, mm


def missing_decoder(transfer_syntax) -> str | None:
    """None when pydicom can decode ``transfer_syntax`` here, else the "needs optional decoder ..." reason."""
    if not getattr(transfer_syntax, "is_compressed", False):
        return None
    from pydicom.pixels import get_decoder

    try:
        dec = get_decoder(transfer_syntax)
    except NotImplementedError:
        return f"needs optional decoder for {transfer_syntax.name} (none known to pydicom)"
    if dec.is_available:
        return None
    names = " or ".join(m.split(" - ")[0].strip() for m in dec.missing_dependencies) or "a pydicom plugin"
    return f"needs optional decoder {names} for {transfer_syntax.name} ({CODECS_HINT})"


def _position(ds) -> float | None:
    try:
        pos = np.asarray([float(v) for v in ds.ImagePositionPatient])
        ori = np.asarray([float(v) for v in ds.ImageOrientationPatient])
    except (AttributeError, TypeError, ValueError):
        return None
    if pos.size != 3 or ori.size != 6:
        return None
    return float(np.dot(pos, np.cross(ori[:3], ori[3:])))


def read_info(path: Path) -> DicomInfo:
    """Header of one file.

    Raises:
        SkipFile: not DICOM, no pixel data, or no decoder for its transfer syntax.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError as e:
        raise SkipFile(path, f"not a DICOM file ({e})") from e
    except (OSError, EOFError, ValueError, KeyError, TypeError) as e:
        raise SkipFile(path, f"unreadable DICOM header ({e})") from e
    if "DirectoryRecordSequence" in ds:
        raise SkipFile(path, "no pixel data (a DICOMDIR index)")
    if "Rows" not in ds or "Columns" not in ds:
        kind = getattr(ds, "Modality", "") or "object"
        raise SkipFile(path, f"no pixel data (a {kind} object, e.g. a structured report or plan)")
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    need = missing_decoder(ts) if ts is not None else None
    if need:
        raise SkipFile(path, need)
    inst = getattr(ds, "InstanceNumber", None)
    num = getattr(ds, "SeriesNumber", None)
    return DicomInfo(
        path,
        str(getattr(ds, "SeriesInstanceUID", "") or f"file:{path}"),
        int(num) if num not in (None, "") else None,
        int(getattr(ds, "NumberOfFrames", 1) or 1),
        int(ds.Rows),
        int(ds.Columns),
        int(inst) if inst not in (None, "") else None,
        _position(ds),
    )


def series_order(infos: list[DicomInfo]) -> list[DicomInfo]:
    """Single-frame files of one series in slice order (position, else instance number, else name)."""
    if all(i.position is not None for i in infos) and len({i.position for i in infos}) == len(infos):
        return sorted(infos, key=lambda i: (i.position, i.path.name))
    if all(i.instance_number is not None for i in infos):
        return sorted(infos, key=lambda i: (i.instance_number, i.path.name))
    return sorted(infos, key=lambda i: i.path.name)


def _frame_item(ds, frame: int, seq: str, attr: str):
    """``attr`` from the frame's functional group ``seq`` (per-frame first, then shared), else from the dataset."""
    for groups, idx in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        g = getattr(ds, groups, None)
        if g is not None and len(g) > idx and seq in g[idx] and len(g[idx][seq].value):
            item = g[idx][seq].value[0]
            if attr in item:
                return item[attr].value
    return getattr(ds, attr, None)


def _first(v) -> float | None:
    if v is None or v == "":
        return None
    try:
        return float(v[0]) if hasattr(v, "__len__") and not isinstance(v, str) else float(v)
    except (TypeError, ValueError, IndexError):
        return None


def _modality(arr: np.ndarray, ds, frame: int) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut

    slope = _first(_frame_item(ds, frame, "PixelValueTransformationSequence", "RescaleSlope"))
    intercept = _first(_frame_item(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept"))
    if slope is not None or intercept is not None:
        return arr.astype(np.float32) * np.float32(slope if slope is not None else 1.0) + np.float32(
            intercept or 0.0
        )
    if "ModalityLUTSequence" in ds:
        return apply_modality_lut(arr, ds).astype(np.float32)
    return arr.astype(np.float32)


def _auto_window(values: np.ndarray, ds, frame: int, stored: np.ndarray) -> np.ndarray:
    from pydicom.pixels import apply_voi_lut

    centre = _first(_frame_item(ds, frame, "FrameVOILUTSequence", "WindowCenter"))
    width = _first(_frame_item(ds, frame, "FrameVOILUTSequence", "WindowWidth"))
    if centre is not None and width is not None and width > 0:
        return apply_range(values, centre - width / 2.0, centre + width / 2.0)
    if "VOILUTSequence" in ds:
        out = apply_voi_lut(stored, ds, index=0, prefer_lut=True)
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2]) or 16
        return apply_range(out, 0.0, float(2**bits - 1))
    return apply_window(values, parse_window("minmax"))


def _read(path: Path, frame: int):
    import pydicom
    from pydicom.pixels import pixel_array

    ds = pydicom.Dataset()
    try:
        arr = pixel_array(path, ds_out=ds, index=frame)
    except (NotImplementedError, RuntimeError) as e:
        try:
            ts = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
        except Exception:  # the header was readable a moment ago; if not now, the generic reason below serves
            ts = None
        need = missing_decoder(ts) if ts is not None else None
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if need is None and ts is not None and ("not support" in str(e) or "Unable to decode" in str(e)):
            need = (
                f"needs optional decoder for {ts.name}: the installed plugins failed ({first}; {CODECS_HINT})"
            )
        raise ImageDecodeError(path, need or f"undecodable DICOM pixel data ({first})") from e
    except (OSError, EOFError, ValueError, KeyError, AttributeError, TypeError, IndexError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        kind = (
            "truncated or corrupt DICOM" if "end of" in msg.lower() or "EOF" in msg else "undecodable DICOM"
        )
        raise ImageDecodeError(path, f"{kind} ({msg})") from e
    return arr, ds


def decode_frame(path: Path, frame: int = 0, window: str | Window = "auto") -> tuple[np.ndarray, float]:
    """One frame as RGB and its foreground fraction (pixels above the window's low end, before any inversion).

    Returns:
        rgb: (H, W, 3) uint8; fraction: float in [0, 1].

    Raises:
        ImageDecodeError: naming the file, e.g. "needs optional decoder ..." or truncated data.
    """
    from pydicom.pixels import apply_color_lut

    win = parse_window(window) if isinstance(window, str) else window
    arr, ds = _read(path, frame)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        rgb = arr[..., :3]
        if rgb.dtype != np.uint8:
            bits = int(getattr(ds, "BitsStored", 8) or 8)
            rgb = apply_range(
                rgb, 0.0, float(2 ** max(bits, 8) - 1) if photometric != "PALETTE COLOR" else 65535.0
            )
        grey = rgb.max(axis=2)
        return np.ascontiguousarray(rgb), float(np.count_nonzero(grey)) / max(1, grey.size)
    if arr.ndim != 2:
        raise ImageDecodeError(path, f"frame {frame} has an unexpected shape {arr.shape}")
    values = _modality(arr, ds, frame)
    grey = _auto_window(values, ds, frame, arr) if win.kind == "auto" else apply_window(values, win)
    fraction = float(np.count_nonzero(grey)) / max(1, grey.size)
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return np.repeat(grey[..., None], 3, axis=2), fraction


def decode_labels(path: Path, frame: int = 0) -> np.ndarray:
    """A frame's stored values as labels (segmentation masks): (H, W) int64 (first sample of colour frames)."""
    arr, _ = _read(path, frame)
    if arr.ndim == 3:
        arr = arr[..., 0]
    return np.asarray(arr, dtype=np.int64)
