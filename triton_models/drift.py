"""Compare live traffic per skin-tone group with the validation report (drift check).

    python -m triton_models.drift --metrics http://127.0.0.1:8002/metrics \\
        --reference outputs/pipeline/real/fairness [--json] [--since SCRAPE] \\
        [--max-mix-shift 0.2] [--max-rate-shift 0.25] [--min-faces 100] [--min-group-faces 50]

Reads the `fsa_*` counters (client/monitoring.py) from the server's metrics port, or from a saved
scrape file, and compares

- the group mix: each group's share of the analysed faces (`I-II`, `III-IV`, `V-VI`, `none` =
  tone estimate abstained); the shift is the total variation distance, half the sum of the
  absolute share differences (0 = same mix, 1 = disjoint);
- the positive rate per condition and group: faces with probability >= threshold over faces;
  the shift is the largest absolute difference over the (condition, group) pairs that have at
  least --min-group-faces live faces and a reference rate.

The reference is a fairness report (its folder or its metrics.json: group sizes of the evaluated
split; positive rates from its predictions CSV and thresholds.json when both are found, else from
the report's recall and false-positive rate where those are reported), or a saved scrape of a
period known to be good. --since subtracts an earlier scrape (counters since then, like
Prometheus' increase()).

Exit codes: 0 within the thresholds, or fewer than --min-faces live faces ("not enough
traffic": flagged, no verdict); 1 drifted; 2 bad input (unreachable URL, unreadable file, no
fsa_ counters, unknown reference). `--rules` prints Prometheus recording and alert rules with
the reference baked in, computing the same shifts.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from client.monitoring import FACES, NO_GROUP, POSITIVES, SOURCES
from core.schema import CONDITIONS, GROUPS

MIX_GROUPS = (*GROUPS, NO_GROUP)
DEFAULT_MAX_MIX_SHIFT = 0.2
DEFAULT_MAX_RATE_SHIFT = 0.25
DEFAULT_MIN_FACES = 100
DEFAULT_MIN_GROUP_FACES = 50
EXIT_OK, EXIT_DRIFTED, EXIT_BAD_INPUT = 0, 1, 2
STATUS_OK, STATUS_DRIFTED, STATUS_LOW = "ok", "drifted", "not enough traffic"
_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class DriftInputError(ValueError):
    """A scrape or reference that cannot be read; the message says which and why."""


@dataclass
class Counts:
    """Faces per group and positive decisions per condition and group (None = unknown)."""

    faces: dict[str, float]
    positives: dict[str, dict[str, float | None]]
    origin: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return float(sum(self.faces.values()))

    def share(self, group: str) -> float:
        """The group's share of the faces (0 without faces)."""
        return self.faces.get(group, 0.0) / self.total if self.total else 0.0

    def rate(self, condition: str, group: str) -> float | None:
        """Positive rate of the condition in the group; None when unknown or no faces."""
        faces = self.faces.get(group, 0.0)
        positives = self.positives.get(condition, {}).get(group)
        return None if positives is None or faces <= 0 else positives / faces


def parse_prometheus(text: str) -> Samples:
    """Samples of a Prometheus text exposition: {(name, sorted labels): value}."""
    samples: Samples = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise DriftInputError(f"not a Prometheus sample line: {line[:120]!r}")
        name, labels, value = match.groups()
        pairs = [
            (k, re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group(0)], v))
            for k, v in _LABEL.findall(labels or "")
        ]
        try:
            samples[(name, tuple(sorted(pairs)))] = float(value)
        except ValueError:
            raise DriftInputError(f"bad sample value in {line[:120]!r}") from None
    return samples


def read_scrape(location: str, timeout_s: float = 10.0) -> Samples:
    """Scrape an http(s) URL, or read a saved scrape file."""
    try:
        if re.match(r"^https?://", location):
            with urllib.request.urlopen(location, timeout=timeout_s) as resp:
                text = resp.read().decode("utf-8", errors="replace")
        else:
            text = Path(location).read_text()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DriftInputError(f"{location}: cannot read metrics: {exc}") from None
    return parse_prometheus(text)


def subtract(now: Samples, before: Samples) -> tuple[Samples, list[str]]:
    """Counters since `before`; a counter that went down was reset (server restart): its
    current value is taken, as Prometheus' increase() does."""
    out, notes = {}, []
    for key, value in now.items():
        delta = value - before.get(key, 0.0)
        if delta < 0:
            notes.append(f"{key[0]} was reset since the --since scrape")
            delta = value
        out[key] = delta
    return out, sorted(set(notes))


def counts_from_samples(samples: Samples, origin: str, source: str = "all") -> Counts:
    """Faces and positives per group from fsa_ counters; source 'all', 'estimated' or 'given'."""
    if not any(name == FACES for name, _ in samples):
        raise DriftInputError(f"{origin}: no {FACES} counters (not a skin_analysis metrics port?)")
    sources = SOURCES if source == "all" else (source,)
    faces = dict.fromkeys(MIX_GROUPS, 0.0)
    positives = {c: dict.fromkeys(MIX_GROUPS, 0.0) for c in CONDITIONS}
    for (name, pairs), value in samples.items():
        labels = dict(pairs)
        if labels.get("source") not in sources or labels.get("group") not in MIX_GROUPS:
            continue
        if name == FACES:
            faces[labels["group"]] += value
        elif name == POSITIVES and labels.get("condition") in positives:
            positives[labels["condition"]][labels["group"]] += value
    return Counts(faces, positives, origin)


def _report_split(report: dict) -> str:
    split = report.get("evaluated_split")
    if split in report and isinstance(report[split], dict):
        return split
    for split in ("test", "val"):
        if isinstance(report.get(split), dict) and "conditions" in report[split]:
            return split
    raise DriftInputError("no evaluated split (test or val) with conditions in the report")


def _find_predictions(report: dict, split: str, metrics_path: Path) -> Path | None:
    """The report's predictions CSV: its recorded input path, or predictions_<split>.csv in
    the report folder or the folder above it."""
    recorded = (report.get("inputs") or {}).get(split)
    candidates = [Path(recorded)] if recorded else []
    if recorded and not Path(recorded).is_absolute():
        candidates += [parent / recorded for parent in metrics_path.resolve().parents]
    name = f"predictions_{split}.csv"
    candidates += [metrics_path.parent / name, metrics_path.parent.parent / name]
    return next((p for p in candidates if p.is_file()), None)


def _counts_from_predictions(csv_path: Path, thresholds_path: Path) -> Counts:
    """Faces per group and positive decisions under thresholds.json, from a predictions CSV."""
    from core.thresholds import apply_thresholds, load_thresholds

    thresholds = load_thresholds(thresholds_path)
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    groups = [r.get("group") or None for r in rows]
    conds = list(thresholds.conditions)
    try:
        probs = [[float(r[f"{c}_prob"]) for c in conds] for r in rows]
    except (KeyError, ValueError) as exc:
        raise DriftInputError(f"{csv_path}: bad probability column: {exc}") from None
    decisions, _ = apply_thresholds(probs, groups, thresholds)
    labels = [g if g in GROUPS else NO_GROUP for g in groups]
    faces = {g: float(labels.count(g)) for g in MIX_GROUPS}
    positives = {
        c: {
            g: float(sum(d for d, lab in zip(decisions[:, k], labels, strict=True) if lab == g))
            for g in MIX_GROUPS
        }
        for k, c in enumerate(conds)
    }
    return Counts(faces, positives, f"{csv_path} + {thresholds_path.name}")


def _predicted_positives(entry: dict) -> float | None:
    """recall * positives + fpr * negatives of one report entry; None when not reported."""
    total = 0.0
    for count_key, metric in (("positives", "recall"), ("negatives", "fpr")):
        count = entry.get(count_key) or 0
        value = (entry.get(metric) or {}).get("value")
        if count and value is None:
            return None
        total += (value or 0.0) * count
    return total


def _counts_from_report_metrics(report: dict, split: str, origin: str) -> Counts:
    """Group sizes and (where reported) predicted positives from the report's metrics."""
    conditions = report[split]["conditions"]
    total = float(report[split].get("n") or 0)
    faces = {g: 0.0 for g in MIX_GROUPS}
    positives: dict[str, dict[str, float | None]] = {}
    for cond, entry in conditions.items():
        by_group = entry.get("by_group") or {}
        for g in GROUPS:
            faces[g] = max(faces[g], float((by_group.get(g) or {}).get("n") or 0))
        if cond in CONDITIONS and (entry.get("overall") or {}).get("n"):
            positives[cond] = {g: _predicted_positives(by_group.get(g) or {}) for g in GROUPS}
            positives[cond][NO_GROUP] = None
    faces[NO_GROUP] = max(0.0, total - sum(faces[g] for g in GROUPS))
    return Counts(faces, positives, origin)


def load_reference(path: Path, source: str = "all") -> Counts:
    """The reference counts from a report folder, its metrics.json, or a saved scrape."""
    path = Path(path)
    if path.is_dir():
        found = (path / "metrics.json", path / "fairness" / "metrics.json")
        path = next((p for p in found if p.is_file()), found[0])
    if not path.is_file():
        raise DriftInputError(f"{path}: no such reference (a report folder or metrics.json)")
    if path.suffix != ".json":
        return counts_from_samples(read_scrape(str(path)), str(path), source)
    try:
        report = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DriftInputError(f"{path}: not a JSON file: {exc}") from None
    split = _report_split(report)
    counts = _counts_from_report_metrics(report, split, f"{path} ({split})")
    predictions = _find_predictions(report, split, path)
    thresholds = path.with_name("thresholds.json")
    if predictions is not None and thresholds.is_file():
        exact = _counts_from_predictions(predictions, thresholds)
        counts.positives = exact.positives
        counts.faces = exact.faces
        counts.notes.append(f"group sizes and positive rates from {exact.origin}")
    else:
        counts.notes.append("positive rates from the report's recall and fpr (reported groups)")
    return counts


@dataclass
class Limits:
    """The drift limits and minimum sample sizes."""

    max_mix_shift: float = DEFAULT_MAX_MIX_SHIFT
    max_rate_shift: float = DEFAULT_MAX_RATE_SHIFT
    min_faces: int = DEFAULT_MIN_FACES
    min_group_faces: int = DEFAULT_MIN_GROUP_FACES


def compare(live: Counts, reference: Counts, limits: Limits) -> dict:
    """The drift verdict: mix shift, per-group rate shifts, status (see the module doc)."""
    mix = [{"group": g, "live": live.share(g), "reference": reference.share(g)} for g in MIX_GROUPS]
    mix_shift = 0.5 * sum(abs(row["live"] - row["reference"]) for row in mix)
    rates = []
    for cond in CONDITIONS:
        for g in MIX_GROUPS:
            live_rate, ref_rate = live.rate(cond, g), reference.rate(cond, g)
            if live_rate is None and ref_rate is None:
                continue
            checked = (
                live_rate is not None
                and ref_rate is not None
                and live.faces.get(g, 0.0) >= limits.min_group_faces
            )
            shift = abs(live_rate - ref_rate) if checked else None
            rates.append(
                {
                    "condition": cond,
                    "group": g,
                    "live": live_rate,
                    "reference": ref_rate,
                    "live_faces": live.faces.get(g, 0.0),
                    "shift": shift,
                }
            )
    shifts = [r["shift"] for r in rates if r["shift"] is not None]
    rate_shift = max(shifts) if shifts else None
    if live.total < limits.min_faces:
        status = STATUS_LOW
    elif mix_shift > limits.max_mix_shift or (rate_shift or 0.0) > limits.max_rate_shift:
        status = STATUS_DRIFTED
    else:
        status = STATUS_OK
    return {
        "status": status,
        "live": {"origin": live.origin, "faces": live.total, "notes": live.notes},
        "reference": {
            "origin": reference.origin,
            "faces": reference.total,
            "notes": reference.notes,
        },
        "mix": mix,
        "mix_shift": mix_shift,
        "rates": rates,
        "rate_shift": rate_shift,
        "thresholds": vars(limits),
    }


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(verdict: dict) -> str:
    """The verdict as a readable table."""
    limits = verdict["thresholds"]
    lines = [
        f"live:      {verdict['live']['origin']} ({verdict['live']['faces']:.0f} faces)",
        f"reference: {verdict['reference']['origin']} ({verdict['reference']['faces']:.0f} faces)",
        *(f"  note: {n}" for n in verdict["live"]["notes"] + verdict["reference"]["notes"]),
        "",
        f"{'group':<8} {'live':>7} {'ref':>7}",
    ]
    lines += [f"{r['group']:<8} {r['live']:>7.3f} {r['reference']:>7.3f}" for r in verdict["mix"]]
    lines.append(
        f"mix shift (total variation) {verdict['mix_shift']:.3f}, max {limits['max_mix_shift']}"
    )
    lines += ["", f"{'positive rate':<27} {'live':>6} {'ref':>6} {'shift':>6} {'faces':>6}"]
    for r in verdict["rates"]:
        name = f"{r['condition']} / {r['group']}"
        lines.append(
            f"{name:<27} {_num(r['live']):>6} {_num(r['reference']):>6} "
            f"{_num(r['shift']):>6} {r['live_faces']:>6.0f}"
        )
    lines.append(
        f"rate shift (largest, groups with >= {limits['min_group_faces']} faces) "
        f"{_num(verdict['rate_shift'])}, max {limits['max_rate_shift']}"
    )
    status = verdict["status"]
    if status == STATUS_LOW:
        status += f" ({verdict['live']['faces']:.0f} < {limits['min_faces']} faces; no verdict)"
    lines += ["", f"status: {status}"]
    return "\n".join(lines)


def _vector(value: float, **labels: str) -> str:
    expr = f"vector({value:.4f})"
    for name, label in labels.items():
        expr = f'label_replace({expr}, "{name}", "{label}", "", "")'
    return expr


def _rule(kind: str, name: str, expr: str, summary: str | None = None) -> list[str]:
    lines = [f"      - {kind}: {name}", f"        expr: {_quoted(expr)}"]
    if summary is not None:
        lines += [
            "        labels: {severity: warning}",
            f"        annotations: {{summary: {_quoted(summary)}}}",
        ]
    return lines


def _quoted(text: str) -> str:
    """A YAML single-quoted string (PromQL's double quotes stay readable)."""
    return "'" + text.replace("'", "''") + "'"


def prometheus_rules(reference: Counts, limits: Limits, window: str = "6h") -> str:
    """Recording and alert rules (YAML) computing the same shifts over `window`."""
    lines = [
        "groups:",
        "  - name: fsa-drift",
        "    rules:",
        f"      # reference: {reference.origin}",
    ]
    for g in MIX_GROUPS:
        lines += _rule("record", "fsa:reference_group_share", _vector(reference.share(g), group=g))
    for c in CONDITIONS:
        for g in MIX_GROUPS:
            rate = reference.rate(c, g)
            if rate is not None:
                lines += _rule(
                    "record", "fsa:reference_positive_rate", _vector(rate, condition=c, group=g)
                )
    faces = f"increase({FACES}[{window}])"
    enough = f"sum({faces}) >= {limits.min_faces}"
    share, rate = f"fsa:group_share:{window}", f"fsa:positive_rate:{window}"
    lines += _rule("record", share, f"sum by (group) ({faces}) / scalar(sum({faces}))")
    lines += _rule(
        "record",
        rate,
        f"sum by (condition, group) (increase({POSITIVES}[{window}]))"
        f" / on (group) group_left sum by (group) ({faces})",
    )
    lines += _rule(
        "alert",
        "FsaSkinToneMixShift",
        f"0.5 * sum(abs({share} - on (group) fsa:reference_group_share))"
        f" > {limits.max_mix_shift} and on () {enough}",
        "skin-tone group mix of the analysed faces moved away from the validation data",
    )
    lines += _rule(
        "alert",
        "FsaPositiveRateShift",
        f"abs({rate} - on (condition, group) fsa:reference_positive_rate)"
        f" > {limits.max_rate_shift}"
        f" and on (group) sum by (group) ({faces}) >= {limits.min_group_faces}"
        f" and on () {enough}",
        "positive rate of {{ $labels.condition }} in group {{ $labels.group }} moved away"
        " from the validation data",
    )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m triton_models.drift",
        description=__doc__.split("\n\n")[0],
        epilog="Exit codes: 0 ok or not enough traffic, 1 drifted, 2 bad input.",
    )
    parser.add_argument("--metrics", help="metrics URL (http://HOST:8002/metrics) or scrape file")
    parser.add_argument(
        "--reference",
        type=Path,
        required=True,
        help="fairness report folder or its metrics.json, or a saved scrape of a good period",
    )
    parser.add_argument("--since", help="an earlier scrape (file or URL): compare the counts since")
    parser.add_argument(
        "--source",
        choices=("all", *SOURCES),
        default="all",
        help="faces whose group was estimated, given, or all (default)",
    )
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")
    parser.add_argument(
        "--rules", action="store_true", help="print Prometheus rules with this reference and exit"
    )
    parser.add_argument(
        "--max-mix-shift",
        type=float,
        default=DEFAULT_MAX_MIX_SHIFT,
        help=f"total variation distance of the group mix (default {DEFAULT_MAX_MIX_SHIFT})",
    )
    parser.add_argument(
        "--max-rate-shift",
        type=float,
        default=DEFAULT_MAX_RATE_SHIFT,
        help=f"absolute positive-rate difference (default {DEFAULT_MAX_RATE_SHIFT})",
    )
    parser.add_argument(
        "--min-faces",
        type=int,
        default=DEFAULT_MIN_FACES,
        help=f"below this, 'not enough traffic' (default {DEFAULT_MIN_FACES})",
    )
    parser.add_argument(
        "--min-group-faces",
        type=int,
        default=DEFAULT_MIN_GROUP_FACES,
        help=f"rates of smaller groups are not checked (default {DEFAULT_MIN_GROUP_FACES})",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (exit codes in the module doc)."""
    args = parse_args(argv)
    limits = Limits(args.max_mix_shift, args.max_rate_shift, args.min_faces, args.min_group_faces)
    try:
        reference = load_reference(args.reference, args.source)
        if args.rules:
            print(prometheus_rules(reference, limits), end="")
            return EXIT_OK
        if not args.metrics:
            raise DriftInputError("--metrics URL or scrape file is required")
        samples, notes = read_scrape(args.metrics), []
        if args.since:
            samples, notes = subtract(samples, read_scrape(args.since))
        live = counts_from_samples(samples, args.metrics, args.source)
        live.notes += notes
    except (DriftInputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    verdict = compare(live, reference, limits)
    print(json.dumps(verdict, default=_json_default) if args.json else format_table(verdict))
    return EXIT_DRIFTED if verdict["status"] == STATUS_DRIFTED else EXIT_OK


def _json_default(value):
    return None if isinstance(value, float) and math.isnan(value) else str(value)


if __name__ == "__main__":
    sys.exit(main())
