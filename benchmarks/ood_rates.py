"""How often the out-of-distribution warning fires, per image set, through the served pipeline.

    python benchmarks/ood_rates.py --faces data/acne-new-v36 --synthetic data/synthskin-v1
        [--model-dir DIR] [--train-limit 150] [--synthetic-limit 100] [--json]

One `client.runner.EmbeddedRunner` analyses every image from its file bytes, as a served request
would; each analysed face (or region) counts once. The sets:

- acne-new valid: every `val` row of `<faces>/metadata.csv` (the set `train_jax.ood` calibrates
  its limit on, so about 5 % by construction);
- acne-new train: the first `--train-limit` `train` rows (faces the features were fitted on);
- synthetic test: the first `--synthetic-limit` `test` rows of `<synthetic>/metadata.csv`;
- real faces from packages: scikit-image's astronaut, insightface's Tom_Hanks_54745 (grayscale)
  and t1.jpg (six faces);
- non-faces as skin regions: the scikit-image data images without a face
  (`robustness.shipped_images`), each analysed with `region="whole"`, as `--region whole` does.

Images are only read. Exit codes: 0 ok, 2 bad input.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.robustness import BenchmarkError, face_photos, shipped_images  # noqa: E402
from client.runner import DEFAULT_MODEL_DIR, EmbeddedRunner, ModelDirError  # noqa: E402

PACKAGE_FACES = (
    ("skimage", "data/astronaut.png"),
    ("insightface", "data/images/Tom_Hanks_54745.png"),
    ("insightface", "data/images/t1.jpg"),
)


def dataset_rows(root: Path, split: str, limit: int | None) -> list[tuple[str, bytes]]:
    """(name, bytes) of the first `limit` photos of `split` in `root`/metadata.csv."""
    return [(p.name, p.read_bytes()) for p in face_photos(root, limit, split)]


def package_faces() -> list[tuple[str, bytes]]:
    """(name, bytes) of the real face photos that ship in scikit-image and insightface (found
    without importing them)."""
    out = []
    for package, rel in PACKAGE_FACES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"{package} is not installed: it ships the photo {rel}")
        path = Path(spec.submodule_search_locations[0]) / rel
        out.append((path.name, path.read_bytes()))
    return out


def flagged(runner, images: list[tuple[str, bytes]], label: str, region: str = "face") -> dict:
    """Analysed faces, how many the warning flags, and the range of their distances; for
    `region="whole"` also the images it does not flag."""
    distances, flags, passed = [], 0, {}
    for name, data in tqdm(images, desc=label, disable=None):
        raw = runner.analyze_bytes(data, region=region, heatmaps=False)
        for i in range(raw.num_faces):
            distances.append(float(raw.ood_distance[i]))
            flags += bool(raw.out_of_distribution[i])
            if not raw.out_of_distribution[i]:
                passed[name] = round(float(raw.ood_distance[i]), 2)
    n = len(distances)
    row = {
        "images": len(images),
        "faces": n,
        "flagged": flags,
        "flagged_rate": round(flags / n, 4) if n else None,
        "distance_min": round(min(distances), 2) if n else None,
        "distance_max": round(max(distances), 2) if n else None,
    }
    if region == "whole":  # the non-faces the warning lets through, with their distances
        row["not_flagged"] = passed
    return row


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--faces", type=Path, required=True, help="converted acne-new dataset folder")
    p.add_argument("--synthetic", type=Path, required=True, help="synthetic dataset folder")
    p.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="model folder")
    p.add_argument("--train-limit", type=int, default=150, help="acne-new train photos")
    p.add_argument("--synthetic-limit", type=int, default=100, help="synthetic test faces")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    try:
        runner = EmbeddedRunner(args.model_dir)
        sets = {
            "acne-new valid": dataset_rows(args.faces, "val", None),
            "acne-new train": dataset_rows(args.faces, "train", args.train_limit),
            "synthetic test": dataset_rows(args.synthetic, "test", args.synthetic_limit),
            "package faces": package_faces(),
        }
    except (BenchmarkError, ModelDirError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = {"model_dir": str(args.model_dir), "limit": runner.ood.limit if runner.ood else None}
    result["sets"] = {name: flagged(runner, images, name) for name, images in sets.items()}
    whole = [(name, data) for source, name, data in shipped_images() if source == "scikit-image"]
    result["sets"]["non-faces as skin regions"] = flagged(runner, whole, "whole", "whole")
    if args.json:
        print(json.dumps(result))
    else:
        for name, row in result["sets"].items():
            print(
                f"{name:28s} {row['flagged']:4d} of {row['faces']:4d} flagged "
                f"(distances {row['distance_min']}-{row['distance_max']})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
