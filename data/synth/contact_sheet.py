"""Contact sheet of the synthskin-v1 look: columns = Fitzpatrick types 1-6, rows = conditions.

    python -m data.synth.contact_sheet --out docs/synthskin_contact_sheet.png [--cell 120]

Every cell is rendered by the same code as the dataset, with the preset's per-group contrast, from
a fixed seed, so the sheet is reproducible. The last row overlays the lesion masks of the row
above (red = acne, green = hyperpigmentation, blue = wrinkles).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from data.synth import conditions, render
from data.synthetic import PRESETS

ROWS: tuple[tuple[str, conditions.Subject], ...] = (
    ("no condition", conditions.Subject(30, False, False, False, 0, 0)),
    ("acne, grade 1 (14 lesions)", conditions.Subject(22, True, False, False, 14, 1)),
    ("acne, grade 2 + PIH", conditions.Subject(20, True, True, False, 35, 2)),
    ("hyperpigmentation", conditions.Subject(45, False, True, False, 0, 0)),
    ("wrinkles (age 66)", conditions.Subject(66, False, False, True, 0, 0)),
    ("all three (age 50)", conditions.Subject(50, True, True, True, 12, 1)),
)
SEED = 11


def make_sheet(cell: int = 120, seed: int = SEED) -> np.ndarray:
    """The contact sheet as an RGB uint8 array."""
    config = PRESETS["synthskin-v1"]
    label_w, header_h = 150, 26
    rows = len(ROWS) + 1
    sheet = np.full((header_h + rows * cell, label_w + 6 * cell, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for t in range(6):
        cv2.putText(
            sheet,
            f"type {t + 1}",
            (label_w + t * cell + cell // 2 - 28, 18),
            font,
            0.5,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    last = None
    for r, (name, subject) in enumerate(ROWS):
        y = header_h + r * cell
        for k, line in enumerate(_wrap(name, 18)):
            cv2.putText(
                sheet, line, (6, y + cell // 2 + 16 * k), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA
            )
        last = []
        for t in range(6):
            rng = np.random.default_rng([seed, r, t])
            s = render.render_sample(
                rng,
                size=config.size,
                fitzpatrick=t + 1,
                subject=subject,
                contrast=config.contrast[t // 2],
            )
            sheet[y : y + cell, label_w + t * cell : label_w + (t + 1) * cell] = _fit(s.rgb, cell)
            last.append(s)
    y = header_h + len(ROWS) * cell
    cv2.putText(
        sheet, "masks of the row", (6, y + cell // 2), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA
    )
    cv2.putText(
        sheet, "above (R/G/B)", (6, y + cell // 2 + 16), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA
    )
    for t, s in enumerate(last or []):
        overlay = (0.55 * s.rgb + 0.45 * s.masks).astype(np.uint8)
        sheet[y : y + cell, label_w + t * cell : label_w + (t + 1) * cell] = _fit(overlay, cell)
    return sheet


def _fit(img: np.ndarray, cell: int) -> np.ndarray:
    return cv2.resize(img, (cell, cell), interpolation=cv2.INTER_AREA)


def _wrap(text: str, width: int) -> list[str]:
    lines, cur = [], ""
    for word in text.split():
        if cur and len(cur) + 1 + len(word) > width:
            lines.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}".strip()
    return lines + [cur]


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/synthskin_contact_sheet.png"))
    p.add_argument("--cell", type=int, default=120, help="cell size in pixels")
    args = p.parse_args(argv)
    sheet = make_sheet(args.cell)
    ok, buf = cv2.imencode(
        ".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]
    )
    if not ok:
        print("error: PNG encoding failed", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_bytes(buf.tobytes())
    tmp.replace(args.out)
    print(f"wrote {args.out} ({len(buf) / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
