"""The first mosaics of one seed's selection under each reading of hardness, a row each (docs/img picture).

    python benchmarks/plot_hardness_readings.py runs/benchmark-endoscopy docs/img/endoscopy_hardness_readings.jpg

Rows: margin (plain optidel), prototype, reconstruction, and random patches in the same mosaics (mosaic-random), from
the `cpu-endoscopy` selection folders of that seed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

ROWS = (
    ("margin (optidel)", "optidel"),
    ("prototype (optidel+prototype)", "optidel+prototype"),
    ("reconstruction (optidel+recon)", "optidel+recon"),
    ("random patches (mosaic-random)", "mosaic-random"),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench", type=Path, help="the benchmark folder (holds select/)")
    ap.add_argument("out", type=Path, help="the picture to write (.jpg or .png)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=10, help="mosaics per row")
    ap.add_argument("--tile", type=int, default=112, help="pixels per mosaic")
    args = ap.parse_args()
    t, label = args.tile, 24
    sheet = Image.new("RGB", (t * args.n, (t + label) * len(ROWS)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (name, method) in enumerate(ROWS):
        y = r * (t + label)
        draw.text((4, y + 6), name, fill="black")
        folder = args.bench / "select" / f"{method}_r0.05_s{args.seed}" / "images"
        for i, path in enumerate(sorted(folder.glob("mosaic_*.png"))[: args.n]):
            with Image.open(path) as im:
                sheet.paste(im.convert("RGB").resize((t, t), Image.BILINEAR), (i * t, y + label))
    sheet.save(args.out, quality=85)
    print(f"{args.out}: {sheet.size[0]} x {sheet.size[1]} px")


if __name__ == "__main__":
    main()
