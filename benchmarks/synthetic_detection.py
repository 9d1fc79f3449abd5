"""How well the preprocessing sees the synthetic faces: BlazeFace detection rate and skin-tone
group accuracy per Fitzpatrick type (images rendered in memory, nothing written).

    python benchmarks/synthetic_detection.py [--per-type 300] [--seed 0] [--json]

A face counts as found when the detector returns a box whose centre lies inside the rendered
face oval's box. Tone accuracy compares `preprocessing.pipeline.analyze_image`'s estimated group
with the rendered type's group (abstentions count as wrong). Targets: >= 95% found per type,
>= 90% group accuracy overall.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from core.schema import fitzpatrick_to_group  # noqa: E402
from data.synth import conditions, render  # noqa: E402
from data.synthetic import PRESETS  # noqa: E402


def measure(per_type: int, seed: int, size: int = 256) -> dict[str, object]:
    """Detection rate, mean score and tone-group accuracy per Fitzpatrick type."""
    from preprocessing.face_detect import FaceDetector
    from preprocessing.pipeline import analyze_image

    detector = FaceDetector()
    config = PRESETS["synthskin-v1"]
    out: dict[str, object] = {}
    total_found = total_tone = total = 0
    for ftype in tqdm(range(1, 7), desc="types", disable=None):
        found = tone_ok = 0
        scores, itas = [], []
        group = fitzpatrick_to_group(ftype)
        for i in range(per_type):
            rng = np.random.default_rng([seed, ftype, i])
            subject = conditions.sample_subject(rng, config.prevalence)
            contrast = config.contrast[(ftype - 1) // 2]
            s = render.render_sample(
                rng, size=size, fitzpatrick=ftype, subject=subject, contrast=contrast
            )
            crops = analyze_image(s.rgb, size=128, detector=detector)
            bx, by, bw, bh = s.face_box
            hit = None
            for c in crops:
                cx, cy = c.box[0] + c.box[2] / 2, c.box[1] + c.box[3] / 2
                if bx <= cx <= bx + bw and by <= cy <= by + bh:
                    hit = c
                    break
            if hit is None:
                continue
            found += 1
            scores.append(float(hit.score))
            if hit.skin_tone.ita is not None:
                itas.append(float(hit.skin_tone.ita))
            tone_ok += hit.skin_tone.fitzpatrick_group == group
        out[str(ftype)] = {
            "found": found / per_type,
            "mean_score": float(np.mean(scores)) if scores else None,
            "tone_group_accuracy": tone_ok / per_type,
            "ita_median_estimated": float(np.median(itas)) if itas else None,
        }
        total_found += found
        total_tone += tone_ok
        total += per_type
    out["overall"] = {"found": total_found / total, "tone_group_accuracy": total_tone / total}
    return out


def main() -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-type", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    result = measure(args.per_type, args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print("type  found   score  tone-acc  ITA(est. median)")
    for key, r in result.items():
        if key == "overall":
            continue
        score = "-" if r["mean_score"] is None else f"{r['mean_score']:.3f}"
        ita = "-" if r["ita_median_estimated"] is None else f"{r['ita_median_estimated']:.1f}"
        print(f"{key:>4}  {r['found']:6.1%}  {score:>5}  {r['tone_group_accuracy']:7.1%}  {ita:>7}")
    o = result["overall"]
    print(f"overall found {o['found']:.1%}, tone group accuracy {o['tone_group_accuracy']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
