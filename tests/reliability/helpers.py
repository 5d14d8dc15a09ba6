"""Helpers of the reliability tests: a hostile polyglot model file and a CLI runner that refuses tracebacks.

The polyglot (:func:`write_polyglot`) is one file that is at the same time a valid ``safetensors`` encoder (right
metadata, right keys and shapes) and a legacy ``torch.save`` tar archive whose ``storages`` member is a pickle that
creates a marker file when unpickled. ``torch.load(path, weights_only=False)`` (what timm < 1.0.26 did with a
``checkpoint_path`` not ending in ``.safetensors``) runs that payload; ``test_model_files.py::test_the_polyglot_is_a_real_attack``
proves it, so the refusals tested next to it are refusals of a real attack.

Layout (``N`` = the safetensors header length, a little-endian u64 in bytes 0-7)::

    [0, 512)      tar header of a junk member; bytes 8-511 are the start of the safetensors JSON header, the tar
                  fields (size, checksum, ...) sit inside a metadata string made of ASCII digits and spaces
    [512, 8 + N)  the rest of the JSON header = the junk member's data (8 + N is padded to a multiple of 512)
    [8 + N, ...)  the safetensors data section; its first tensor's bytes begin with the tar header of a member
                  named ``storages`` holding the pickle payload, then two zero blocks (end of archive)
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import torch

BLOCK = 512
_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64", torch.bool: "BOOL"}


class _TouchOnUnpickle:
    """Unpickling it calls ``open(marker, "w")``: the marker file appears if and only if the payload ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _tar_block(size: int) -> bytearray:
    """A 512-byte V7 tar header of ASCII digits and spaces only (JSON-string safe); checksum filled in later."""
    buf = bytearray(b" " * BLOCK)
    buf[100:108] = b"0000644 "
    buf[124:136] = f"{size:011o} ".encode()
    buf[156:157] = b"0"
    return buf


def write_polyglot(
    path: Path, marker: Path, state: dict[str, torch.Tensor], metadata: dict[str, str]
) -> Path:
    """Write a file that loads as the safetensors ``state`` + ``metadata`` and, via ``torch.load``, runs a payload.

    Args:
        path: the file to write (the issue's attack names it ``.pt``).
        marker: the file the payload creates when unpickled.
        state: tensors (float32 and the like) whose keys/shapes the file declares; the largest one's leading bytes
            are overwritten by the tar member carrying the payload (its values change, its shape does not).
        metadata: safetensors metadata (``arch``, ``timm_kwargs``, ...).
    """
    payload = pickle.dumps(_TouchOnUnpickle(marker), protocol=2)
    member = tarfile.TarInfo("storages")
    member.size = len(payload)
    tail = member.tobuf(format=tarfile.USTAR_FORMAT) + payload
    tail += b"\0" * (-len(tail) % BLOCK) + b"\0" * (2 * BLOCK)

    names = sorted(state, key=lambda k: -state[k].numel() * state[k].element_size())
    blobs = [state[k].contiguous().numpy().tobytes() for k in names]
    assert len(blobs[0]) >= len(tail), "the largest tensor is too small to carry the tar member"
    blobs[0] = tail + blobs[0][len(tail) :]
    entries, offset = {}, 0
    for k, blob in zip(names, blobs, strict=True):
        t = state[k]
        entries[k] = {
            "dtype": _DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        offset += len(blob)

    opening = '{"__metadata__":{"~":"'
    fill_start = 8 + len(opening)
    rest = '",' + json.dumps(metadata)[1:] + "," + json.dumps(entries)[1:]
    n = len(opening) + (BLOCK - fill_start) + len(rest)
    n += -(8 + n) % BLOCK  # the data section starts on a tar block boundary
    head = _tar_block(8 + n - BLOCK)  # the junk member's data: the rest of the JSON header
    header = (opening + head[fill_start:].decode() + rest).ljust(n).encode()
    raw = bytearray(struct.pack("<Q", n) + header)
    checksum = 256 + sum(raw[:148]) + sum(raw[156:BLOCK])  # the checksum field counts as 8 spaces
    raw[148:156] = f"{checksum:07o} ".encode()
    path.write_bytes(bytes(raw) + b"".join(blobs))
    return path


def polyglot_runs_payload(path: Path, marker: Path) -> bool:
    """Whether ``torch.load(path, weights_only=False)`` in a fresh interpreter creates ``marker`` (it should)."""
    code = "import sys, torch\ntry:\n    torch.load(sys.argv[1], weights_only=False)\nexcept Exception:\n    pass\n"
    subprocess.run([sys.executable, "-c", code, str(path)], env=cli_env(), timeout=120, check=True)
    return marker.exists()


def cli_env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", OPTIDEL_PROGRESS="0", HF_HUB_OFFLINE="1")


def run_cli(*args: str | Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``optidel ARGS`` in a fresh interpreter; its output (stdout + stderr) must never hold a Python traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "optidel.cli", *map(str, args)],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    assert "Traceback" not in proc.stdout, proc.stdout[-4000:]
    return proc


def one_line_error(output: str) -> str:
    """The ``error: ...`` message of a failed command, joined into one line (rich wraps long lines on a terminal)."""
    text = " ".join(output.split())
    assert "error:" in text, output[-2000:]
    return text[text.index("error:") :]


PRETRAIN_STEPS = 6


def pretrain_args(tiny_seg: Path, steps: int = PRETRAIN_STEPS) -> list[str]:
    """A tiny MAE pre-training (ViT-Tiny, 32 px, patch 8, batch 8, a checkpoint every 3 steps)."""
    return [
        "--data", f"{tiny_seg}:train",
        "--img-size", "32",
        "--patch-size", "8",
        "--batch-size", "8",
        "--steps", str(steps),
        "--seed", "3",
        "--checkpoint-every", "3",
        "--set", "mae.decoder_depth=1",
        "--set", "mae.decoder_dim=64",
    ]  # fmt: skip


def invoke(*args: str | Path):
    """``optidel ARGS`` in this process (typer's CliRunner): faster than a subprocess, and monkeypatches apply.

    An exception that escapes the command (what a user would see as a traceback) fails the test.
    """
    from typer.testing import CliRunner

    from optidel.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {type(result.exception).__name__}: {result.output[-2000:]}") from (
            result.exception
        )
    return result


def same_tensors(a: Path, b: Path) -> bool:
    """Whether two safetensors files hold the same keys and bit-identical tensors."""
    from safetensors.torch import load_file

    ta, tb = load_file(a), load_file(b)
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
