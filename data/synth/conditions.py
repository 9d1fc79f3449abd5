"""Per-subject ground truth: age, the three condition labels, acne lesion count and severity.

Labels come from a Gaussian copula: three correlated standard normals, one per condition, each
thresholded at its prevalence. So every condition's prevalence is exactly the knob in expectation,
and co-occurrence is plausible: acne and hyperpigmentation go together (post-inflammatory
hyperpigmentation), wrinkles and acne rarely do, and age is read off the wrinkle variable
(older subjects have wrinkles).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from core.severity import severity_from_count

# Correlation of the latent variables (acne, hyperpigmentation, wrinkles); a low latent = present.
LATENT_CORRELATION = np.array(
    [[1.0, 0.35, -0.30], [0.35, 1.0, 0.20], [-0.30, 0.20, 1.0]], dtype=np.float64
)
_CHOLESKY = np.linalg.cholesky(LATENT_CORRELATION)
# ACNE04 grading by lesion count: grade g covers counts in SEVERITY_BINS[g] (inclusive).
SEVERITY_BINS: tuple[tuple[int, int], ...] = ((1, 5), (6, 20), (21, 50), (51, 80))
# How often each grade occurs among acne-positive subjects.
SEVERITY_WEIGHTS: tuple[float, ...] = (0.2, 0.45, 0.25, 0.10)
MIN_ACNE_LESIONS = 3  # fewer than this is invisible at 128 px, so a positive has at least 3


@dataclass(frozen=True)
class Subject:
    """Ground truth of one synthetic person (clean labels, before label noise)."""

    age: int
    acne: bool
    hyperpigmentation: bool
    wrinkles: bool
    acne_lesions: int  # lesion count (papules + pustules + comedones); 0 when no acne
    acne_severity: int  # ACNE04 grade 0-3 of acne_lesions


def sample_subject(rng: np.random.Generator, prevalence: tuple[float, float, float]) -> Subject:
    """Draw age, labels and acne lesion count for one subject."""
    z = _CHOLESKY @ rng.standard_normal(3)
    cut = [NormalDist().inv_cdf(min(max(p, 1e-6), 1 - 1e-6)) for p in prevalence]
    acne, hyper, wrinkles = (bool(z[k] < cut[k]) for k in range(3))
    age = int(np.clip(round(44.0 - 13.0 * z[2] + 5.0 * rng.standard_normal()), 18, 80))
    if acne:
        grade = int(rng.choice(len(SEVERITY_WEIGHTS), p=SEVERITY_WEIGHTS))
        lo, hi = SEVERITY_BINS[grade]
        count = int(rng.integers(max(lo, MIN_ACNE_LESIONS), hi + 1))
    else:
        count = 0
    return Subject(age, acne, hyper, wrinkles, count, severity_from_count(count))


def apply_label_noise(
    labels: tuple[bool, bool, bool], rate: float, rng: np.random.Generator
) -> tuple[bool, bool, bool]:
    """Flip each label independently with probability `rate` (the masks keep the truth)."""
    flips = rng.random(3) < rate
    return tuple(bool(v) ^ bool(f) for v, f in zip(labels, flips, strict=True))  # type: ignore[return-value]
