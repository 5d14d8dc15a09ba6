"""A process-wide glibc malloc setting that keeps freed memory for reuse (large encoder activations)."""

from __future__ import annotations

import functools

from optidel.log import logger


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of returning it to the OS (once per process).

    glibc serves every block above 32 MiB with a fresh ``mmap`` and unmaps it on free, so each of the encoder's
    67 MB activations (256 channels at 256x256) costs ~16k page faults on first touch: ~80 ms per tensor, measured
    as 11% of the encoder's and 17% of the decoder's time on one core. With ``M_MMAP_MAX = 0`` and a high
    ``M_TRIM_THRESHOLD`` the freed blocks are reused; the process's resident memory stays
    at its peak (max RSS 3.4 GB over 256 Kvasir-SEG images with one-image encoder batches).

    Returns:
        True when applied (Linux with glibc), else False (nothing changed).
    """
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        ok = bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False
    if ok:
        logger.info("malloc: freed memory is kept for reuse (no mmap/page-fault churn on large activations)")
    return ok
