"""TFDS builder over the canonical dataset format: face crops in array_record shards.

Each example is the face crop the serving path would see (same preprocessing functions:
`preprocessing.pipeline.first_face_crop`, the first face of `analyze_image`), with the lesion
mask carried into the crop by the same affine transform. Images without a detected face fall
back to a centred square crop and are marked `face_found=0`. No TensorFlow is needed.
Besides the labels each example carries its tone `group` (from `fitzpatrick`, else the optional
`fitzpatrick_group`: `data.splits.row_group`), `acne_severity` (0-3, -1 = unknown),
`acne_lesion_count` (the acne lesion count, -1 = unknown) and `tone_source` (`labelled`,
`estimated` or empty = unknown; a row with a Fitzpatrick type and no `tone_source` is
`labelled`).

    from data.tfds_builder import build_dataset
    builder = build_dataset("data/synthskin-v1", crop_size=64)   # built once, cached in DIR/tfds/
    train = builder.as_data_source(split="train")

The cache may live outside the dataset folder (`cache_dir`; the DVC pipeline keeps it in
`outputs/pipeline/tfds`, so regenerating the data does not delete it mid-run):

    python -m data.tfds_builder --data data/synthskin-v1 --out outputs/pipeline/tfds \
        --image-size 96 [--json]

Several `--data DIR --out CACHE` pairs build in one process and crop each distinct image file
once (by content hash): the DVC pipeline builds the real and synthetic datasets and their
combination, which holds the same files, in one call.

Exit codes: 0 built (or already built), 2 bad arguments, 3 dataset problem.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import tensorflow_datasets as tfds

from core.schema import CONDITIONS, GROUPS, SEVERITY_GRADES, SPLITS, TONE_SOURCES
from data.canonical import COUNT_COLUMN, load_metadata
from data.splits import row_group
from preprocessing.align import warp_to_crop
from preprocessing.face_detect import FaceDetector
from preprocessing.image_io import InvalidImageError, load_image
from preprocessing.pipeline import first_face_crop

# (crop uint8 [S, S, 3], affine original -> crop or None (centred square), image (h, w)) by the
# SHA-1 of the image file: one build process crops each distinct image once (`main`).
FaceCrop = tuple[np.ndarray, Any, tuple[int, int]]
FaceCrops = dict[str, FaceCrop]

FILE_FORMAT = "array_record"
CACHE_DIRNAME = "tfds"  # default cache: DIR/tfds beside the dataset
BUILD_STATS_FILE = "build_stats.json"
EXIT_ARGS, EXIT_DATA = 2, 3


class NotBuiltError(FileNotFoundError):
    """The face crops are not in the cache and building them was not allowed."""


class CanonicalFaces(tfds.core.GeneratorBasedBuilder):
    """Face crops of one canonical dataset directory, one TFDS config per crop size."""

    # A new version is a new cache folder: bump it whenever the features change.
    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {
        "1.0.0": "Face crops, lesion masks, labels with NaN = unknown, tone group.",
        "1.1.0": "acne_severity and tone_source; group also from fitzpatrick_group.",
        "1.2.0": "acne_lesion_count.",
    }

    # Nothing is downloaded, so there is no checksums file; TFDS's lookup of one next to the
    # source would import `importlib_resources`, which is not a dependency.
    url_infos = None

    def __init__(
        self,
        *,
        source_dir: str | Path,
        crop_size: int,
        face_crops: FaceCrops | None = None,
        **kwargs: Any,
    ) -> None:
        self._source_dir = Path(source_dir).resolve()
        self._crop_size = int(crop_size)
        self._cropper, mode = make_cropper(self._crop_size)
        self._face_crops = face_crops
        self.face_stats: dict[str, int] = {}
        # One config per crop size, crop method and metadata content: a regenerated dataset or
        # the arrival of the face detector gives a fresh build instead of a stale cache.
        digest = hashlib.sha1((self._source_dir / "metadata.csv").read_bytes()).hexdigest()[:10]
        config = tfds.core.BuilderConfig(name=f"crop{self._crop_size}_{mode}_{digest}")
        super().__init__(config=config, file_format=FILE_FORMAT, **kwargs)

    @property
    def crop_size(self) -> int:
        """Side of the square face crops in pixels."""
        return self._crop_size

    def _info(self) -> tfds.core.DatasetInfo:
        s = self._crop_size
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"Face crops ({s}x{s}) of {self._source_dir.name} in the canonical format.",
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Text(),  # `image` column of metadata.csv
                    "row": np.int32,  # row index in metadata.csv
                    "image": tfds.features.Image(shape=(s, s, 3), encoding_format="png"),
                    "mask": tfds.features.Image(shape=(s, s, 3), encoding_format="png"),
                    "labels": tfds.features.Tensor(shape=(len(CONDITIONS),), dtype=np.float32),
                    "fitzpatrick": np.int32,  # 1-6, 0 = unknown
                    "group": np.int32,  # index into GROUPS, -1 = unknown
                    "acne_severity": np.int32,  # 0-3 (SEVERITY_GRADES), -1 = unknown
                    "acne_lesion_count": np.int32,  # acne lesion count, -1 = unknown
                    "tone_source": tfds.features.Text(),  # labelled | estimated | "" (unknown)
                    "split": tfds.features.Text(),
                    "face_found": np.int32,  # 1 = detector found a face, 0 = centred-crop fallback
                }
            ),
            homepage="https://example.invalid/face-skin-analysis",
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[tuple[str, dict]]]:
        df = read_metadata(self._source_dir / "metadata.csv")
        self.face_stats = {"found": 0, "fallback": 0}
        present = [s for s in SPLITS if (df["split"] == s).any()]
        return {s: self._generate_examples(df[df["split"] == s]) for s in present}

    def _generate_examples(self, df: pd.DataFrame) -> Iterator[tuple[str, dict]]:
        from tqdm.auto import tqdm

        split = str(df["split"].iloc[0]) if len(df) else ""
        for row_index, row in tqdm(
            df.iterrows(), total=len(df), desc=f"face crops ({split})", disable=None
        ):
            rel = str(row["image"])
            crop, affine, shape = self._face_crop(self._source_dir / rel)
            mask = _load_mask(self._source_dir, row, shape)
            if affine is None:
                mask_crop = centre_crop(mask, self._crop_size, nearest=True)
            else:
                mask_crop = warp_to_crop(mask, affine, self._crop_size, nearest=True)
            found = affine is not None
            self.face_stats["found" if found else "fallback"] += 1
            fitz = _int_or_none(row.get("fitzpatrick"))
            group = row_group(fitz, row.get("fitzpatrick_group"))
            severity = _int_or_none(row.get("acne_severity"))
            yield (
                rel,
                {
                    "id": rel,
                    "row": int(row_index),
                    "image": encode_png(crop),
                    "mask": encode_png(np.asarray(mask_crop, np.uint8)),
                    "labels": np.array([_label(row.get(c)) for c in CONDITIONS], np.float32),
                    "fitzpatrick": fitz or 0,
                    "group": GROUPS.index(group) if group else -1,
                    "acne_severity": _severity(severity, rel),
                    "acne_lesion_count": _lesion_count(row.get(COUNT_COLUMN), rel),
                    "tone_source": tone_source(row.get("tone_source"), fitz),
                    "split": str(row["split"]),
                    "face_found": int(found),
                },
            )

    def _face_crop(self, path: Path) -> FaceCrop:
        """The crop of one image file, from `face_crops` when the same bytes were cropped."""
        try:
            data = path.read_bytes()
        except OSError as err:  # as load_image words it: the file, then the reason
            raise InvalidImageError(f"{path}: cannot read file ({err.strerror})") from None
        key = None if self._face_crops is None else hashlib.sha1(data).hexdigest()
        if key is not None and key in self._face_crops:
            return self._face_crops[key]
        image = load_image(data, name=str(path))
        crop, affine = self._cropper(image)
        out = (crop, affine, (int(image.shape[0]), int(image.shape[1])))
        if key is not None:
            self._face_crops[key] = out
        return out


def read_metadata(csv_path: Path) -> pd.DataFrame:
    """Read metadata.csv with the canonical validator (row index = CSV row)."""
    return load_metadata(csv_path)


def make_cropper(size: int) -> tuple[Callable[[np.ndarray], tuple[np.ndarray, Any]], str]:
    """Return (`crop(image) -> (crop, affine or None)`, mode "face").

    The crop is the serving preprocessing's (`first_face_crop`: the first face of
    `analyze_image`, without its tone estimate), with its affine (original -> crop) for the
    lesion mask. An image without a verified face gets its largest centred square instead and
    no affine (`face_found=0`).
    """
    detector = FaceDetector()

    def crop(image: np.ndarray) -> tuple[np.ndarray, Any]:
        found = first_face_crop(image, size=size, detector=detector)
        if found is not None:
            face_crop, affine = found
            return np.asarray(face_crop, np.uint8), affine
        return centre_crop(image, size), None

    return crop, "face"


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8 image (TFDS would need TensorFlow to encode arrays itself)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot PNG-encode an image of shape {image.shape}")
    return buf.tobytes()


def centre_crop(image: np.ndarray, size: int, *, nearest: bool = False) -> np.ndarray:
    """Largest centred square of `image`, resized to `size` x `size`."""
    h, w = image.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    square = image[y0 : y0 + side, x0 : x0 + side]
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    out = cv2.resize(square, (size, size), interpolation=interp)
    return np.ascontiguousarray(out, dtype=np.uint8)


def _load_mask(root: Path, row: pd.Series, shape: tuple[int, int]) -> np.ndarray:
    value = row.get("mask")
    if _missing(value):
        return np.zeros((*shape, 3), np.uint8)
    path = root / str(value)
    m = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if m is None:
        raise ValueError(f"{path}: cannot decode lesion mask (row image={row['image']})")
    m = cv2.cvtColor(m, cv2.COLOR_BGR2RGB)
    if m.shape[:2] != shape:
        m = cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return m


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "") or bool(pd.isna(value))


def _label(value: Any) -> float:
    return float("nan") if _missing(value) else float(value)


def _int_or_none(value: Any) -> int | None:
    return None if _missing(value) else int(value)


def _severity(value: int | None, image: str) -> int:
    if value is None:
        return -1
    if value not in SEVERITY_GRADES:
        raise ValueError(
            f"row image={image}: acne_severity must be one of {list(SEVERITY_GRADES)} or empty, "
            f"got {value!r}"
        )
    return int(value)


def _lesion_count(value: Any, image: str) -> int:
    if _missing(value):
        return -1
    count = int(value)
    if count < 0:
        raise ValueError(f"row image={image}: {COUNT_COLUMN} must be >= 0 or empty, got {count}")
    return count


def tone_source(value: Any, fitzpatrick: int | None) -> str:
    """`tone_source` of a row: the column's value, else "labelled" when a Fitzpatrick type is
    given, else "" (unknown; e.g. a group-only row of a dataset without the column)."""
    if not _missing(value):
        text = str(value).strip()
        if text not in TONE_SOURCES:
            raise ValueError(
                f"tone_source must be one of {sorted(TONE_SOURCES)} or empty, got {value!r}"
            )
        return text
    return "labelled" if fitzpatrick is not None else ""


def default_cache_dir(source_dir: str | Path) -> Path:
    """Where the crops of `source_dir` are cached when no cache folder is given: DIR/tfds."""
    return Path(source_dir).resolve() / CACHE_DIRNAME


def build_dataset(
    source_dir: str | Path,
    *,
    crop_size: int,
    cache_dir: str | Path | None = None,
    build: bool = True,
    face_crops: FaceCrops | None = None,
) -> CanonicalFaces:
    """Build the face crops of `source_dir` once and return the builder.

    The array_record shards go to `cache_dir` (default DIR/tfds). With `build=False` a missing
    build raises `NotBuiltError` instead (a reader that must not write, e.g. the DVC train stage).
    `face_crops` (shared between builds) reuses the crop of an image file another build of
    the same crop size already made (the combined dataset holds the real and synthetic files).
    """
    source_dir = Path(source_dir).resolve()
    if not (source_dir / "metadata.csv").is_file():
        raise FileNotFoundError(f"{source_dir}: no metadata.csv (not a canonical dataset)")
    cache = Path(cache_dir).resolve() if cache_dir else default_cache_dir(source_dir)
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # TFDS's "custom configuration" / "no dataset_info" chatter
    try:
        builder = CanonicalFaces(
            source_dir=source_dir, crop_size=crop_size, face_crops=face_crops, data_dir=str(cache)
        )
        if not builder.is_prepared():
            if not build:
                raise NotBuiltError(
                    f"{cache}: no face crops of {source_dir} at {crop_size} px; build them with "
                    f"python -m data.tfds_builder --data {source_dir} --out {cache} "
                    f"--image-size {crop_size}"
                )
            tfds.display_progress_bar(False)  # our own bar counts the face crops
            # TFDS prints "Downloading and preparing dataset ..." although nothing is downloaded:
            # say what happens in our own words and keep stdout free for --json.
            print(
                f"building {crop_size} px face crops of {source_dir} into {cache} "
                "(once; later runs reuse them)",
                file=sys.stderr,
            )
            with contextlib.redirect_stdout(io.StringIO()), deterministic_serialization():
                builder.download_and_prepare()
            stats_path = Path(builder.data_dir) / BUILD_STATS_FILE
            stats_path.write_text(json.dumps(builder.face_stats, indent=2) + "\n")
    finally:
        absl.setLevel(level)
    return builder


@contextlib.contextmanager
def deterministic_serialization() -> Iterator[None]:
    """Make TFDS write each `tf.train.Example` with its feature map sorted by key.

    TFDS serializes with `SerializeToString()`, whose map order differs between processes: two
    builds of the same data held the same records in other bytes, so the shards (and DVC's hash
    of the cache) were not reproducible. `deterministic=True` sorts the map; reading is unchanged.
    """
    from tensorflow_datasets.core import example_serializer

    cls = example_serializer.ExampleSerializer
    original = cls.serialize_example

    def serialize_example(self: Any, example: Any) -> bytes:
        return self.get_tf_example(example).SerializeToString(deterministic=True)

    cls.serialize_example = serialize_example
    try:
        yield
    finally:
        cls.serialize_example = original


def build_stats(builder: CanonicalFaces) -> dict[str, int]:
    """Face-detection counts recorded when the dataset was built ({} if unknown)."""
    path = Path(builder.data_dir) / BUILD_STATS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def build_summary(builder: CanonicalFaces) -> dict[str, Any]:
    """What a build holds: its folder, crop size, examples per split and face-detection counts."""
    splits = {name: int(info.num_examples) for name, info in sorted(builder.info.splits.items())}
    return {
        "data_dir": str(builder.data_dir),
        "config": builder.builder_config.name,
        "image_size": builder.crop_size,
        "num_examples": sum(splits.values()),
        "splits": splits,
        "face_detection": build_stats(builder),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(
        prog="python -m data.tfds_builder",
        description="Build the face crops of canonical datasets into TFDS array_record shards "
        "(what training reads). Several --data/--out pairs build in one process, cropping each "
        "distinct image file once. Exit codes: 0 ok, 2 bad arguments, 3 dataset problem.",
    )
    p.add_argument(
        "--data", required=True, type=Path, action="append", help="canonical dataset folder"
    )
    p.add_argument(
        "--out",
        type=Path,
        action="append",
        help="cache folder for the shards (default DATA/tfds, beside the data); with several "
        "--data, one --out each, in the same order, with different folder names",
    )
    p.add_argument("--image-size", type=int, default=96, help="crop side in pixels (default 96)")
    p.add_argument(
        "--json",
        action="store_true",
        help="print the build summary as JSON (several datasets: one per --out folder name)",
    )
    args = p.parse_args(argv)
    if args.image_size < 8:
        p.error(f"--image-size must be >= 8, got {args.image_size}")
    if len(args.data) > 1:
        names = [out.name for out in args.out or []]
        if len(names) != len(args.data):
            p.error(f"{len(args.data)} --data need as many --out, got {len(names)}")
        if len(set(names)) != len(names):
            p.error(f"the --out folders need different names, got {names}")
    elif args.out and len(args.out) > 1:
        p.error(f"one --data takes one --out, got {len(args.out)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    args = parse_args(argv)
    outs = args.out or [None]
    # Several datasets share their crops (held in memory until the call ends); one needs none.
    face_crops: FaceCrops | None = {} if len(args.data) > 1 else None
    summaries = {}
    for data, out in zip(args.data, outs, strict=True):
        try:
            builder = build_dataset(
                data, crop_size=args.image_size, cache_dir=out, face_crops=face_crops
            )
        except (FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_DATA
        summaries[out.name if out else data.name] = _cli_summary(builder)
    if args.json:
        payload = next(iter(summaries.values())) if len(summaries) == 1 else summaries
        print(json.dumps(payload, indent=2, sort_keys=True))
    else:
        for summary in summaries.values():
            print(
                f"{summary['num_examples']} face crops ({args.image_size} px) in "
                f"{summary['data_dir']} (splits: {summary['splits']}, face detection: "
                f"{summary['face_detection']})"
            )
    return 0


def _cli_summary(builder: CanonicalFaces) -> dict[str, Any]:
    """`build_summary` with the folder relative to the working directory when inside it, so
    that a pipeline's recorded summary (dvc.yaml's build stage) is the same in every clone."""
    summary = build_summary(builder)
    data_dir, cwd = Path(summary["data_dir"]), Path.cwd()
    if data_dir.is_relative_to(cwd):
        summary["data_dir"] = str(data_dir.relative_to(cwd))
    return summary


if __name__ == "__main__":
    sys.exit(main())
