"""Synthetic face-skin benchmark generator (canonical dataset format, see data/README.md).

    python -m data.synthetic --preset synthskin-v1       # the frozen benchmark -> data/synthskin-v1
    python -m data.synthetic --out DIR --n 200 --seed 7 [--size 256] [--workers 2] [--json]
    python -m data.synthetic --preset synthskin-v1 --seed 1 --n 6000 --splits 0,0,1 --out DIR
        # an evaluation-only draw from the benchmark's distribution (every image in "test")

Each image is drawn from its own generator ``np.random.default_rng([seed, index])``, so the
output does not depend on ``--workers`` and the same arguments give byte-identical files.
Exit codes: 0 ok, 1 the output folder cannot be written, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from core.schema import CONDITIONS, GROUPS, fitzpatrick_to_group
from data.canonical import assign_splits
from data.synth import camera, conditions, render

GENERATOR = "data.synthetic"
GENERATOR_VERSION = "1.0.0"
METADATA_NAME = "metadata.csv"
DATASET_JSON = "dataset.json"
DATACARD_JSON = "datacard.json"  # provenance read by the fairness report and the model card
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)
_GOLDEN = 0.6180339887498949  # low-discrepancy step: any prefix of n images matches the mix to ~1/n


class SynthError(Exception):
    """A problem with the generator's arguments or output folder (one line for the CLI)."""


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines a synthetic dataset (same config -> same bytes)."""

    n: int = 200
    seed: int = 0
    size: int = 256
    group_mix: tuple[float, float, float] = (0.45, 0.40, 0.15)  # I-II, III-IV, V-VI
    contrast: tuple[float, float, float] = (1.0, 1.0, 0.7)  # lesion contrast per group
    prevalence: tuple[float, float, float] = (0.4, 0.4, 0.35)  # acne, hyperpigm., wrinkles
    label_noise: float = 0.0  # probability of flipping each written label (masks keep the truth)
    source: str = "synthetic"

    def validate(self) -> None:
        """Raise SynthError naming the first bad field."""
        if self.n < 1:
            raise SynthError(f"n must be >= 1, got {self.n}")
        if not 64 <= self.size <= 2048:
            raise SynthError(f"size must be between 64 and 2048 pixels, got {self.size}")
        _check_triple("group_mix", self.group_mix, 0.0, 1.0)
        if abs(sum(self.group_mix) - 1.0) > 1e-3:
            raise SynthError(f"group_mix must sum to 1, got {sum(self.group_mix):.4f}")
        _check_triple("contrast", self.contrast, 0.0, 3.0)
        _check_triple("prevalence", self.prevalence, 0.0, 1.0)
        if not 0.0 <= self.label_noise <= 0.5:
            raise SynthError(f"label_noise must be in [0, 0.5], got {self.label_noise}")


def _check_triple(name: str, values: Sequence[float], lo: float, hi: float) -> None:
    if len(values) != 3:
        raise SynthError(f"{name} needs 3 values, got {len(values)}")
    for v in values:
        if not lo <= v <= hi or v != v:
            raise SynthError(f"{name} values must be in [{lo}, {hi}], got {list(values)}")


PRESETS: dict[str, SynthConfig] = {
    # Frozen: every fairness number in the project refers to this preset. Never change it;
    # add synthskin-v2 instead.
    "synthskin-v1": SynthConfig(
        n=3000,
        seed=20251125,
        size=256,
        group_mix=(0.45, 0.40, 0.15),
        contrast=(1.0, 1.0, 0.7),
        prevalence=(0.4, 0.4, 0.35),
        label_noise=0.0,
        source="synthskin-v1",
    ),
}
PRESET_DEFAULT_OUT = {"synthskin-v1": Path("data/synthskin-v1")}


def fitzpatrick_for_index(config: SynthConfig, index: int, rng: np.random.Generator) -> int:
    """Fitzpatrick type of image `index`: its group from a seeded golden-ratio sequence
    (so the mix holds within ~1/n for any n), its type within the group from `rng`."""
    offset = (config.seed * _GOLDEN) % 1.0
    u = (offset + index * _GOLDEN) % 1.0
    cum = np.cumsum(config.group_mix)
    group = min(int(np.searchsorted(cum, u, side="right")), len(GROUPS) - 1)
    return 2 * group + 1 + int(rng.integers(2))


def make_record(config: SynthConfig, index: int) -> tuple[dict[str, object], bytes, bytes]:
    """Render image `index`: (metadata row without split, JPEG bytes, mask PNG bytes)."""
    rng = np.random.default_rng([config.seed, index])
    fitz = fitzpatrick_for_index(config, index, rng)
    group = fitzpatrick_to_group(fitz)
    subject = conditions.sample_subject(rng, config.prevalence)
    contrast = config.contrast[GROUPS.index(group)]
    sample = render.render_sample(
        rng, size=config.size, fitzpatrick=fitz, subject=subject, contrast=contrast
    )
    clean = (subject.acne, subject.hyperpigmentation, subject.wrinkles)
    noisy = conditions.apply_label_noise(clean, config.label_noise, rng)
    stem = f"synth_{index:06d}"
    row: dict[str, object] = {"image": f"images/{stem}.jpg"}
    for name, value in zip(CONDITIONS, noisy, strict=True):
        row[name] = int(value)
    row.update(
        acne_severity=subject.acne_severity,
        fitzpatrick=fitz,
        source=config.source,
        subject_id=f"synth-{config.seed}-{index:06d}",
        mask=f"masks/{stem}.png",
        group=group,
        age=subject.age,
        acne_lesion_count=subject.acne_lesions,
        ita_true=round(sample.ita, 2),
        skin_lab=" ".join(f"{v:.2f}" for v in sample.skin_lab),
        face_box=" ".join(f"{v:.1f}" for v in sample.face_box),
        jpeg_quality=sample.jpeg_quality,
    )
    for name, value in zip(CONDITIONS, clean, strict=True):
        row[f"{name}_true"] = int(value)
    return (
        row,
        camera.encode_jpeg(sample.rgb, sample.jpeg_quality),
        camera.encode_mask_png(sample.masks),
    )


def _init_worker() -> None:
    cv2.setNumThreads(1)


def _work(job: tuple[SynthConfig, int]) -> tuple[dict[str, object], bytes, bytes]:
    return make_record(*job)


def iter_records(
    config: SynthConfig, *, workers: int = 1
) -> Iterator[tuple[dict[str, object], bytes, bytes]]:
    """Records for indices 0..n-1 in order; `workers` > 1 renders them in a process pool."""
    jobs = ((config, i) for i in range(config.n))
    if workers <= 1:
        _init_worker()
        yield from map(_work, jobs)
        return
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        yield from pool.imap(_work, jobs, chunksize=8)


def _prepare_out(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise SynthError(f"{out}: exists and is not a folder")
        if any(out.iterdir()) and not _is_generated(out):
            raise SynthError(
                f"{out}: folder exists, is not empty and was not written by {GENERATOR}; "
                "choose another --out"
            )


def _is_generated(out: Path) -> bool:
    try:
        info = json.loads((out / DATASET_JSON).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("generator") == GENERATOR


def datacard(preset: str | None) -> dict[str, str]:
    """Provenance of a generated set (fairness.model_card's datacard format)."""
    return {
        "name": preset or "synthetic",
        "licence": "Apache-2.0 (generated by this project's data.synthetic)",
        "attribution": "synthetic faces generated by face-skin-analysis (python -m data.synthetic)",
        "tone_source": "labelled",
    }


def summarize(
    df: pd.DataFrame,
    config: SynthConfig,
    preset: str | None,
    splits: Sequence[float] = SPLIT_FRACTIONS,
) -> dict[str, object]:
    """The dataset.json content: generator, arguments, seed, target and observed mix."""
    n = len(df)
    groups = df["group"].value_counts()
    fitz = df["fitzpatrick"].value_counts()
    summary: dict[str, object] = {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "preset": preset,
        "config": asdict(config),
        "seed": config.seed,
        "num_images": n,
        "group_mix_target": dict(zip(GROUPS, config.group_mix, strict=True)),
        "group_mix": {g: round(int(groups.get(g, 0)) / n, 4) for g in GROUPS},
        "group_counts": {g: int(groups.get(g, 0)) for g in GROUPS},
        "fitzpatrick_counts": {str(t): int(fitz.get(t, 0)) for t in range(1, 7)},
        "prevalence": {c: round(float(df[f"{c}_true"].mean()), 4) for c in CONDITIONS},
        "split_counts": {s: int((df["split"] == s).sum()) for s in ("train", "val", "test")},
        "mask_channels": list(CONDITIONS),
        "disclaimer": "synthetic benchmark: numbers on it are synthetic results",
        "synthetic": True,
    }
    if tuple(splits) != SPLIT_FRACTIONS:  # recorded only when not the default (frozen sets)
        summary["split_fractions"] = dict(zip(("train", "val", "test"), splits, strict=True))
    return summary


def generate_dataset(
    out: str | os.PathLike[str],
    config: SynthConfig,
    *,
    workers: int = 1,
    progress: bool = True,
    preset: str | None = None,
    splits: Sequence[float] = SPLIT_FRACTIONS,
) -> dict[str, object]:
    """Write the dataset to `out` atomically (temp folder, then rename) and return its summary.

    `splits` are the train/val/test fractions; ``(0, 0, 1)`` makes an evaluation-only draw.
    """
    config.validate()
    check_splits(splits)
    if workers < 1:
        raise SynthError(f"workers must be >= 1, got {workers}")
    out = Path(out)
    _prepare_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        (tmp / "images").mkdir(parents=True)
        (tmp / "masks").mkdir()
        rows = []
        bar = tqdm(total=config.n, desc="synthetic", unit="img", disable=None if progress else True)
        for row, jpeg, png in iter_records(config, workers=workers):
            (tmp / str(row["image"])).write_bytes(jpeg)
            (tmp / str(row["mask"])).write_bytes(png)
            rows.append(row)
            bar.update(1)
        bar.close()
        df = assign_splits(pd.DataFrame(rows), seed=config.seed, fractions=tuple(splits))
        first = [
            "image",
            *CONDITIONS,
            "acne_severity",
            "fitzpatrick",
            "split",
            "source",
            "subject_id",
            "mask",
        ]
        df = df[first + [c for c in df.columns if c not in first]]
        df.to_csv(tmp / METADATA_NAME, index=False, lineterminator="\n")
        summary = summarize(df, config, preset, splits)
        (tmp / DATASET_JSON).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        (tmp / DATACARD_JSON).write_text(json.dumps(datacard(preset), indent=2) + "\n")
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def check_splits(splits: Sequence[float]) -> None:
    """Raise SynthError unless `splits` are three non-negative train/val/test fractions summing
    to 1."""
    if len(splits) != 3:
        raise SynthError(f"splits needs 3 values (train,val,test), got {len(splits)}")
    if min(splits) < 0 or abs(sum(splits) - 1.0) > 1e-6:
        raise SynthError(f"splits must be non-negative and sum to 1, got {tuple(splits)}")


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def make_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        prog="python -m data.synthetic",
        description="Generate the synthetic face-skin benchmark in the canonical dataset format. "
        "Exit codes: 0 ok, 1 output folder problem, 2 bad arguments.",
    )
    p.add_argument("--out", type=Path, help="output folder (default for a preset: data/<preset>)")
    p.add_argument("--n", type=int, help="number of images")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--size", type=int, help="image side in pixels (default 256)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="a frozen configuration")
    p.add_argument(
        "--group-mix", type=_floats, help="fractions of I-II,III-IV,V-VI (default 0.45,0.40,0.15)"
    )
    p.add_argument("--contrast", type=_floats, help="lesion contrast per group (default 1,1,0.7)")
    p.add_argument(
        "--prevalence", type=_floats, help="acne,hyperpigmentation,wrinkles (default 0.4,0.4,0.35)"
    )
    p.add_argument("--label-noise", type=float, help="label flip probability (default 0)")
    p.add_argument(
        "--splits",
        type=_floats,
        help="train,val,test fractions (default 0.7,0.15,0.15; 0,0,1 = an evaluation-only draw)",
    )
    p.add_argument(
        "--workers", type=int, default=1, help="processes (output does not depend on it)"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


_KNOBS = ("n", "seed", "size", "group_mix", "contrast", "prevalence", "label_noise")


def config_from_args(args: argparse.Namespace) -> tuple[SynthConfig, Path, str | None]:
    """Turn parsed arguments into (config, output folder, preset name)."""
    given = {k: getattr(args, k) for k in _KNOBS if getattr(args, k) is not None}
    given = {k: tuple(v) if isinstance(v, (tuple, list)) else v for k, v in given.items()}
    if args.preset:
        preset = PRESETS[args.preset]
        out = args.out or PRESET_DEFAULT_OUT[args.preset]
        changed = {k: v for k, v in given.items() if v != getattr(preset, k)}
        if not changed:  # flags that repeat the preset's values keep it the frozen benchmark
            return preset, out, args.preset
        if args.out is None:
            flags = ", ".join("--" + k.replace("_", "-") for k in sorted(changed))
            raise SynthError(
                f"{flags} change preset {args.preset}; give --out for the modified set "
                f"({PRESET_DEFAULT_OUT[args.preset]} holds the frozen benchmark only)"
            )
        return replace(preset, **changed), out, None  # a custom set, labelled "synthetic"
    missing = [f"--{k}" for k in ("out", "n", "seed") if getattr(args, k) is None]
    if missing:
        raise SynthError(f"missing {', '.join(missing)} (or use --preset {sorted(PRESETS)[0]})")
    config = replace(
        SynthConfig(), **{k: tuple(v) if isinstance(v, tuple) else v for k, v in given.items()}
    )
    return config, args.out, None


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        config, out, preset = config_from_args(args)
        config.validate()
        splits = tuple(args.splits) if args.splits is not None else SPLIT_FRACTIONS
        check_splits(splits)
        if preset and splits != SPLIT_FRACTIONS:  # re-splitting the frozen images: refuse
            raise SynthError(
                f"--splits changes preset {preset}; give --out and another --seed for a new draw"
            )
        if args.workers < 1:
            raise SynthError(f"workers must be >= 1, got {args.workers}")
    except SynthError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        summary = generate_dataset(out, config, workers=args.workers, preset=preset, splits=splits)
    except (SynthError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"out": str(out), **summary}, indent=2, sort_keys=True))
    else:
        mix = ", ".join(f"{g} {v:.1%}" for g, v in summary["group_mix"].items())
        print(f"wrote {summary['num_images']} images to {out} (groups: {mix})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
