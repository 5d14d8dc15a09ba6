"""How long ``read_header`` takes over the images of some folders (median of 3 passes after one warm-up read).

``read_header`` is called for every image and mask when a segmentation dataset loads (size checks) and for every
pool image; it should read headers, not pixels. Run it at two commits to compare them.

Usage:
    .venv/bin/python benchmarks/bench_headers.py ../shared/data/busi/images ../shared/data/busi/masks
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from optidel.data.image import read_header


def main(folders: list[str]) -> int:
    paths = sorted(p for d in folders for p in Path(d).iterdir() if p.is_file())
    if not paths:
        print("no files in " + ", ".join(folders), file=sys.stderr)
        return 2
    read_header(paths[0])
    times = []
    for _ in range(3):
        t = time.perf_counter()
        for p in paths:
            read_header(p)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    print(f"{len(paths)} files: median {med:.3f} s per pass ({1000 * med / len(paths):.2f} ms per file)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
