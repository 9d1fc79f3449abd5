"""YOLO detection export (Roboflow's YOLOv8 layout) -> canonical dataset.

    python -m data.adapters.yolo --src data/raw/acne-new-v36 --out data/acne-new-v36 \\
        [--map acne=acne,pimple --map hyperpigmentation=spot] [--link] [--force] [--json] \\
        [--no-tone] [--source-name NAME]

SRC holds ``data.yaml`` (``names``: the class names, a list or an ``{id: name}`` dict) and,
per split, ``<split>/images/*`` with ``<split>/labels/<stem>.txt`` (or ``images/<split>/`` and
``labels/<split>/``); splits ``train`` -> train, ``valid`` or ``val`` -> val, ``test`` -> test.
A label line is ``class cx cy w h``, normalised to 0..1. The export's splits are kept.

Per image: a condition that ``--map`` covers is 1 when the image has a box of one of its
classes, else 0 (every lesion was boxed, so no box is a real 0); the other conditions stay
unknown. Every box is kept in ``boxes``; the mapped ones are filled into a lesion mask PNG
(one channel per condition); the acne box count gives ``acne_severity``. The skin tone is
estimated from the photo with the serving preprocessing (``tone_source`` = estimated). Val/test
rows that share a subject (file name before ``.rf.``) with an earlier split, or that are
near-duplicates of an earlier split's image (pHash), are dropped and reported. A malformed label
line stops the run with ``file:line: what``. Beside metadata.csv go ``dataset.json`` (the
choices made; ``"synthetic": false``) and ``datacard.json`` (name, licence, url and attribution
from data.yaml's ``roboflow`` block, ``tone_source``; `fairness.report` reads it). Details:
data/ADAPTERS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from core.schema import CONDITIONS, GROUPS, SPLITS
from data.adapters.common import (
    AdapterError,
    Record,
    Summary,
    UsageError,
    make_parser,
    run_cli,
    severity_from_count,
    write_dataset,
)
from data.adapters.tone_labels import FILENAME as LABELS_FILENAME
from data.adapters.tone_labels import checked_tone_labels
from data.canonical import TONE_ESTIMATED, check_image_bytes

YAML_NAME = "data.yaml"
# Canonical split -> folder names a YOLO export uses for it, in order of preference.
SPLIT_FOLDERS = {"train": ("train",), "val": ("valid", "val"), "test": ("test",)}
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
DEFAULT_MAP: dict[str, tuple[str, ...]] = {
    "acne": ("acne", "pimple"),
    "hyperpigmentation": ("spot",),
}
# Roboflow names exported files `<original stem>_<ext>.rf.<hash>.<ext>`: copies of one photo
# (augmentations, re-uploads) share the part before the marker.
RF_MARKER = ".rf."
# Box edges may pass 0 or 1 by this much (float rounding of clipped coordinates).
EDGE_TOLERANCE = 1e-6
BOX_DIGITS = 5  # decimals of the coordinates in the `boxes` column
# Near-duplicates: pHash Hamming distance at or below this many bits (of 64) across splits.
# Distances are even (the hash has 32 bits set). On acne-new v36 the 5 train/valid pairs at
# 0-4 bits are one photo at two resolutions; the 2 at 6 bits and 12 of the 13 at 8 bits are
# different people framed alike (portrait crops all look alike to a 64-bit hash).
NEAR_DUPLICATE_BITS = 4
HISTOGRAM_MAX_BITS = 10  # the summary counts cross-split pairs at 0..this many bits
TONE_CROP_SIZE = 128  # face crop side for the tone estimate (the serving preprocessing's input)
MAX_ERRORS_SHOWN = 20
NO_FACE = "no face detected"

MSG_NO_NAMES = "no 'names' (the class names, a list or an {id: name} mapping)"


# ---------------------------------------------------------------------------------------------
# data.yaml and --map.


def read_data_yaml(src: Path) -> dict:
    """SRC/data.yaml as a dict; `AdapterError` naming the file if it is missing or not YAML."""
    import yaml

    path = src / YAML_NAME
    if not path.is_file():
        raise AdapterError(f"{path}: file not found (a YOLO export names its classes there)")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise AdapterError(f"{path}: cannot parse YAML ({exc})") from exc
    if not isinstance(config, dict):
        raise AdapterError(f"{path}: {MSG_NO_NAMES}")
    return config


def class_names(config: dict, path: Path) -> list[str]:
    """Class names by id from data.yaml's ``names``; `AdapterError` naming `path` if unusable."""
    names = config.get("names")
    if not names:
        raise AdapterError(f"{path}: {MSG_NO_NAMES}")
    if isinstance(names, dict):
        try:
            by_id = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError) as exc:
            raise AdapterError(f"{path}: 'names' keys must be class ids 0, 1, ...") from exc
        if sorted(by_id) != list(range(len(by_id))):
            raise AdapterError(
                f"{path}: 'names' ids must be 0..{len(by_id) - 1}, got {sorted(by_id)}"
            )
        result = [by_id[i] for i in range(len(by_id))]
    elif isinstance(names, list):
        result = [str(n) for n in names]
    else:
        raise AdapterError(f"{path}: {MSG_NO_NAMES}")
    repeated = sorted(n for n, c in Counter(result).items() if c > 1)
    if repeated:
        raise AdapterError(f"{path}: class name(s) given twice in 'names': {', '.join(repeated)}")
    nc = config.get("nc")
    if nc is not None and nc != len(result):
        raise AdapterError(f"{path}: nc is {nc} but 'names' has {len(result)} classes")
    return result


def parse_map(values: Sequence[str] | None) -> dict[str, tuple[str, ...]]:
    """``COND=CLASS[,CLASS...]`` flags -> {condition: class names}; `DEFAULT_MAP` when none.

    Raises ValueError naming the bad flag (unknown condition, no class, condition twice).
    """
    if not values:
        return dict(DEFAULT_MAP)
    mapping: dict[str, tuple[str, ...]] = {}
    for value in values:
        cond, sep, classes = value.partition("=")
        cond = cond.strip()
        names = tuple(c.strip() for c in classes.split(",") if c.strip())
        if not sep or not names:
            raise ValueError(f"--map {value!r}: expected COND=CLASS[,CLASS...]")
        if cond not in CONDITIONS:
            allowed = ", ".join(sorted(CONDITIONS))
            raise ValueError(f"--map {value!r}: unknown condition {cond!r}; one of {allowed}")
        if cond in mapping:
            raise ValueError(f"--map: condition {cond!r} given twice (list its classes once)")
        mapping[cond] = names
    return mapping


def resolve_map(mapping: dict[str, tuple[str, ...]], names: Sequence[str]) -> dict[str, set[int]]:
    """{condition: class ids}; `UsageError` naming a class that data.yaml does not have."""
    ids = {name: i for i, name in enumerate(names)}
    resolved: dict[str, set[int]] = {}
    for cond, classes in mapping.items():
        unknown = [c for c in classes if c not in ids]
        if unknown:
            raise UsageError(
                f"--map {cond}=...: unknown class name(s) {', '.join(map(repr, unknown))}; "
                f"{YAML_NAME} has {', '.join(sorted(names))}"
            )
        resolved[cond] = {ids[c] for c in classes}
    return resolved


# ---------------------------------------------------------------------------------------------
# Label files.


@dataclass(frozen=True)
class Box:
    """One YOLO box: class id and centre/size normalised to the image (0..1)."""

    class_id: int
    cx: float
    cy: float
    w: float
    h: float


def parse_label_line(line: str, num_classes: int) -> Box | str:
    """A `Box` from one ``class cx cy w h`` line, or what is wrong with it."""
    fields = line.split()
    if len(fields) != 5:
        return f"expected 5 fields 'class cx cy w h', got {len(fields)}: {line.strip()!r}"
    try:
        class_value = float(fields[0])
    except ValueError:
        return f"class id must be an integer, got {fields[0]!r}"
    if not class_value.is_integer():
        return f"class id must be an integer, got {fields[0]!r}"
    class_id = int(class_value)
    if not 0 <= class_id < num_classes:
        return (
            f"class id {class_id} out of range: {YAML_NAME} has {num_classes} classes "
            f"(0-{num_classes - 1})"
        )
    coords = []
    for name, text in zip(("cx", "cy", "w", "h"), fields[1:], strict=True):
        try:
            value = float(text)
        except ValueError:
            return f"{name} must be a number, got {text!r}"
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            return f"{name} = {text} is outside 0..1 (coordinates are normalised)"
        coords.append(value)
    cx, cy, w, h = coords
    if w == 0.0 or h == 0.0:
        return f"box has zero {'width' if w == 0.0 else 'height'}"
    for axis, centre, size in (("x", cx, w), ("y", cy, h)):
        low, high = centre - size / 2, centre + size / 2
        if low < -EDGE_TOLERANCE or high > 1.0 + EDGE_TOLERANCE:
            return f"box extends past the image ({axis} from {low:.6g} to {high:.6g})"
    return Box(class_id, cx, cy, w, h)


def read_label_file(path: Path, num_classes: int, errors: list[str]) -> list[Box]:
    """Boxes of one label file; each bad line is appended to `errors` as ``path:LINE: what``."""
    boxes = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(f"{path}: cannot read ({exc})")
        return boxes
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parsed = parse_label_line(line, num_classes)
        if isinstance(parsed, str):
            errors.append(f"{path}:{number}: {parsed}")
        else:
            boxes.append(parsed)
    return boxes


def label_path_of(image: Path) -> Path:
    """YOLO's convention: the last ``images`` folder of the path becomes ``labels``, ``.txt``."""
    parts = list(image.parts)
    index = len(parts) - 1 - parts[::-1].index("images")
    parts[index] = "labels"
    return Path(*parts).with_suffix(".txt")


@dataclass
class Item:
    """One image of the export with its boxes."""

    split: str
    image: Path
    rel: str  # image path relative to SRC, as reported
    boxes: list[Box]
    label_missing: bool
    subject: str
    shape: tuple[int, int] = (0, 0)  # (height, width) once decoded
    phash: int = 0
    tone: dict[str, object] = field(default_factory=dict)


def subject_of(file_name: str) -> str:
    """The photo a Roboflow file comes from: the name before ``.rf.`` (else the stem)."""
    if RF_MARKER in file_name:
        return file_name.split(RF_MARKER, 1)[0]
    return Path(file_name).stem


def split_folders(src: Path) -> dict[str, Path]:
    """{split: images folder} of the splits present; `AdapterError` if none or ambiguous."""
    found: dict[str, Path] = {}
    for split, names in SPLIT_FOLDERS.items():
        candidates = [
            folder
            for name in names
            for folder in (src / name / "images", src / "images" / name)
            if folder.is_dir()
        ]
        if len(candidates) > 1:
            shown = ", ".join(str(c) for c in candidates)
            raise AdapterError(f"{src}: several image folders for split {split!r}: {shown}")
        if candidates:
            found[split] = candidates[0]
    if not found:
        raise AdapterError(
            f"{src}: no split folders (expected train/, valid/ or val/, test/ each with "
            "images/ and labels/, or images/<split>/ and labels/<split>/)"
        )
    return found


def read_items(src: Path, num_classes: int, summary: YoloSummary) -> list[Item]:
    """Every image of every split with its boxes, in split order then path order.

    Raises `AdapterError` listing the bad label lines (``path:LINE: what``), all at once.
    """
    items: list[Item] = []
    errors: list[str] = []
    for split, folder in split_folders(src).items():
        images = sorted(
            (p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
            key=lambda p: p.relative_to(folder).as_posix(),
        )
        label_paths = set()
        for image in images:
            label = label_path_of(image)
            label_paths.add(label)
            missing = not label.is_file()
            boxes = [] if missing else read_label_file(label, num_classes, errors)
            rel = image.relative_to(src).as_posix()
            if missing:
                summary.missing_label_files.append(rel)
            items.append(Item(split, image, rel, boxes, missing, subject_of(image.name)))
        labels_dir = label_path_of(folder / "x.jpg").parent
        if labels_dir.is_dir():
            orphans = [p for p in labels_dir.rglob("*.txt") if p not in label_paths]
            if orphans:
                summary.warn("label_without_image", len(orphans))
        summary.split_stats[split] = {"images": len(images)}
    if errors:
        more = len(errors) - MAX_ERRORS_SHOWN
        shown = errors[:MAX_ERRORS_SHOWN] + ([f"... and {more} more"] if more > 0 else [])
        raise AdapterError(
            f"{len(errors)} bad label line(s), nothing written:\n" + "\n".join(shown)
        )
    summary.rows_in = len(items)
    return items


# ---------------------------------------------------------------------------------------------
# Pure image functions: perceptual hash and box masks.


def phash(gray: np.ndarray) -> int:
    """64-bit DCT perceptual hash of a grayscale image (uint8 [H, W]).

    Resize to 32x32 (area averaging), 2-D DCT, keep the 8x8 lowest frequencies, and set bit i
    (row-major, most significant first) where coefficient i exceeds their median. Re-encoding,
    resizing and small brightness changes move few bits; unrelated photos differ in ~32.
    """
    if gray.ndim != 2:
        raise ValueError(f"expected a grayscale image [H, W], got shape {gray.shape}")
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8]
    bits = (low > np.median(low)).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two 64-bit hashes."""
    return (a ^ b).bit_count()


def box_pixels(box: Box, height: int, width: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1), ends exclusive: every pixel the box overlaps, at least one."""
    eps = 1e-6  # (0.16 + 0.14) * 10 is 3.0000000000000004: not a pixel more
    x0 = math.floor((box.cx - box.w / 2) * width + eps)
    x1 = math.ceil((box.cx + box.w / 2) * width - eps)
    y0 = math.floor((box.cy - box.h / 2) * height + eps)
    y1 = math.ceil((box.cy + box.h / 2) * height - eps)
    x0, y0 = min(max(x0, 0), width - 1), min(max(y0, 0), height - 1)
    x1, y1 = min(max(x1, x0 + 1), width), min(max(y1, y0 + 1), height)
    return y0, y1, x0, x1


def box_mask(
    boxes: Sequence[Box], shape: tuple[int, int], class_ids: dict[str, set[int]]
) -> np.ndarray:
    """Lesion mask uint8 [H, W, 3]: channel i = CONDITIONS[i], its classes' boxes filled 255."""
    mask = np.zeros((*shape, len(CONDITIONS)), np.uint8)
    for channel, cond in enumerate(CONDITIONS):
        ids = class_ids.get(cond, set())
        for box in boxes:
            if box.class_id in ids:
                y0, y1, x0, x1 = box_pixels(box, *shape)
                mask[y0:y1, x0:x1, channel] = 255
    return mask


def encode_mask(mask: np.ndarray) -> bytes:
    """PNG bytes of a mask [H, W, 3] in RGB channel order (the synthetic benchmark's encoding)."""
    ok, buf = cv2.imencode(".png", mask[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


# ---------------------------------------------------------------------------------------------
# Decoding, hashing and skin tone.


def estimate_tone(image_rgb: np.ndarray, detector: object) -> dict[str, object]:
    """Skin tone of the first (largest) face, as the serving preprocessing estimates it."""
    from preprocessing.pipeline import analyze_image

    faces = analyze_image(image_rgb, size=TONE_CROP_SIZE, detector=detector)
    if not faces:
        return {"face_found": 0, "ita": None, "group": None, "confidence": None, "reason": NO_FACE}
    tone = faces[0].skin_tone
    return {
        "face_found": 1,
        "ita": None if tone.ita is None else round(float(tone.ita), 1),
        "group": tone.fitzpatrick_group,
        "confidence": round(float(tone.confidence), 3),
        "reason": tone.reason,
    }


def decode_items(
    items: list[Item], summary: YoloSummary, *, tone: bool, progress: bool
) -> list[Item]:
    """Decode every image (size, pHash, tone); unreadable ones are skipped and reported."""
    from tqdm import tqdm

    from preprocessing.image_io import InvalidImageError, load_image

    detector = None
    if tone:
        from preprocessing.pipeline import default_detector

        detector = default_detector()
    kept = []
    start = time.perf_counter()
    desc = "decoding + estimating tone" if tone else "decoding"
    for item in tqdm(items, desc=desc, unit="img", disable=None if progress else True, leave=False):
        data = item.image.read_bytes()
        error = check_image_bytes(data)
        image = None
        if error is None:
            try:
                image = load_image(data, name=item.rel)
            except InvalidImageError as exc:
                error = str(exc)
        if image is None:
            summary.skip(item.rel, f"unreadable image: {item.image} ({error})")
            continue
        item.shape = image.shape[:2]
        item.phash = phash(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        if detector is not None:
            item.tone = estimate_tone(image, detector)
        kept.append(item)
    summary.decode_seconds = round(time.perf_counter() - start, 1)
    return kept


# ---------------------------------------------------------------------------------------------
# Leakage between splits: shared subjects and near-duplicates.


def drop_shared_subjects(items: list[Item], summary: YoloSummary) -> list[Item]:
    """Keep each subject in the first split it appears in (train, val, test); drop the rest."""
    home: dict[str, Item] = {}
    kept = []
    for item in items:  # in split order
        first = home.setdefault(item.subject, item)
        if first.split != item.split:
            summary.skip(
                item.rel,
                f"subject in another split: {item.subject!r} is in {first.split} "
                f"({first.rel}); its {item.split} rows are dropped",
            )
            summary.split_stats[item.split]["dropped_subject"] = (
                summary.split_stats[item.split].get("dropped_subject", 0) + 1
            )
            continue
        kept.append(item)
    return kept


def distances(a: Sequence[int], b: Sequence[int]) -> np.ndarray:
    """Hamming distances [len(a), len(b)] between two lists of 64-bit hashes."""
    x = np.asarray(a, dtype=np.uint64).reshape(-1, 1)
    y = np.asarray(b, dtype=np.uint64).reshape(1, -1)
    return np.bitwise_count(x ^ y).astype(np.int64)


def cross_split_pairs(items: list[Item]) -> dict[str, object]:
    """Histogram (0..HISTOGRAM_MAX_BITS bits) and list (<= threshold) of cross-split pairs."""
    by_split = {s: [it for it in items if it.split == s] for s in SPLITS}
    histogram = Counter()
    pairs = []
    for i, first in enumerate(SPLITS):
        for second in SPLITS[i + 1 :]:
            a, b = by_split[first], by_split[second]
            if not a or not b:
                continue
            d = distances([it.phash for it in a], [it.phash for it in b])
            histogram.update(d[d <= HISTOGRAM_MAX_BITS].tolist())
            for r, c in zip(*np.nonzero(d <= NEAR_DUPLICATE_BITS), strict=True):
                pairs.append([a[r].rel, b[c].rel, int(d[r, c])])
    within = 0
    for s in SPLITS:
        hashes = [it.phash for it in by_split[s]]
        if len(hashes) > 1:
            d = distances(hashes, hashes)
            within += int(np.triu(d <= NEAR_DUPLICATE_BITS, k=1).sum())
    return {
        "threshold_bits": NEAR_DUPLICATE_BITS,
        "cross_split_pairs_by_distance": {
            str(k): int(histogram.get(k, 0)) for k in range(HISTOGRAM_MAX_BITS + 1)
        },
        "cross_split_pairs": sorted(pairs, key=lambda p: (p[2], p[0], p[1])),
        "within_split_pairs": within,
    }


def drop_near_duplicates(items: list[Item], summary: YoloSummary) -> list[Item]:
    """Drop each val/test image within NEAR_DUPLICATE_BITS of a kept image of an earlier split."""
    kept: list[Item] = []
    for split in SPLITS:
        earlier = list(kept)
        hashes = [it.phash for it in earlier]
        for item in (it for it in items if it.split == split):
            if earlier:
                d = distances([item.phash], hashes)[0]
                nearest = int(np.argmin(d))
                if d[nearest] <= NEAR_DUPLICATE_BITS:
                    other = earlier[nearest]
                    summary.skip(
                        item.rel,
                        f"near-duplicate: pHash {int(d[nearest])} bits from {other.split} image "
                        f"{other.rel}",
                    )
                    stats = summary.split_stats[split]
                    stats["dropped_near_duplicate"] = stats.get("dropped_near_duplicate", 0) + 1
                    continue
            kept.append(item)
    return kept


# ---------------------------------------------------------------------------------------------
# Records and summary.


def make_record(
    item: Item, names: Sequence[str], class_ids: dict[str, set[int]], *, tone: bool
) -> Record:
    """The canonical row of one image."""
    labels = {}
    for cond in CONDITIONS:
        if cond in class_ids:
            labels[cond] = float(any(b.class_id in class_ids[cond] for b in item.boxes))
        else:
            labels[cond] = math.nan
    extra: dict[str, object] = {
        "boxes": json.dumps(
            [
                [names[b.class_id], *(round(v, BOX_DIGITS) for v in (b.cx, b.cy, b.w, b.h))]
                for b in item.boxes
            ],
            separators=(",", ":"),
        ),
        "lesion_counts": json.dumps(
            {names[k]: n for k, n in sorted(Counter(b.class_id for b in item.boxes).items())},
            separators=(",", ":"),
        ),
        "label_missing": int(item.label_missing),
    }
    severity = None
    if "acne" in class_ids:
        count = sum(b.class_id in class_ids["acne"] for b in item.boxes)
        severity = severity_from_count(count)
        extra["acne_lesion_count"] = count
    if tone:
        extra.update(
            {
                "tone_source": TONE_ESTIMATED,
                "ita": item.tone["ita"],
                "tone_confidence": item.tone["confidence"],
                "face_found": item.tone["face_found"],
                "tone_reason": item.tone["reason"],
            }
        )
    boxes, shape = item.boxes, item.shape

    def mask_png() -> bytes:
        return encode_mask(box_mask(boxes, shape, class_ids))

    return Record(
        row_id=item.rel,
        image_src=item.image,
        image_name=item.image.name,
        labels=labels,
        fitzpatrick_group=item.tone.get("group") if tone else None,
        acne_severity=severity,
        subject_id=item.subject,
        split=item.split,
        extra=extra,
        mask_png=mask_png,
    )


@dataclass
class YoloSummary(Summary):
    """`Summary` plus per-split counts, missing label files, near-duplicates and tone."""

    split_stats: dict[str, dict[str, int]] = field(default_factory=dict)
    missing_label_files: list[str] = field(default_factory=list)
    near_duplicates: dict[str, object] = field(default_factory=dict)
    mapping: dict[str, list[str]] = field(default_factory=dict)
    tone: dict[str, object] = field(default_factory=dict)
    decode_seconds: float = 0.0
    attribution: str | None = None  # the credit line data.yaml's licence asks for

    def to_dict(self) -> dict[str, object]:
        """Plain dict for JSON output."""
        return {
            **super().to_dict(),
            "mapping": self.mapping,
            "splits": self.split_stats,
            "missing_label_files": len(self.missing_label_files),
            "missing_label_file_list": self.missing_label_files,
            "near_duplicates": self.near_duplicates,
            "tone": self.tone,
            "attribution": self.attribution,
        }

    def format(self, max_skipped: int = 20) -> str:
        """Human-readable summary."""
        lines = [super().format(max_skipped)]
        mapped = "; ".join(f"{c} = {', '.join(n)}" for c, n in self.mapping.items())
        lines.append(f"  mapping: {mapped} (other conditions unknown)")
        for split, stats in self.split_stats.items():
            shown = " ".join(f"{k}={v}" for k, v in stats.items())
            lines.append(f"  {split}: {shown}")
        lines.append(f"  missing label files (read as no lesion): {len(self.missing_label_files)}")
        nd = self.near_duplicates
        if nd:
            hist = " ".join(f"{d}:{n}" for d, n in nd["cross_split_pairs_by_distance"].items())
            lines.append(
                f"  near-duplicates (pHash <= {nd['threshold_bits']} bits): "
                f"{len(nd['cross_split_pairs'])} cross-split pair(s), "
                f"{nd['within_split_pairs']} within a split (kept)"
            )
            lines.append(f"    cross-split pairs by distance (bits:pairs): {hist}")
        if self.tone:
            lines.append(
                f"  estimated tone (groups from the photo, not Fitzpatrick types; decoding + "
                f"tone took {self.tone['seconds']} s for {self.rows_in} images):"
            )
            for split, stats in self.tone["by_split"].items():
                shown = " ".join(f"{k}={v}" for k, v in stats.items())
                lines.append(f"    {split}: {shown}")
        if self.attribution:
            lines.append(f"  attribution required: {self.attribution}")
        return "\n".join(lines)


def tone_stats(df) -> dict[str, dict[str, int]]:
    """Per split (rows written): faces found, abstentions, estimated groups."""
    stats = {}
    for split in SPLITS:
        part = df[df["split"] == split]
        if not len(part):
            continue
        found = part["face_found"] == 1
        groups = part["fitzpatrick_group"]
        row = {
            "images": len(part),
            "faces_found": int(found.sum()),
            "abstained": int((found & groups.isna()).sum()),
        }
        row.update({f"est {g}": int((groups == g).sum()) for g in GROUPS})
        row["no estimate"] = int(groups.isna().sum())
        stats[split] = row
    return stats


def dataset_name(src: Path, config: dict) -> str:
    """``{project} v{version}`` from data.yaml's ``roboflow`` block, else the SRC folder name."""
    roboflow = config.get("roboflow")
    if isinstance(roboflow, dict) and roboflow.get("project"):
        version = roboflow.get("version")
        return f"{roboflow['project']} v{version}" if version is not None else roboflow["project"]
    return src.absolute().name


def datacard(src: Path, config: dict, *, tone: bool) -> dict[str, str]:
    """OUT/datacard.json (`fairness.model_card.read_datacard`): name, licence, url, attribution
    from data.yaml's ``roboflow`` block where it has them, and ``tone_source`` = estimated."""
    card = {"name": dataset_name(src, config)}
    roboflow = config.get("roboflow")
    if isinstance(roboflow, dict):
        if roboflow.get("license"):
            card["licence"] = str(roboflow["license"])
        if roboflow.get("url"):
            card["url"] = str(roboflow["url"])
        card["attribution"] = attribution(roboflow)
    if tone:
        card["tone_source"] = TONE_ESTIMATED
    return card


def dataset_info(
    src: Path, config: dict, names: Sequence[str], mapping: dict, *, tone: bool
) -> bytes:
    """OUT/dataset.json: provenance, licence/attribution (from data.yaml), and the choices made.

    ``synthetic`` is false: a YOLO export holds photographs (`fairness.io.read_dataset_info`
    reads the key).
    """
    info = {
        "name": dataset_name(src, config),
        "synthetic": False,
        "adapter": "data.adapters.yolo",
        "src": str(src.absolute()),
        "classes": list(names),
        "mapping": mapping,
        "labels": "a mapped condition is 1 when the image has a box of its classes, else 0; "
        "unmapped conditions are unknown (empty), and so are their mask channels",
        "near_duplicate_bits": NEAR_DUPLICATE_BITS,
        "tone": f"estimated: preprocessing.pipeline.analyze_image(size={TONE_CROP_SIZE}), "
        "first face; a group, not a Fitzpatrick type"
        if tone
        else "not estimated (--no-tone)",
    }
    roboflow = config.get("roboflow")
    if isinstance(roboflow, dict):
        info["roboflow"] = roboflow
        info["attribution"] = attribution(roboflow)
    return _json_bytes(info)


def _json_bytes(doc: dict) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode("utf-8")


def attribution(roboflow: dict) -> str:
    """The credit line CC BY asks for, from data.yaml's ``roboflow`` block."""
    project, version = roboflow.get("project", "?"), roboflow.get("version", "?")
    return (
        f"{project} v{version} by {roboflow.get('workspace', '?')} on Roboflow Universe, "
        f"{roboflow.get('url', '')}, licence {roboflow.get('license', 'unknown')}"
    )


def convert(args: argparse.Namespace, progress: bool = False) -> YoloSummary:
    """Convert per the parsed CLI arguments; return the summary."""
    src = args.src
    summary = YoloSummary(args.source_name or src.name)
    config = read_data_yaml(src)
    names = class_names(config, src / YAML_NAME)
    class_ids = resolve_map(args.mapping, names)
    summary.mapping = {c: list(args.mapping[c]) for c in CONDITIONS if c in args.mapping}
    out = Path(args.out).absolute()
    if out.exists() and out.is_dir() and any(out.iterdir()) and not args.force:
        raise FileExistsError(out)  # before minutes of decoding
    items = read_items(src, len(names), summary)
    items = decode_items(items, summary, tone=not args.no_tone, progress=progress)
    summary.near_duplicates = cross_split_pairs(items)
    items = drop_shared_subjects(items, summary)
    items = drop_near_duplicates(items, summary)
    for split in summary.split_stats:
        summary.split_stats[split]["label_missing"] = sum(
            1 for it in items if it.split == split and it.label_missing
        )
    records = [make_record(it, names, class_ids, tone=not args.no_tone) for it in items]
    extra = {}
    if args.tone_labels is not None:
        images = [f"images/{r.image_name}" for r in records]
        extra[LABELS_FILENAME] = checked_tone_labels(args.tone_labels, images)
    df = write_dataset(
        records,
        out,
        summary,
        source=summary.dataset,
        link=args.link,
        force=args.force,
        progress=progress,
        extra_files={
            "dataset.json": dataset_info(
                src, config, names, summary.mapping, tone=not args.no_tone
            ),
            "datacard.json": _json_bytes(datacard(src, config, tone=not args.no_tone)),
            **extra,
        },
    )
    for split, stats in summary.split_stats.items():
        part = df[df["split"] == split]
        stats["rows"] = len(part)
        stats["no_box"] = int((part["boxes"] == "[]").sum())
        for cond in class_ids:
            stats[f"{cond}+"] = int((part[cond] == 1).sum())
    if not args.no_tone:
        summary.tone = {"seconds": summary.decode_seconds, "by_split": tone_stats(df)}
    if isinstance(config.get("roboflow"), dict):
        summary.attribution = attribution(config["roboflow"])
    return summary


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    parser = make_parser(
        "python -m data.adapters.yolo",
        "Convert a YOLO detection export (Roboflow YOLOv8 layout) to the canonical format.",
        images_help=None,
    )
    parser.add_argument(
        "--map",
        action="append",
        metavar="COND=CLASS[,CLASS...]",
        help="classes whose boxes make a condition 1 (repeat per condition; default "
        + " ".join(f"--map {c}={','.join(n)}" for c, n in DEFAULT_MAP.items())
        + "); conditions not mapped stay unknown",
    )
    parser.add_argument("--source-name", default=None, help="`source` column (default: SRC name)")
    parser.add_argument(
        "--no-tone",
        action="store_true",
        help="skip the skin-tone estimate (faster; tone columns left out)",
    )
    parser.add_argument(
        "--tone-labels",
        type=Path,
        default=None,
        help="by-eye skin-tone labels CSV (image, tone_by_eye) to check and ship as "
        f"OUT/{LABELS_FILENAME}",
    )
    args = parser.parse_args(argv)
    try:
        args.mapping = parse_map(args.map)
    except ValueError as exc:
        parser.error(str(exc))
    return run_cli(args, convert)


if __name__ == "__main__":
    sys.exit(main())
