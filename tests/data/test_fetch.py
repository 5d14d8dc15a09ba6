"""`optidel data fetch` offline: a local HTTP server on 127.0.0.1 serves archives that the tests build.

Covers download + sha256 verification, resume, safe extraction (``..``, absolute paths, links, devices), conversion of
each archive layout to the standard layout, the already-complete / --force rules, manual datasets, and the CLI.
"""

from __future__ import annotations

import hashlib
import io
import stat
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from optidel.data.commands_fetch import fetch, list_datasets
from optidel.data.convert import ConversionError, packaged_test_ids
from optidel.data.fetch import (
    MARKER,
    FetchError,
    ManualDownloadRequired,
    UnsafeArchiveError,
    archive_kind,
    check_standard_layout,
    download,
    fetch_dataset,
    safe_extract,
)

# ---------------------------------------------------------------------------------------------------------------
# a bounded local HTTP server


@dataclass
class _Served:
    files: dict[str, bytes] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    range_headers: list[str] = field(default_factory=list)
    truncate_once: dict[str, int] = field(default_factory=dict)  # path -> bytes to send before dropping


class _Handler(BaseHTTPRequestHandler):
    served: _Served
    timeout = 5

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        s = self.served
        data = s.files.get(self.path)
        s.hits[self.path] = s.hits.get(self.path, 0) + 1
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng:
            s.range_headers.append(rng)
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        cut = s.truncate_once.pop(self.path, None)
        self.wfile.write(body if cut is None else body[:cut])
        if cut is not None:
            self.close_connection = True


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, _Served]]:
    served = _Served()
    handler = type("Handler", (_Handler,), {"served": served})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def serve(server: tuple[str, _Served], path: str, data: bytes) -> str:
    base, served = server
    served.files[path] = data
    return base + path


# ---------------------------------------------------------------------------------------------------------------
# tiny archives


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _image(seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _mask(size: int = 16) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    m[4:12, 4:12] = 255
    return m


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar_gz(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


KVASIR_TRAIN_IDS = ["trainaaaa", "trainbbbb", "traincccc"]


@pytest.fixture(scope="module")
def kvasir_entries() -> dict[str, bytes]:
    """A Kvasir-SEG-like archive: the 100 packaged test ids + 3 train ids, tiny JPEGs, and the box file."""
    ids = packaged_test_ids("kvasir-seg") + KVASIR_TRAIN_IDS
    mask = _jpg(np.stack([_mask()] * 3, axis=2))
    entries: dict[str, bytes] = {"Kvasir-SEG/": b""}
    for i, sample_id in enumerate(ids):
        entries[f"Kvasir-SEG/images/{sample_id}.jpg"] = _jpg(_image(i))
        entries[f"Kvasir-SEG/masks/{sample_id}.jpg"] = mask
    entries["Kvasir-SEG/kavsir_bboxes.json"] = b"{}"
    entries["__MACOSX/Kvasir-SEG/images/._junk.jpg"] = b"not an image"
    return entries


@pytest.fixture(scope="module")
def kvasir_zip(kvasir_entries: dict[str, bytes]) -> bytes:
    return _zip(kvasir_entries)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _leftovers(root: Path) -> list[str]:
    """Everything under root except the finished dataset folders (temp dirs, downloads, stray files)."""
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".")) if root.exists() else []


# ---------------------------------------------------------------------------------------------------------------
# download, checksum, conversion


def test_fetch_zip_to_standard_layout(server, kvasir_zip: bytes, tmp_path: Path) -> None:
    url = serve(server, "/ok/kvasir-seg.zip", kvasir_zip)
    res = fetch_dataset("kvasir-seg", tmp_path, url=url, sha256=_sha(kvasir_zip), progress=False)

    out = tmp_path / "kvasir-seg"
    assert res.path == out and not res.already_present
    assert res.sha256 == _sha(kvasir_zip) and res.sha256_verified
    assert res.n_pairs == 103 and (res.n_train, res.n_test) == (3, 100)
    assert check_standard_layout(out) == 103
    assert (out / MARKER).is_file() and (out / "kavsir_bboxes.json").read_bytes() == b"{}"
    # images are copied byte for byte; the mask reads back with the lesion where it was drawn
    some_id = KVASIR_TRAIN_IDS[0]
    assert (out / "images" / f"{some_id}.jpg").read_bytes() == _jpg(_image(100))
    mask = np.asarray(Image.open(out / "masks" / f"{some_id}.jpg").convert("L")) > 127
    assert mask[4:12, 4:12].all() and mask.sum() == 64
    split = dict(line.split(",") for line in (out / "splits.csv").read_text().splitlines()[1:])
    assert split[some_id] == "train" and split[packaged_test_ids("kvasir-seg")[0]] == "test"
    assert _leftovers(tmp_path) == []  # no temp folder, and the download was removed


def test_unknown_checksum_warns_and_reports_it(server, kvasir_zip: bytes, tmp_path: Path, caplog) -> None:
    url = serve(server, "/nosha/kvasir-seg.zip", kvasir_zip)
    with caplog.at_level("WARNING", logger="optidel"):
        res = fetch_dataset("kvasir-seg", tmp_path, url=url, progress=False, keep_archive=True)
    assert res.sha256 == _sha(kvasir_zip) and not res.sha256_verified
    assert any(_sha(kvasir_zip) in r.getMessage() for r in caplog.records)
    assert (tmp_path / ".downloads" / "kvasir-seg.zip").read_bytes() == kvasir_zip  # --keep-archive


def test_wrong_checksum_raises_and_leaves_nothing(server, kvasir_zip: bytes, tmp_path: Path) -> None:
    url = serve(server, "/bad/kvasir-seg.zip", kvasir_zip)
    with pytest.raises(FetchError) as info:
        fetch_dataset("kvasir-seg", tmp_path, url=url, sha256="0" * 64, progress=False)
    msg = str(info.value)
    assert "kvasir-seg.zip" in msg and "0" * 64 in msg and _sha(kvasir_zip) in msg
    assert list(tmp_path.iterdir()) == []


def test_wrong_checksum_never_touches_a_good_dataset(server, kvasir_zip: bytes, tmp_path: Path) -> None:
    url = serve(server, "/good-then-bad/kvasir-seg.zip", kvasir_zip)
    fetch_dataset("kvasir-seg", tmp_path, url=url, progress=False)
    marker = (tmp_path / "kvasir-seg" / MARKER).read_bytes()
    with pytest.raises(FetchError, match="sha256 mismatch"):
        fetch_dataset("kvasir-seg", tmp_path, url=url, sha256="1" * 64, force=True, progress=False)
    assert (tmp_path / "kvasir-seg" / MARKER).read_bytes() == marker
    assert check_standard_layout(tmp_path / "kvasir-seg") == 103
    assert _leftovers(tmp_path) == []


def test_complete_target_left_alone_and_force_rebuilds(server, kvasir_zip: bytes, tmp_path: Path) -> None:
    url = serve(server, "/twice/kvasir-seg.zip", kvasir_zip)
    _, served = server
    fetch_dataset("kvasir-seg", tmp_path, url=url, progress=False)
    (tmp_path / "kvasir-seg" / "user-note.txt").write_text("mine")
    again = fetch_dataset("kvasir-seg", tmp_path, url=url, progress=False)
    assert again.already_present and served.hits["/twice/kvasir-seg.zip"] == 1
    assert (tmp_path / "kvasir-seg" / "user-note.txt").exists()
    rebuilt = fetch_dataset("kvasir-seg", tmp_path, url=url, force=True, progress=False)
    assert not rebuilt.already_present and served.hits["/twice/kvasir-seg.zip"] == 2
    assert not (tmp_path / "kvasir-seg" / "user-note.txt").exists()  # a fresh folder was swapped in
    assert _leftovers(tmp_path) == []


def test_incomplete_existing_folder_is_refused(server, kvasir_zip: bytes, tmp_path: Path) -> None:
    (tmp_path / "kvasir-seg" / "images").mkdir(parents=True)
    (tmp_path / "kvasir-seg" / "images" / "x.png").write_bytes(_png(_mask()))
    url = serve(server, "/refused/kvasir-seg.zip", kvasir_zip)
    with pytest.raises(FetchError, match="--force"):
        fetch_dataset("kvasir-seg", tmp_path, url=url, progress=False)
    assert server[1].hits.get("/refused/kvasir-seg.zip") is None  # refused before downloading
    assert (tmp_path / "kvasir-seg" / "images" / "x.png").exists()


def test_layout_error_keeps_the_download_for_the_next_run(server, tmp_path: Path) -> None:
    data = _zip({"something-else/readme.txt": b"no images here"})
    url = serve(server, "/layout/kvasir-seg.zip", data)
    for _ in range(2):
        with pytest.raises(ConversionError, match="kept at"):
            fetch_dataset("kvasir-seg", tmp_path, url=url, progress=False)
    assert server[1].hits["/layout/kvasir-seg.zip"] == 1  # the second run reused the kept download
    assert not (tmp_path / "kvasir-seg").exists() and _leftovers(tmp_path) == [".downloads"]


def test_tar_gz_variant(server, kvasir_entries: dict[str, bytes], tmp_path: Path) -> None:
    data = _tar_gz({k: v for k, v in kvasir_entries.items() if not k.endswith("/")})
    url = serve(server, "/tgz/kvasir-seg.tar.gz", data)
    res = fetch_dataset("kvasir-seg", tmp_path, url=url, sha256=_sha(data), progress=False)
    assert res.n_pairs == 103 and res.sha256_verified
    assert check_standard_layout(tmp_path / "kvasir-seg") == 103


def test_download_resumes_after_a_dropped_connection(server, tmp_path: Path) -> None:
    data = bytes(range(256)) * 400  # 100 KiB
    url = serve(server, "/resume/blob.bin", data)
    server[1].truncate_once["/resume/blob.bin"] = 30_000
    dest = tmp_path / "blob.bin"
    with pytest.raises(FetchError, match="resume"):
        download(url, dest, expected_sha256=_sha(data), progress=False, timeout=10)
    parts = list(tmp_path.glob("blob.bin.*.part"))
    assert len(parts) == 1 and parts[0].stat().st_size == 30_000 and not dest.exists()
    assert download(url, dest, expected_sha256=_sha(data), progress=False, timeout=10) == _sha(data)
    assert dest.read_bytes() == data and "bytes=30000-" in server[1].range_headers
    assert not list(tmp_path.glob("*.part"))


def test_http_error_names_the_url(server, tmp_path: Path) -> None:
    base, _ = server
    with pytest.raises(FetchError, match="404"):
        download(base + "/missing.zip", tmp_path / "x.zip", progress=False, timeout=10)


# ---------------------------------------------------------------------------------------------------------------
# unsafe archives


def _zip_with_symlink() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("Kvasir-SEG/images/a.jpg", _jpg(_image(0)))
        link = zipfile.ZipInfo("Kvasir-SEG/evil-link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "../../../../etc/passwd")
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_malicious_zip_is_rejected(kind: str, server, tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside" / "evil.txt"
    entries = {"Kvasir-SEG/images/a.jpg": _jpg(_image(0)), "Kvasir-SEG/masks/a.jpg": _jpg(_image(1))}
    if kind == "dotdot":
        bad = "../evil.txt"
        data = _zip({**entries, bad: b"pwned"})
    elif kind == "absolute":
        bad = str(outside)
        data = _zip({**entries, bad: b"pwned"})
    else:
        bad = "Kvasir-SEG/evil-link"
        data = _zip_with_symlink()
    url = serve(server, f"/evil-{kind}/kvasir-seg.zip", data)
    with pytest.raises(UnsafeArchiveError) as info:
        fetch_dataset("kvasir-seg", root, url=url, progress=False)
    assert repr(bad) in str(info.value)
    assert not (root / "kvasir-seg").exists()
    assert not outside.exists() and not (tmp_path / "evil.txt").exists()
    assert not [p for p in tmp_path.rglob("*") if "evil" in p.name or p.is_symlink()]
    assert _leftovers(root) == []  # temp folder and the bad download are gone


def _tar_member(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.mark.parametrize(
    ("member", "why"),
    [
        (_tar_member("../evil.txt", tarfile.REGTYPE), "escapes"),
        (_tar_member("/abs/evil.txt", tarfile.REGTYPE), "absolute"),
        (_tar_member("d/evil-link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
        (_tar_member("d/evil-hard", tarfile.LNKTYPE, "d/ok.txt"), "hard link"),
        (_tar_member("d/evil-dev", tarfile.CHRTYPE), "device"),
        (_tar_member("d/evil-fifo", tarfile.FIFOTYPE), "device file or fifo"),
    ],
    ids=["dotdot", "absolute", "symlink", "hardlink", "chardev", "fifo"],
)
def test_malicious_tar_is_rejected_before_writing(member: tarfile.TarInfo, why: str, tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        ok = tarfile.TarInfo("d/ok.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        tf.addfile(member, io.BytesIO(b"") if member.isreg() else None)
    target = tmp_path / "target"
    with pytest.raises(UnsafeArchiveError, match=why) as info:
        safe_extract(archive, target)
    assert repr(member.name) in str(info.value)
    assert not target.exists()  # checked before anything was written
    assert not (tmp_path / "evil.txt").exists()


def test_safe_extract_writes_regular_files(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip({"top/": b"", "top/sub/x.txt": b"x", "./top/y.txt": b"y"}))
    assert safe_extract(archive, tmp_path / "t") == 2
    assert (tmp_path / "t/top/sub/x.txt").read_bytes() == b"x" and (
        tmp_path / "t/top/y.txt"
    ).read_bytes() == b"y"


def test_rar_is_explained_not_extracted(tmp_path: Path) -> None:
    rar = tmp_path / "CVC-ClinicDB.rar"
    rar.write_bytes(b"Rar!\x1a\x07\x00" + b"\x00" * 32)
    with pytest.raises(FetchError, match="extract it"):
        archive_kind(rar)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello world")
    with pytest.raises(FetchError, match="not a zip or tar"):
        archive_kind(junk)


# ---------------------------------------------------------------------------------------------------------------
# the other converters, through --archive (file or folder) or a served archive


def test_manual_dataset_explains_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(ManualDownloadRequired) as info:
        fetch_dataset("drive", tmp_path, progress=False)
    msg = str(info.value)
    assert "drive.grand-challenge.org" in msg and "--archive" in msg and "1st_manual" in msg
    assert list(tmp_path.iterdir()) == []


def _gif(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="GIF")
    return buf.getvalue()


def _tif(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="TIFF")
    return buf.getvalue()


def _write(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def test_drive_from_a_local_folder(tmp_path: Path) -> None:
    src = tmp_path / "DRIVE"
    files = {}
    for n, split in (("21", "training"), ("22", "training"), ("01", "test")):
        files[f"{split}/images/{n}_{split}.tif"] = _tif(_image(int(n)))
        files[f"{split}/1st_manual/{n}_manual1.gif"] = _gif(_mask())
        files[f"{split}/mask/{n}_{split}_mask.gif"] = _gif(np.full((16, 16), 255, np.uint8))
    files["test/images/02_test.tif"] = _tif(_image(2))  # no manual mask: skipped
    _write(src, files)
    before = sorted(p.relative_to(src) for p in src.rglob("*"))

    res = fetch_dataset("drive", tmp_path / "root", archive=src, progress=False)
    out = tmp_path / "root" / "drive"
    assert res.n_pairs == 3 and (res.n_train, res.n_test) == (2, 1)
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "01_test.png",
        "21_training.png",
        "22_training.png",
    ]
    assert np.array_equal(np.asarray(Image.open(out / "images" / "21_training.png")), _image(21))  # lossless
    assert np.array_equal(np.asarray(Image.open(out / "masks" / "01_test.png")), _mask())
    assert (np.asarray(Image.open(out / "fov_masks" / "22_training.png")) == 255).all()
    assert res.sha256 is None and any("skipped 1" in n for n in res.notes)
    assert sorted(p.relative_to(src) for p in src.rglob("*")) == before  # the user's folder is untouched


def test_busi_zip_merges_masks_and_drops_normal(tmp_path: Path) -> None:
    gray = np.random.default_rng(0).integers(0, 256, (16, 20), dtype=np.uint8)
    m1, m2 = np.zeros((16, 20), np.uint8), np.zeros((16, 20), np.uint8)
    m1[:4], m2[-4:] = 255, 255
    base = "Dataset_BUSI_with_GT"
    archive = tmp_path / "Dataset_BUSI.zip"
    archive.write_bytes(
        _zip(
            {
                f"{base}/benign/benign (1).png": _png(np.stack([gray] * 3, axis=2)),  # equal channels -> L
                f"{base}/benign/benign (1)_mask.png": _png(m1),
                f"{base}/benign/benign (1)_mask_1.png": _png(m2),
                f"{base}/malignant/malignant (7).png": _png(_image(3, 16)),
                f"{base}/malignant/malignant (7)_mask.png": _png(_mask()),
                f"{base}/normal/normal (1).png": _png(gray),
                f"{base}/normal/normal (1)_mask.png": _png(np.zeros((16, 20), np.uint8)),
            }
        )
    )
    res = fetch_dataset("busi", tmp_path / "root", archive=archive, progress=False)
    out = tmp_path / "root" / "busi"
    assert res.n_pairs == 2 and archive.exists()  # a user's archive is never deleted
    img = Image.open(out / "images" / "benign_001.png")
    assert img.mode == "L" and np.array_equal(np.asarray(img), gray)
    assert Image.open(out / "images" / "malignant_007.png").mode == "RGB"
    merged = np.asarray(Image.open(out / "masks" / "benign_001.png")) > 127
    assert merged[:4].all() and merged[-4:].all() and not merged[4:-4].any()
    assert "benign_001,benign,benign (1).png,2,L" in (out / "index.csv").read_text()
    assert not (out / "splits.csv").exists()  # the shipped split's ids are not in this tiny archive
    assert any("splits.csv not written" in n for n in res.notes)


def test_cvc_clinicdb_folder_tif_to_png(tmp_path: Path) -> None:
    src = tmp_path / "CVC-ClinicDB"
    rgb = np.stack([_mask()] * 3, axis=2)
    _write(
        src,
        {
            "Original/1.tif": _tif(_image(1)),
            "Ground Truth/1.tif": _tif(rgb),
            "Original/2.tif": _tif(_image(2)),
        },
    )
    with pytest.raises(ConversionError, match="2.tif: no mask"):
        fetch_dataset("cvc-clinicdb", tmp_path / "root", archive=src, progress=False)
    assert not (tmp_path / "root" / "cvc-clinicdb").exists() and _leftovers(tmp_path / "root") == []
    (src / "Ground Truth" / "2.tif").write_bytes(_tif(rgb))
    res = fetch_dataset("cvc-clinicdb", tmp_path / "root", archive=src, progress=False)
    out = tmp_path / "root" / "cvc-clinicdb"
    assert res.n_pairs == 2 and not (out / "splits.csv").exists()
    assert np.array_equal(np.asarray(Image.open(out / "images" / "1.png")), _image(1))
    mask = Image.open(out / "masks" / "2.png")
    assert mask.mode == "L" and np.array_equal(np.asarray(mask), _mask())


def test_cvc_colondb_original_flat_layout(tmp_path: Path) -> None:
    src = tmp_path / "colondb"
    bmp = {}
    for n in (1, 2):
        for prefix, arr in (("", _image(n)), ("p", _mask()), ("s", _mask()), ("c", _mask())):
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="BMP")
            bmp[f"CVC-ColonDB/{prefix}{n}.bmp"] = buf.getvalue()
    _write(src, bmp)
    res = fetch_dataset("cvc-colondb", tmp_path / "root", archive=src, progress=False)
    out = tmp_path / "root" / "cvc-colondb"
    assert res.n_pairs == 2 and sorted(p.name for p in (out / "masks").iterdir()) == ["1.png", "2.png"]


def test_kvasir_instrument_nested_tarballs(server, tmp_path: Path) -> None:
    ids = ["ckaaa", "ckbbb", "ckccc"]
    images = _tar_gz({f"images/{i}.jpg": _jpg(_image(k)) for k, i in enumerate(ids)})
    red = np.zeros((16, 16, 3), np.uint8)
    red[4:12, 4:12] = (255, 255, 255)
    masks = _tar_gz({f"masks/{i}.png": _png(red) for i in ids})
    data = _zip(
        {
            "kvasir-instrument/images.tar.gz": images,
            "kvasir-instrument/masks.tar.gz": masks,
            "kvasir-instrument/train.txt": b"ckaaa\nckbbb\n",
            "kvasir-instrument/test.txt": b"ckccc\n",
            "kvasir-instrument/bboxes.json": b"{}",
        }
    )
    url = serve(server, "/ki/kvasir-instrument.zip", data)
    res = fetch_dataset("kvasir-instrument", tmp_path, url=url, progress=False)
    out = tmp_path / "kvasir-instrument"
    assert res.n_pairs == 3 and (res.n_train, res.n_test) == (2, 1)
    assert (out / "images" / "ckaaa.jpg").read_bytes() == _jpg(_image(0))
    assert np.array_equal(np.asarray(Image.open(out / "masks" / "ckccc.png")), _mask())
    assert (out / "bboxes.json").exists() and _leftovers(tmp_path) == []


def test_nested_unsafe_tarball_is_rejected(server, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.addfile(_tar_member("images/../../../evil.txt", tarfile.REGTYPE), io.BytesIO(b""))
    data = _zip({"kvasir-instrument/images.tar.gz": buf.getvalue()})
    url = serve(server, "/ki-evil/kvasir-instrument.zip", data)
    with pytest.raises(UnsafeArchiveError, match="evil.txt"):
        fetch_dataset("kvasir-instrument", tmp_path / "root", url=url, progress=False)
    assert not list(tmp_path.rglob("evil.txt")) and _leftovers(tmp_path / "root") == []


def test_polypgen_centre_prefix(tmp_path: Path) -> None:
    src = tmp_path / "PolypGen2021_MultiCenterData_v3"
    files = {}
    for c in (1, 2):
        files[f"data_C{c}/images_C{c}/100H0050.jpg"] = _jpg(_image(c))
        files[f"data_C{c}/masks_C{c}/100H0050_mask.jpg"] = _jpg(np.stack([_mask()] * 3, axis=2))
    _write(src, files)
    res = fetch_dataset("polypgen", tmp_path / "root", archive=src, progress=False)
    assert res.n_pairs == 2
    assert sorted(p.name for p in (tmp_path / "root/polypgen/images").iterdir()) == [
        "C1_100H0050.jpg",
        "C2_100H0050.jpg",
    ]


# ---------------------------------------------------------------------------------------------------------------
# CLI


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("fetch")(fetch)
    app.command("list")(list_datasets)
    return app


def test_cli_list_and_fetch(cli: typer.Typer, server, kvasir_zip: bytes, tmp_path: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(cli, ["list"], terminal_width=250)
    assert listed.exit_code == 0, listed.output
    for name in ("kvasir-seg", "cvc-clinicdb", "busi", "drive", "polypgen"):
        assert name in listed.output
    url = serve(server, "/cli/kvasir-seg.zip", kvasir_zip)
    ok = runner.invoke(
        cli, ["fetch", "kvasir-seg", "--root", str(tmp_path), "--url", url], terminal_width=250
    )
    assert ok.exit_code == 0, ok.output
    assert "103 pairs" in ok.output and _sha(kvasir_zip) in ok.output
    bad = runner.invoke(
        cli, ["fetch", "kvasir-seg", "--root", str(tmp_path / "b"), "--url", url, "--sha256", "f" * 64]
    )
    assert bad.exit_code == 1 and "sha256 mismatch" in bad.output
    manual = runner.invoke(cli, ["fetch", "drive", "--root", str(tmp_path)])
    assert manual.exit_code == 2 and "--archive" in manual.output
    unknown = runner.invoke(cli, ["fetch", "nope", "--root", str(tmp_path)])
    assert unknown.exit_code == 1 and "known datasets" in unknown.output
