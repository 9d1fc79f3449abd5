"""Fairness ablation on synthskin-v1: balancing, per-group thresholds and GroupDRO vs the gap.

    python benchmarks/fairness_ablation.py [--seeds 0,1,2] [--epochs N] [--image-size 96] [--json]
        [--heldout DIR [--heldout-tfds DIR]]

Variants (same data, same test split, same seeds, same base config); from
`balanced_bce_group_thresholds` on, every variant fits per-group thresholds:

- `baseline_bce`: no balancing, BCE, one global threshold per condition (fitted on val);
- `balanced_bce`: balanced sampling (`--balance group`), BCE, one global threshold;
- `balanced_bce_group_thresholds`: the same trained model with per-group thresholds;
- `balanced_groupdro`: plus GroupDRO (`--loss groupdro`);
- `balanced_groupdro_tone_norm`: plus the tone-aware input normalisation in the model graph
  (config variant `tone`, `train_jax.models.input_norm`);
- `balanced_groupdro_tone_norm_os4`: plus the small CNN at output stride 4 (config variant
  `os4`: a 24x24 feature map at 96 px, the same parameters); the last of the default
  `--variants`;
- `balanced_groupdro_tone_norm_os4_loc`: plus the lesion-localisation loss on the CAM (config
  variant `loc`, the demo's weight); at 24 epochs it is the demo config's training
  (`python train_jax/main.py`);
- `balanced_groupdro_tone_norm_loc`: the tone-norm variant with the localisation loss at
  stride 16 (no `os4`);
- `balanced_groupdro_tone_norm_os4_loc_select_worst_group`: the `..._os4_loc` training with the
  checkpoint chosen by validation worst-group F1 (`--select worst_group_f1`) instead of macro-F1;
- `balanced_groupdro_tone_norm_os8_loc`: the stride-16 `..._loc` variant at output stride 8
  (config variant `os8`: a 12x12 map at 96 px);
- `balanced_groupdro_tone_norm_os4_loc_wide`: `..._os4_loc` at width 1.0 (config variant `wide`:
  4x the parameters, about 2x the training time);
- `balanced_groupdro_tone_norm_os4_loc_wide_128px`: `..._wide` on 128 px crops instead of 96 (a
  32x32 map; about 1.8x the training time).

The base config is `--config` (default `train_jax/configs/demo.py:os16,imagenet,noloc`: the
demo's small CNN with a stride-16 map, ImageNet input normalisation and no lesion-localisation
loss, pinned so that a change of the demo's defaults does not change the ablation)
at `--image-size` (default 96 px, the demo size) for `--epochs` (default 12; the demo trains 24).

Each training runs `python train_jax/main.py` in a subprocess (this script never imports JAX),
into `<out>/<training run>-s<seed>/` (`TRAININGS`); an existing run with predictions is reused
unless `--retrain` (after checking that its config.json has the image size, input
normalisation, output stride, width, balancing, loss and epochs this run asks for).
Thresholds are fitted on val and applied to test with `fairness.thresholds`; metrics and
bootstrap CIs come from `fairness.evaluate`. Writes `reports/fairness_ablation.json` and the
table between the ablation markers of `docs/fairness.md`. All numbers are synthetic.

``--heldout DIR`` evaluates the same trained runs on another dataset's test split instead (an
evaluation-only draw from the benchmark's distribution, `python -m data.synthetic --preset
synthskin-v1 --seed 1 --n 6000 --splits 0,0,1 --out DIR`: about 900 V-VI faces where the
benchmark's test split has 66, so the CIs are about 4x narrower). Thresholds are still fitted on
each run's own validation split; predictions are written by `python -m train_jax.predict` to
`<run>/predictions_heldout-<DIR name>.csv` (reused when present). Give `--report` and `--doc` for
this table's own files.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.schema import CONDITIONS, GROUPS  # noqa: E402
from fairness.evaluate import evaluate_predictions  # noqa: E402
from fairness.io import atomic_write_text, read_predictions, to_arrays  # noqa: E402
from fairness.render import fmt_estimate  # noqa: E402
from fairness.thresholds import fit_thresholds  # noqa: E402

# variant -> (training run it uses, per-group thresholds?); the table's row order
VARIANTS = {
    "baseline_bce": ("baseline", False),
    "balanced_bce": ("balanced", False),
    "balanced_bce_group_thresholds": ("balanced", True),
    "balanced_groupdro": ("groupdro", True),
    "balanced_groupdro_tone_norm": ("groupdro_tone", True),
    "balanced_groupdro_tone_norm_os4": ("groupdro_tone_os4", True),
    "balanced_groupdro_tone_norm_os4_loc": ("groupdro_tone_os4_loc", True),
    "balanced_groupdro_tone_norm_loc": ("groupdro_tone_loc", True),
    "balanced_groupdro_tone_norm_os4_loc_select_worst_group": (
        "groupdro_tone_os4_loc_worst",
        True,
    ),
    "balanced_groupdro_tone_norm_os8_loc": ("groupdro_tone_os8_loc", True),
    "balanced_groupdro_tone_norm_os4_loc_wide": ("groupdro_tone_os4_loc_wide", True),
    "balanced_groupdro_tone_norm_os4_loc_wide_128px": ("groupdro_tone_os4_loc_wide_128", True),
}
BASELINE = "baseline_bce"  # always run; the goal's macro-F1 reference
DEFAULT_VARIANTS = (
    "baseline_bce",
    "balanced_bce",
    "balanced_bce_group_thresholds",
    "balanced_groupdro",
    "balanced_groupdro_tone_norm",
    "balanced_groupdro_tone_norm_os4",
)
FULL_PIPELINE = DEFAULT_VARIANTS[-1]
# training run -> (main.py flags, config variants appended to the base config or ""); its run
# folder is `<out>/<training run>-s<seed>`, shared by the variants above that name it
TRAININGS = {
    "baseline": (["--balance", "none", "--loss", "bce"], ""),
    "balanced": (["--balance", "group", "--loss", "bce"], ""),
    "groupdro": (["--balance", "group", "--loss", "groupdro"], ""),
    "groupdro_tone": (["--balance", "group", "--loss", "groupdro"], "tone"),
    "groupdro_tone_os4": (["--balance", "group", "--loss", "groupdro"], "tone,os4"),
    "groupdro_tone_os4_loc": (["--balance", "group", "--loss", "groupdro"], "tone,os4,loc"),
    "groupdro_tone_loc": (["--balance", "group", "--loss", "groupdro"], "tone,loc"),
    "groupdro_tone_os4_loc_worst": (
        ["--balance", "group", "--loss", "groupdro", "--select", "worst_group_f1"],
        "tone,os4,loc",
    ),
    "groupdro_tone_os8_loc": (["--balance", "group", "--loss", "groupdro"], "tone,os8,loc"),
    "groupdro_tone_os4_loc_wide": (
        ["--balance", "group", "--loss", "groupdro"],
        "tone,os4,loc,wide",
    ),
    # A per-training crop size beats --image-size (which sets the others).
    "groupdro_tone_os4_loc_wide_128": (
        ["--balance", "group", "--loss", "groupdro", "--image-size", "128"],
        "tone,os4,loc,wide",
    ),
}
GROUP_NAMES = GROUPS
MARK_START, MARK_END = "<!-- ablation:start -->", "<!-- ablation:end -->"
GOAL = {"gap_max": 0.05, "gap_ci_high_max": 0.10, "macro_f1_tolerance": 0.01}


def ensure_data(data: Path) -> None:
    """Generate the synthskin-v1 preset into `data` if it is not there yet.

    A private folder (default under --out) keeps other jobs that regenerate
    data/synthskin-v1 from deleting the TFDS shards under a running training.
    """
    if (data / "metadata.csv").is_file():
        return
    cmd = [sys.executable, "-m", "data.synthetic", "--preset", "synthskin-v1", "--out", str(data)]
    print(f"[ablation] generating {data}: {' '.join(cmd[1:])}", file=sys.stderr)
    if subprocess.run(cmd, cwd=ROOT, check=False).returncode != 0:
        raise RuntimeError(f"generating {data} failed")


def config_spec(base: str, variant: str) -> str:
    """`base` config spec with one more demo variant appended (`demo.py:os16` + `tone`).

    >>> config_spec("train_jax/configs/demo.py:os16,imagenet", "tone")
    'train_jax/configs/demo.py:os16,imagenet,tone'
    >>> config_spec("train_jax/configs/demo.py", "")
    'train_jax/configs/demo.py'
    """
    if not variant:
        return base
    return f"{base},{variant}" if ":" in base else f"{base}:{variant}"


def variant_stride(variant: str) -> int:
    """Output stride a config variant asks for (`os4`/`os8`/`os16`; the base config's is 16).

    >>> variant_stride("tone,os8,loc"), variant_stride("tone")
    (8, 16)
    """
    strides = [int(part[2:]) for part in variant.split(",") if re.fullmatch(r"os\d+", part)]
    return strides[-1] if strides else 16


def check_reused(run_dir: Path, run: str, args: argparse.Namespace) -> None:
    """Raise if a reused run was trained with other settings than this ablation asks for."""
    config = json.loads((run_dir / "config.json").read_text())
    flags, variant = TRAININGS[run]
    want = {
        "data.balance": flags[flags.index("--balance") + 1],
        "loss": flags[flags.index("--loss") + 1],
        "select": flags[flags.index("--select") + 1] if "--select" in flags else "macro_f1",
        "model.overrides.input_norm": "tone" if "tone" in variant else "imagenet",
        "model.overrides.output_stride": variant_stride(variant),
        "model.overrides.width": 1.0 if "wide" in variant.split(",") else 0.5,
    }
    have = {
        "data.balance": config["data"]["balance"],
        "loss": config["loss"],
        "select": config.get("select", "macro_f1"),
        "model.overrides.input_norm": config["model"]["overrides"].get("input_norm", "imagenet"),
        "model.overrides.output_stride": config["model"]["overrides"].get("output_stride", 16),
        "model.overrides.width": config["model"]["overrides"].get("width", 0.5),
    }
    if "noloc" in str(getattr(args, "config", "")):
        # Off in the base config; on where the variant appends `loc`. A run without a
        # loc_weight key counts as off.
        want["loc_weight > 0"] = "loc" in variant.split(",")
        have["loc_weight > 0"] = config.get("loc_weight", 0.0) > 0
    size = args.image_size
    if "--image-size" in flags:
        size = int(flags[flags.index("--image-size") + 1])
    if size:
        want["model.image_size"] = size
        have["model.image_size"] = config["model"]["image_size"]
    if getattr(args, "epochs", 0):
        want["epochs"] = args.epochs
        have["epochs"] = config["epochs"]
    diff = {k: (have[k], v) for k, v in want.items() if have[k] != v}
    if diff:
        raise ValueError(
            f"{run_dir}: existing run has other settings (have, want): {diff}; "
            "pass --retrain or another --out"
        )


def train(run: str, seed: int, args: argparse.Namespace) -> Path:
    """Train one training run (or reuse it); returns the run folder."""
    run_dir = args.out / f"{run}-s{seed}"
    if (run_dir / "predictions_test.csv").is_file() and not args.retrain:
        check_reused(run_dir, run, args)
        return run_dir
    flags, variant = TRAININGS[run]
    cmd = [
        sys.executable,
        str(ROOT / "train_jax/main.py"),
        "--config",
        config_spec(args.config, variant),
        "--data",
        str(args.data),
        "--seed",
        str(seed),
        "--out",
        str(args.out),
        "--run",
        run_dir.name,
        "--no-mlflow",
        "--no-progress",
        *flags,
    ]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    if args.image_size and "--image-size" not in flags:
        cmd += ["--image-size", str(args.image_size)]
    if run_dir.exists() and args.retrain:
        import shutil

        shutil.rmtree(run_dir)
    print(f"[ablation] training {run_dir.name}: {' '.join(cmd[1:])}", file=sys.stderr)
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"training {run_dir.name} failed with exit code {proc.returncode}")
    print(f"[ablation] {run_dir.name} trained in {time.monotonic() - start:.0f} s", file=sys.stderr)
    return run_dir


def heldout_predictions(run_dir: Path, args: argparse.Namespace) -> Path:
    """`run_dir`'s predictions on the test split of ``--heldout`` (written once, then reused)."""
    path = run_dir / f"predictions_heldout-{args.heldout.name}.csv"
    if path.is_file():
        return path
    cmd = [
        sys.executable,
        "-m",
        "train_jax.predict",
        "--run",
        str(run_dir),
        "--data",
        str(args.heldout),
        "--split",
        "test",
        "--out",
        str(path),
        "--no-progress",
    ]
    if args.heldout_tfds:
        cmd += ["--tfds-dir", str(args.heldout_tfds)]
    print(f"[ablation] predicting {run_dir.name} on {args.heldout}", file=sys.stderr)
    if subprocess.run(cmd, cwd=ROOT, check=False).returncode != 0:
        raise RuntimeError(f"predicting {run_dir.name} on {args.heldout} failed")
    return path


def run_code_version(run_dir: Path) -> str:
    """The training code a run was trained with: `<code digest> (<git commit>)` from its
    metrics.json (train_jax.tracking), "unknown" for a run whose metrics.json lacks it."""
    metrics = run_dir / "metrics.json"
    m = json.loads(metrics.read_text()) if metrics.is_file() else {}
    if "code_digest" not in m:
        return "unknown"
    return f"{m['code_digest']} ({m.get('code_version', 'unknown')})"


def code_versions(results: dict) -> dict[str, list[str]]:
    """Training-code digest -> the runs trained with it (commits in brackets), over `results`."""
    out: dict[str, list[str]] = {}
    for variant in results.values():
        for entry in variant["per_seed"]:
            digest, _, commit = entry["code_version"].partition(" ")
            runs = out.setdefault(digest, [])
            label = f"{entry['run']} {commit}".strip()
            if label not in runs:
                runs.append(label)
    return out


def evaluate_variant(run_dir: Path, per_group: bool, seed: int, args) -> dict:
    """Fit thresholds on val, evaluate test; the numbers the ablation table needs."""
    val = to_arrays(read_predictions(run_dir / "predictions_val.csv"))
    heldout = getattr(args, "heldout", None)
    test_csv = heldout_predictions(run_dir, args) if heldout else run_dir / "predictions_test.csv"
    test = to_arrays(read_predictions(test_csv))
    # min_positives above any count leaves every group on the global threshold.
    th = fit_thresholds(val.y_true, val.probs, val.groups, min_positives=5 if per_group else 10**9)
    m = evaluate_predictions(test, th, n_boot=args.n_boot, seed=seed)
    s = m["summary"]
    config = json.loads((run_dir / "config.json").read_text())
    return {
        "seed": seed,
        "run": str(run_dir),
        "code_version": run_code_version(run_dir),
        "thresholds": "per-group" if per_group else "global",
        "test_predictions": str(test_csv),
        "macro_f1": s["macro_f1"],
        "f1": {c: s[f"f1/{c}"] for c in CONDITIONS},
        "f1_by_group": {g: s[f"f1/{g}"] for g in GROUP_NAMES},
        "gap_dark_vs_medium_f1": s["gap_dark_vs_medium_f1"],
        "worst_group_f1": s["worst_group_f1"],
        # Macro AUROC per group: threshold-free separability, to tell a ranking gap from a
        # threshold gap.
        "auroc_by_group": {g: m["macro"]["by_group"][g]["auroc"] for g in GROUP_NAMES},
        "n_test": m["n"],
        "n_test_by_group": {
            g: m["conditions"][CONDITIONS[0]]["by_group"][g]["n"] for g in GROUP_NAMES
        },
        "config": config,
    }


def _mean(values: list) -> float | None:
    finite = [v for v in values if v is not None]
    return sum(finite) / len(finite) if finite else None


def _max_or_none(values: list) -> float | None:
    """Largest value, or None when any seed has none (no evidence is not a small gap)."""
    return None if not values or any(v is None for v in values) else max(values)


def aggregate(per_seed: list[dict]) -> dict:
    """Mean over seeds of each headline number (None where a seed had no value)."""

    def val(key: str, r: dict) -> float | None:
        return r[key].get("value")

    out = {
        "macro_f1": _mean([val("macro_f1", r) for r in per_seed]),
        "worst_group_f1": _mean([val("worst_group_f1", r) for r in per_seed]),
        "gap_dark_vs_medium_f1": _mean([val("gap_dark_vs_medium_f1", r) for r in per_seed]),
        "gap_ci_high_max": _max_or_none(
            [r["gap_dark_vs_medium_f1"].get("ci_high") for r in per_seed]
        ),
        "f1": {c: _mean([r["f1"][c].get("value") for r in per_seed]) for c in CONDITIONS},
        "f1_by_group": {
            g: _mean([r["f1_by_group"][g].get("value") for r in per_seed]) for g in GROUP_NAMES
        },
        "auroc_by_group": {
            g: _mean([r["auroc_by_group"][g].get("value") for r in per_seed]) for g in GROUP_NAMES
        },
        "seeds": [r["seed"] for r in per_seed],
    }
    return out


def goal_check(results: dict, full_name: str = FULL_PIPELINE) -> dict:
    """Is `full_name` (by default the full pipeline) within the fairness goal (GOAL)?"""
    base, full = results[BASELINE]["mean"], results[full_name]["mean"]
    gap, high = full["gap_dark_vs_medium_f1"], full["gap_ci_high_max"]
    checks = {
        "gap_le_0.05": gap is not None and gap <= GOAL["gap_max"],
        "gap_ci_high_le_0.10_every_seed": high is not None and high <= GOAL["gap_ci_high_max"],
        "macro_f1_within_0.01_of_baseline": (
            full["macro_f1"] is not None
            and base["macro_f1"] is not None
            and full["macro_f1"] >= base["macro_f1"] - GOAL["macro_f1_tolerance"]
        ),
    }
    return {**checks, "met": all(checks.values())}


def goal_cell(results: dict, name: str) -> str:
    """`yes / no / yes` for the three goal criteria of one variant ("-" for the baseline)."""
    if name == BASELINE:
        return "-"
    checks = goal_check(results, name)
    return " / ".join("yes" if checks[k] else "no" for k in checks if k != "met")


def table_markdown(results: dict, command: str, goal: dict, full_name: str = FULL_PIPELINE) -> str:
    """The ablation table for docs/fairness.md."""
    f = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    lines = [
        f"Command: `{command}` (synthetic data: these numbers say nothing about real faces).",
        "",
        "| variant | macro-F1 | "
        + " | ".join(f"F1 {c}" for c in CONDITIONS)
        + " | worst-group F1 | gap V-VI vs III-IV | max CI high of the gap"
        + " | AUROC III-IV | AUROC V-VI | goal: gap / CI / macro-F1 |",
        "|---|---|" + "---|" * len(CONDITIONS) + "---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        m = r["mean"]
        lines.append(
            f"| {name} | {f(m['macro_f1'])} | "
            + " | ".join(f(m["f1"][c]) for c in CONDITIONS)
            + f" | {f(m['worst_group_f1'])} | {f(m['gap_dark_vs_medium_f1'])} | "
            f"{f(m['gap_ci_high_max'])} | {f(m['auroc_by_group']['III-IV'])} | "
            f"{f(m['auroc_by_group']['V-VI'])} | {goal_cell(results, name)} |"
        )
    lines += ["", "Means over seeds; per seed (gap with its 95% bootstrap CI):", ""]
    for name, r in results.items():
        per = "; ".join(
            f"seed {x['seed']}: {fmt_estimate(x['gap_dark_vs_medium_f1'])}" for x in r["per_seed"]
        )
        lines.append(f"- {name}: {per}")
    lines += [
        "",
        f"Goal for the full pipeline ({full_name}) (gap <= 0.05, CI high <= 0.10, macro-F1 "
        f"within 0.01 of {BASELINE}): "
        f"{'met' if goal['met'] else 'not met'} "
        f"({', '.join(f'{k}: {v}' for k, v in goal.items() if k != 'met')}).",
        "",
        "Training code of the runs (`train_jax.tracking.code_digest`; the commits are in the "
        "JSON's `code_versions`): "
        + ", ".join(f"`{v}`" for v in sorted(code_versions(results)))
        + ".",
    ]
    return "\n".join(lines) + "\n"


def write_doc(doc: Path, table: str) -> None:
    """Replace the text between the ablation markers of docs/fairness.md (append if absent)."""
    text = doc.read_text(encoding="utf-8") if doc.is_file() else "# Fairness evaluation\n"
    block = f"{MARK_START}\n{table}{MARK_END}"
    if MARK_START in text and MARK_END in text:
        head, rest = text.split(MARK_START, 1)
        _, tail = rest.split(MARK_END, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n## Ablation\n\n" + block + "\n"
    atomic_write_text(doc, text)


def main(argv: list[str] | None = None) -> int:
    """Train the variants, evaluate them, write the JSON and the doc table."""
    p = argparse.ArgumentParser(
        prog="python benchmarks/fairness_ablation.py", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--data",
        type=Path,
        default=Path("outputs/ablation/synthskin-v1"),
        help="dataset folder; the synthskin-v1 preset is generated there if missing",
    )
    p.add_argument(
        "--config",
        default="train_jax/configs/demo.py:os16,imagenet,noloc",
        help="base training config (a variant's config variants, e.g. `tone,os4,loc`, are "
        "appended)",
    )
    p.add_argument(
        "--image-size", type=int, default=96, help="input size of every training (0: config's)"
    )
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training/bootstrap seeds")
    p.add_argument(
        "--epochs",
        type=int,
        default=12,
        help="epochs of every training (default 12; 0 keeps the config's, 24 for the demo config)",
    )
    p.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help=f"comma-separated variant names, from {list(VARIANTS)}; {BASELINE} is always run, "
        "the table follows the order above (default: %(default)s)",
    )
    p.add_argument(
        "--full",
        default="",
        help="variant whose goal check is the headline (default: the last one in the table)",
    )
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--out", type=Path, default=Path("outputs/ablation"))
    p.add_argument("--report", type=Path, default=Path("reports/fairness_ablation.json"))
    p.add_argument("--doc", type=Path, default=Path("docs/fairness.md"))
    p.add_argument("--retrain", action="store_true", help="retrain even if a run exists")
    p.add_argument(
        "--heldout",
        type=Path,
        help="evaluate on this canonical dataset's test split instead (thresholds from val)",
    )
    p.add_argument("--heldout-tfds", type=Path, help="crop cache of --heldout (default DIR/tfds)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    asked = {v.strip() for v in args.variants.split(",") if v.strip()} | {BASELINE}
    unknown = asked - set(VARIANTS)
    if unknown:
        p.error(f"--variants: unknown {sorted(unknown)}; choose from {list(VARIANTS)}")
    variants = {n: v for n, v in VARIANTS.items() if n in asked}
    full_name = list(variants)[-1]
    if args.full:
        if args.full not in variants:
            p.error(f"--full {args.full}: not among --variants {list(variants)}")
        full_name = args.full
    command = "python benchmarks/fairness_ablation.py " + " ".join(argv or sys.argv[1:])
    if args.heldout and not (args.heldout / "metadata.csv").is_file():
        p.error(
            f"--heldout {args.heldout}: no metadata.csv; make one with: python -m data.synthetic "
            f"--preset synthskin-v1 --seed 1 --n 6000 --splits 0,0,1 --out {args.heldout}"
        )
    try:
        ensure_data(args.data)
        needed = list(dict.fromkeys(run for run, _ in variants.values()))
        runs = {(run, seed): train(run, seed, args) for seed in seeds for run in needed}
        results = {}
        for name, (run, per_group) in variants.items():
            per_seed = [evaluate_variant(runs[(run, s)], per_group, s, args) for s in seeds]
            results[name] = {"per_seed": per_seed, "mean": aggregate(per_seed)}
    except (RuntimeError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    goal = goal_check(results, full_name)
    versions = code_versions(results)
    if len(versions) > 1 or "unknown" in versions:
        # Runs are reused across invocations: a table that mixes code versions compares
        # trainings that differ in more than the variant (pass --retrain to redo them).
        print(
            f"[ablation] warning: the runs were trained from {len(versions)} versions of the "
            f"training code {sorted(versions)} (per run: the report's code_versions); "
            "--retrain redoes them",
            file=sys.stderr,
        )
    payload = {
        "command": command.strip(),
        "data": str(args.data),
        "test_data": str(args.heldout) if args.heldout else f"{args.data} (test split)",
        "synthetic": True,
        "seeds": seeds,
        "n_boot": args.n_boot,
        "epochs": args.epochs or None,
        "full_pipeline": full_name,
        "goal": goal,
        "goal_by_variant": {n: goal_check(results, n) for n in results if n != BASELINE},
        "code_versions": versions,
        "variants": results,
    }
    atomic_write_text(args.report, json.dumps(payload, indent=2, allow_nan=False) + "\n")
    table = table_markdown(results, command.strip(), goal, full_name)
    write_doc(args.doc, table)
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
