"""Do the heatmaps point at the lesions, equally for every skin tone? Measured on lesion masks.

    python -m explain.evaluate --run outputs/RUN --data data/synthskin-v1 [--split test]
        [--out DIR] [--json] [--limit N] [--method cam|gradcam|gradcam++] [--layer NAME]
        [--tfds-dir DIR] [--dilate 0.02]

Loads the run's best checkpoint and reads the face crops and lesion-mask crops of the split from
the same TFDS build the trainer reads (`data.tfds_builder.build_dataset(DIR, crop_size=<the
run's image size>, cache_dir=<the run's data.tfds_dir>)`: `preprocessing.pipeline.analyze_image`
crop, mask carried by the same affine). For each condition, on the images where it is present
(label 1 and a non-empty mask):

* pointing game and energy in mask, overall and per skin-tone group, with bootstrap 95% CIs,
  the spread across groups (max - min) and the mask area fraction (chance level of energy).
  `pointing_game` counts a hit when the map's maximum lies in the lesion mask grown by
  `--dilate` x the face width (`metrics.pointing_game_dilated`). Default: 0 (strict) on a
  synthetic dataset, whose masks are the exact lesions the generator drew; 0.02 (2%) on real
  data, whose masks are filled hand-drawn boxes (acne-new). With a dilation the strict one is
  reported beside it as `pointing_game_strict`. The face width in crop pixels is
  `face_width_px(side)` = side / (1 + 2 * margin), from the crop geometry of
  `preprocessing.align`. Beside these, with the tolerance of Zhang et al. 2016 (a hit within
  15 px of the annotation at 224 px, scaled to the crop: 15 * side / 224, 6.4 px at 96 px;
  `--tolerance-px` sets another, 0 turns it off);
* deletion / insertion AUC of the condition's probability, salient pixels first versus a
  random order (pixels replaced by / taken from a blurred copy of the crop); ratio < 1 for
  deletion and > 1 for insertion mean the map is faithful to the model;
* lesion reliance: the mean probability once the lesion itself is inpainted away, against a
  control with the same mask shifted elsewhere (does the model use the lesion at all?);
* the pointing-game ceiling of the map's resolution (`metrics.pointing_ceiling`).

A condition no image of the split has a label for (wrinkles on acne-new) reads "no ground
truth" (`status`), with null numbers, never 0. Groups are named by where the tone comes from
(`fairness.tone_basis`: the TFDS `tone_source`, else labelled where a Fitzpatrick type is given,
else the dataset's `datacard.json`): with an estimated tone the JSON, table and figure captions
say "estimated tone group (ITA)" / "estimated-tone group V-VI", never Fitzpatrick.

Writes `<out>/explain_<split>.json` and `<out>/cam_examples_<group>.png` (default out:
`<run>/explain/`). Exit codes: 0 ok, 2 bad arguments, 3 dataset problem, 4 run problem.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from client.overlay import overlay_on_crop, write_image
from core import atomic
from core.schema import CONDITIONS, DISCLAIMER, GROUPS
from data.run import Run
from explain import metrics
from fairness.tone_basis import LABELLED, ToneBasis, make_tone_basis, row_tone_sources, tone_basis
from preprocessing.align import DEFAULT_MARGIN
from train_jax.cam import cell_alignment
from train_jax.host_malloc import keep_freed_memory

EXIT_ARGS, EXIT_DATA, EXIT_RUN = 2, 3, 4
GOAL_POINTING = 0.85
GOAL_SPREAD = 0.05
ZHANG_TOLERANCE_PX, ZHANG_SIDE_PX = 15.0, 224.0  # Zhang et al. 2016: 15 px at 224 px
UNKNOWN_GROUP = "unknown"
BOX_DILATE = 0.02  # default allowance around box annotations: 2% of the face width
NO_GROUND_TRUTH = "no ground truth"


class EvaluationError(Exception):
    """A problem with the run or the dataset; `exit_code` says which (one line for the CLI)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Examples:
    """Face crops of one split with what the evaluation needs, in data-source order."""

    ids: list[str]
    images: np.ndarray  # uint8 [N, S, S, 3]
    masks: np.ndarray  # bool [N, S, S, 3], channel i = CONDITIONS[i]
    labels: np.ndarray  # float32 [N, 3], NaN = unknown
    groups: list[str]  # GROUPS name or UNKNOWN_GROUP
    # labelled | estimated | None (unknown) per image; empty = not read (unknown)
    tone_sources: list[str | None] = field(default_factory=list)


# --------------------------------------------------------------------------- pure summaries


def standard_tolerance(side: int) -> float:
    """The pointing game's usual tolerance (15 px at 224 px, Zhang et al. 2016) for a crop side.

    >>> round(standard_tolerance(96), 2)
    6.43
    """
    return ZHANG_TOLERANCE_PX * side / ZHANG_SIDE_PX


def face_width_px(side: int, margin: float = DEFAULT_MARGIN) -> float:
    """Width of the face in a face crop of `side` pixels, from the crop geometry.

    `preprocessing.align.crop_affine` maps a square of `max(w, h) * (1 + 2 * margin)` original
    pixels around the face box onto the crop, so a face box of width w spans
    `side * w / (max(w, h) * (1 + 2 * margin))` crop pixels: exactly `side / (1 + 2 * margin)`
    for a square box (BlazeFace boxes are near square), less for a box taller than wide. The
    centred-crop fallback (no face found) has no face box; it gets the same number.

    >>> face_width_px(96)
    64.0
    """
    return side / (1.0 + 2.0 * margin)


def examples_tone(ex: Examples) -> ToneBasis:
    """Where the groups of `ex` come from (`fairness.tone_basis`)."""
    sources = ex.tone_sources or [None] * len(ex.groups)
    groups = [g if g != UNKNOWN_GROUP else None for g in ex.groups]
    return tone_basis(groups, sources)


def _ci_summary(values: Sequence[float], *, num_boot: int, seed: int) -> dict[str, Any]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"value": None, "ci95": [None, None], "n": 0}
    lo, hi = metrics.bootstrap_ci(v, num_boot=num_boot, seed=seed)
    return {"value": float(v.mean()), "ci95": [lo, hi], "n": int(v.size)}


def localisation_summary(
    cams: np.ndarray,
    masks: np.ndarray,
    labels: np.ndarray,
    groups: Sequence[str],
    *,
    tolerance_px: float = 0.0,
    dilate: float = 0.0,
    face_width: float | None = None,
    grid: Sequence[int] | None = None,
    align: str = "center",
    num_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Pointing game and energy in mask per condition, overall and by group, with CIs.

    `cams` [N,3,H,W], `masks` bool [N,H,W,3], `labels` [N,3] (NaN unknown), `groups` [N].
    Only images with the condition present (label 1) and a non-empty mask count.
    `pointing_game` counts a maximum in the mask grown by `dilate` x `face_width` pixels
    (`metrics.pointing_game_dilated`; `face_width` None = `face_width_px` of the crop side);
    with `dilate` 0 it is strict, else the strict one is `pointing_game_strict`. With
    `tolerance_px` > 0, `pointing_game_tolerant` counts a maximum within that distance of the
    mask as a hit too. With `grid` (the maps' resolution before upsampling) the strict
    pointing-game ceiling of that resolution is reported too (`metrics.pointing_ceiling`).
    `pointing_game_chance` is what a peak drawn at random would score on `pointing_game`
    (`metrics.pointing_chance`).
    Each condition gets a `status`: "ok", "no ground truth" (no image has a label for it),
    "no positives" or "no lesion masks" (present, but never with a mask).
    """
    out: dict[str, Any] = {}
    if face_width is None:
        face_width = face_width_px(masks.shape[2])
    for c, cond in enumerate(CONDITIONS):
        present = labels[:, c] == 1
        has_mask = masks[..., c].reshape(len(masks), -1).any(axis=1)
        use = np.flatnonzero(present & has_mask)
        cam_c, mask_c = cams[use, c], masks[use, ..., c]
        scores = _localisation_scores(
            cam_c,
            mask_c,
            tolerance_px=tolerance_px,
            dilate=dilate,
            face_width=face_width,
            grid=grid,
            align=align,
        )
        n_labelled = int(np.isfinite(labels[:, c]).sum())
        entry: dict[str, Any] = {
            "status": _localisation_status(n_labelled, bool(present.any()), use.size),
            "n_labelled": n_labelled,
            "n_present": int(present.sum()),
            "n_present_without_mask": int((present & ~has_mask).sum()),
        }
        g = np.array([groups[i] for i in use])
        for name, values in scores:
            entry[name] = _grouped_summary(values, g, num_boot=num_boot, seed=seed)
        area = np.array([m.mean() for m in mask_c])
        entry["mask_area_fraction"] = float(area.mean()) if area.size else None
        out[cond] = entry
    return out


def _localisation_scores(
    cams: np.ndarray,
    masks: np.ndarray,
    *,
    tolerance_px: float,
    dilate: float,
    face_width: float,
    grid: Sequence[int] | None,
    align: str,
) -> list[tuple[str, np.ndarray]]:
    """Per-image scores of one condition's maps [n,H,W] against its masks [n,H,W], by name."""
    pairs = list(zip(cams, masks, strict=True))
    strict = np.array([metrics.pointing_game(cam, mask) for cam, mask in pairs], float)
    energy = np.array([metrics.energy_in_mask(cam, mask) for cam, mask in pairs])
    if dilate > 0:
        hits = np.array(
            [
                metrics.pointing_game_dilated(cam, mask, face_width_px=face_width, dilate=dilate)
                for cam, mask in pairs
            ],
            float,
        )
        scores = [
            ("pointing_game", hits),
            ("pointing_game_strict", strict),
            ("energy_in_mask", energy),
        ]
    else:
        scores = [("pointing_game", strict), ("energy_in_mask", energy)]
    if tolerance_px > 0:
        near = [metrics.pointing_game(cam, mask, tolerance_px=tolerance_px) for cam, mask in pairs]
        scores.append(("pointing_game_tolerant", np.array(near, float)))
    tol = dilate * face_width if dilate > 0 else 0.0
    chance = [metrics.pointing_chance(mask, tolerance_px=tol) for mask in masks]
    scores.append(("pointing_game_chance", np.array(chance, float)))
    if grid is not None:
        ceiling = [metrics.pointing_ceiling(mask, tuple(grid), align) for mask in masks]
        scores.append(("pointing_ceiling", np.array(ceiling, float)))
    return scores


def _localisation_status(n_labelled: int, any_present: bool, n_used: int) -> str:
    """Whether a condition can be scored: "ok" or why not."""
    if n_labelled == 0:
        return NO_GROUND_TRUTH
    if not any_present:
        return "no positives"
    if n_used == 0:
        return "no lesion masks"
    return "ok"


def _grouped_summary(
    values: np.ndarray, groups: np.ndarray, *, num_boot: int, seed: int
) -> dict[str, Any]:
    """Mean with a bootstrap CI overall and per group present, and the spread across groups."""
    by_group = {
        k: _ci_summary(values[groups == k], num_boot=num_boot, seed=seed)
        for k in [*GROUPS, UNKNOWN_GROUP]
        if (groups == k).any()
    }
    return {
        "overall": _ci_summary(values, num_boot=num_boot, seed=seed),
        "by_group": by_group,
        "spread": _nan_to_none(
            metrics.spread({k: v["value"] for k, v in by_group.items() if k != UNKNOWN_GROUP})
        ),
    }


def _nan_to_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def faithfulness_summary(
    images: np.ndarray,
    cams: np.ndarray,
    labels: np.ndarray,
    predict_fn: Callable[[np.ndarray], np.ndarray],
    *,
    max_images: int = 100,
    num_steps: int = 20,
    blur_sigma_frac: float = 0.125,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Deletion / insertion AUC per condition, salient-first vs random order, and their ratios.

    `predict_fn(images float32 [n,H,W,3]) -> probs [n,3]`; up to `max_images` images with the
    condition present are used per condition. The baseline is the crop blurred with sigma =
    `blur_sigma_frac` * side (<= 0: the crop's mean colour).
    """
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for c, cond in enumerate(CONDITIONS):
        use = np.flatnonzero(labels[:, c] == 1)[:max_images]
        aucs: dict[str, list[float]] = {
            k: [] for k in ("deletion", "deletion_random", "insertion", "insertion_random")
        }

        def score(batch: np.ndarray, c: int = c) -> np.ndarray:
            return np.asarray(predict_fn(batch.astype(np.float32)))[:, c]

        for i in use:
            image = images[i].astype(np.float32)
            base = _baseline(image, blur_sigma_frac)
            salient = metrics.saliency_order(cams[i, c])
            shuffled = metrics.random_order(salient.size, rng)
            for mode in ("deletion", "insertion"):
                for key, order in ((mode, salient), (f"{mode}_random", shuffled)):
                    curve = metrics.perturbation_curve(
                        image, order, score, baseline=base, mode=mode, num_steps=num_steps
                    )
                    aucs[key].append(metrics.curve_auc(curve))
            if progress is not None:
                progress(1)
        entry: dict[str, Any] = {"n": int(use.size)}
        if not np.isfinite(labels[:, c]).any():
            entry["status"] = NO_GROUND_TRUTH
        for key, values in aucs.items():
            entry[f"{key}_auc"] = float(np.mean(values)) if values else None
        for mode in ("deletion", "insertion"):
            a, r = entry[f"{mode}_auc"], entry[f"{mode}_random_auc"]
            entry[f"{mode}_ratio"] = (a / r) if a is not None and r else None
        out[cond] = entry
    return out


def _baseline(image: np.ndarray, blur_sigma_frac: float) -> np.ndarray:
    if blur_sigma_frac > 0:
        return cv2.GaussianBlur(image, (0, 0), blur_sigma_frac * image.shape[0])
    return np.broadcast_to(image.mean(axis=(0, 1)), image.shape).copy()


def lesion_reliance(
    images: np.ndarray,
    masks: np.ndarray,
    labels: np.ndarray,
    predict_fn: Callable[[np.ndarray], np.ndarray],
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Does the model use the lesion at all? Mean probability before and after removing it.

    The lesion mask (dilated by 1 px) is inpainted from the surrounding skin (OpenCV Telea); as
    a control the same mask shifted by a random offset (up to a third of the side) is inpainted
    instead. A map can only be faithful *and* point at the lesion if removing the lesion lowers
    the probability.
    """
    rng = np.random.default_rng(seed)
    side = images.shape[1]
    kernel = np.ones((3, 3), np.uint8)
    out: dict[str, Any] = {}
    for c, cond in enumerate(CONDITIONS):
        use = np.flatnonzero((labels[:, c] == 1) & masks[..., c].reshape(len(masks), -1).any(1))
        if use.size == 0:
            out[cond] = {"n": 0, "prob": None, "prob_lesion_removed": None, "prob_control": None}
            continue
        removed, control = [], []
        for i in use:
            img = np.ascontiguousarray(images[i], dtype=np.uint8)
            m = cv2.dilate(masks[i, ..., c].astype(np.uint8), kernel)
            shift = rng.integers(-side // 3, side // 3 + 1, size=2)
            shifted = np.roll(m, tuple(int(v) for v in shift), axis=(0, 1))
            removed.append(cv2.inpaint(img, m, 3, cv2.INPAINT_TELEA))
            control.append(cv2.inpaint(img, shifted, 3, cv2.INPAINT_TELEA))

        def mean_prob(batch: list[np.ndarray] | np.ndarray, c: int = c) -> float:
            x = np.asarray(batch, dtype=np.float32)
            return float(np.asarray(predict_fn(x))[:, c].mean())

        out[cond] = {
            "n": int(use.size),
            "prob": mean_prob(images[use]),
            "prob_lesion_removed": mean_prob(removed),
            "prob_control": mean_prob(control),
        }
    return out


def goal_check(localisation: dict[str, Any], faithfulness: dict[str, Any]) -> dict[str, Any]:
    """The explanation goal per condition: pointing game >= 0.85, spread <= 0.05, deletion < random.

    Judged on `pointing_game` (strict, or within the `--dilate` allowance of box annotations);
    the tolerant one is reported beside it when present.
    """
    out: dict[str, Any] = {}
    for cond in CONDITIONS:
        pg = localisation[cond]["pointing_game"]
        value, spread = pg["overall"]["value"], pg["spread"]
        worst = min(
            (v["value"] for k, v in pg["by_group"].items() if k != UNKNOWN_GROUP), default=None
        )
        ratio = faithfulness.get(cond, {}).get("deletion_ratio")
        out[cond] = {
            "status": localisation[cond].get("status", "ok"),
            "pointing_game": value,
            "pointing_game_worst_group": worst,
            "pointing_ok": worst is not None and worst >= GOAL_POINTING,
            "spread": spread,
            "spread_ok": spread is not None and spread <= GOAL_SPREAD,
            "deletion_ratio": ratio,
            "deletion_ok": ratio is not None and ratio < 1.0,
        }
        tolerant = localisation[cond].get("pointing_game_tolerant")
        if tolerant is not None:
            out[cond]["pointing_game_tolerant"] = tolerant["overall"]["value"]
            out[cond]["spread_tolerant"] = tolerant["spread"]
    return out


# --------------------------------------------------------------------------- data and model


def load_examples(
    data_dir: str | Path,
    *,
    crop_size: int,
    split: str,
    limit: int | None,
    tfds_dir: str | Path | None = None,
) -> Examples:
    """Face crops and lesion-mask crops of `split` from the trainer's TFDS build.

    `tfds_dir` is the crop cache (None: DIR/tfds, the builder's default).
    """
    from data.tfds_builder import build_dataset

    data_dir = Path(data_dir)
    if not (data_dir / "metadata.csv").is_file():
        raise EvaluationError(f"{data_dir}: no metadata.csv (not a canonical dataset)", EXIT_DATA)
    builder = build_dataset(data_dir, crop_size=crop_size, cache_dir=tfds_dir or None)
    if split not in builder.info.splits:
        raise EvaluationError(
            f"{data_dir}: no {split!r} split; has {sorted(builder.info.splits)}", EXIT_DATA
        )
    source = builder.as_data_source(split=split)
    n = len(source) if limit is None else min(limit, len(source))
    if n == 0:
        raise EvaluationError(f"{data_dir}: the {split!r} split is empty", EXIT_DATA)
    ids, images, masks, labels, groups, fitz, column = [], [], [], [], [], [], []
    for i in range(n):
        r = source[i]
        ids.append(r["id"].decode() if isinstance(r["id"], bytes) else str(r["id"]))
        images.append(np.asarray(r["image"], np.uint8))
        masks.append(np.asarray(r["mask"]) > 127)
        labels.append(np.asarray(r["labels"], np.float32))
        g = int(r["group"])
        groups.append(GROUPS[g] if g >= 0 else UNKNOWN_GROUP)
        fitz.append(int(r.get("fitzpatrick", 0)))
        tone = r.get("tone_source", b"")  # absent in crops built before tone_source existed
        column.append(tone.decode() if isinstance(tone, bytes) else str(tone))
    default = read_data_facts(data_dir)["tone_source"]
    try:
        sources = row_tone_sources(fitz, column, default=default)
    except ValueError as err:
        raise EvaluationError(f"{data_dir}: {err}", EXIT_DATA) from None
    return Examples(
        ids, np.stack(images), np.stack(masks), np.stack(labels), groups, tone_sources=sources
    )


def read_data_facts(data_dir: str | Path) -> dict[str, Any]:
    """What the evaluation needs to know about a canonical dataset folder.

    ``synthetic``: every `source` of metadata.csv names a synthetic set (exact lesion masks);
    ``tone_source`` and ``datacard``: from DATA/datacard.json (`fairness.model_card`), if any.
    """
    import pandas as pd

    from fairness.model_card import DATACARD_NAMES, DatacardError, read_datacard

    data_dir = Path(data_dir)
    try:
        sources = pd.read_csv(data_dir / "metadata.csv", usecols=["source"], dtype=str)["source"]
        names = {str(x) for x in sources.dropna()}
    except (OSError, ValueError):
        names = set()
    card = None
    if any((data_dir / n).is_file() for n in DATACARD_NAMES):
        try:
            card = read_datacard(data_dir)
        except DatacardError as err:
            raise EvaluationError(str(err), EXIT_DATA) from None
    return {
        "synthetic": bool(names) and all("synth" in x.lower() for x in names),
        "sources": sorted(names),
        "tone_source": (card or {}).get("tone_source"),
        "datacard": card,
    }


def padded_batches(x: Any, batch_size: int) -> Iterator[tuple[np.ndarray, int]]:
    """float32 chunks of `batch_size` rows of `x`, the last one zero-padded (so a jitted
    function compiles one shape), each with its number of real rows."""
    for start in range(0, len(x), batch_size):
        chunk = np.asarray(x[start : start + batch_size], dtype=np.float32)
        n = len(chunk)
        if n < batch_size:
            pad = np.zeros((batch_size - n, *chunk.shape[1:]), np.float32)
            chunk = np.concatenate([chunk, pad])
        yield chunk, n


def compute_cams(
    model: Any,
    images: np.ndarray,
    *,
    method: str,
    layer: str | None,
    batch_size: int,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(probs [N,3], cams [N,3,H,W]) of `images` in batches (last batch padded, one compile)."""
    from train_jax.cam import make_cam_fn

    cam_fn = make_cam_fn(model, method=method, layer=layer)
    probs, cams = [], []
    for chunk, n in padded_batches(images, batch_size):
        p, m = cam_fn(chunk)
        probs.append(np.asarray(p)[:n])
        cams.append(np.asarray(m)[:n])
        if progress is not None:
            progress(n)
    return np.concatenate(probs), np.concatenate(cams)


def cam_grid(model: Any, size: int, layer: str | None) -> list[int] | None:
    """Resolution [h, w] of the maps before upsampling (None if it cannot be worked out)."""
    import jax
    import jax.numpy as jnp

    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    try:
        if layer is None:
            shape = jax.eval_shape(model.features, x).shape
        else:
            _, inter = jax.eval_shape(lambda a: model.features(a, return_intermediates=True), x)
            shape = inter[layer].shape
    except Exception:  # noqa: BLE001 - only a descriptive field of the report
        return None
    return [int(shape[1]), int(shape[2])] if len(shape) == 4 else None


def make_predict_fn(model: Any, batch_size: int = 32) -> Callable[[np.ndarray], np.ndarray]:
    """Jitted `images float32 [n,H,W,3] -> sigmoid probs [n,3]` of an eval-mode model.

    Runs in chunks of `batch_size` (the last one zero-padded, so one compiled shape), so the
    memory does not grow with n: 2,000 crops of 128 px in one call needed 25 GB. On a 2-core
    CPU the small CNN ran about twice as fast in chunks of 16-32 crops as of 128
    (docs/performance.md).
    """
    import jax
    from flax import nnx

    from train_jax.predict import model_outputs

    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(state: Any, x: Any) -> Any:
        return model_outputs(nnx.merge(graphdef, state), x)[0]  # the severity part is unused

    def predict(x: np.ndarray) -> np.ndarray:
        if len(x) <= batch_size:
            return np.asarray(forward(state, np.asarray(x, dtype=np.float32)))
        return np.concatenate(
            [np.asarray(forward(state, c))[:n] for c, n in padded_batches(x, batch_size)]
        )

    return predict


# --------------------------------------------------------------------------- figures


def example_grid(
    ex: Examples,
    cams: np.ndarray,
    probs: np.ndarray,
    indices: Sequence[int],
    *,
    min_side: int = 160,
    tone: ToneBasis | None = None,
) -> np.ndarray:
    """Rows of: crop | CAM overlay per condition (lesion mask outlined in white, label, prob).

    The crop's caption names its group as `tone` does ("estimated-tone group V-VI").
    """
    tone = tone or make_tone_basis(LABELLED)
    rows = []
    for i in indices:
        crop = ex.images[i]
        side = crop.shape[0] * max(1, math.ceil(min_side / crop.shape[0]))
        big = cv2.resize(crop, (side, side), interpolation=cv2.INTER_NEAREST)
        tiles = [_caption(big, tone.group_name(ex.groups[i]))]
        for c, cond in enumerate(CONDITIONS):
            tile = overlay_on_crop(
                big, cv2.resize(cams[i, c], (side, side), interpolation=cv2.INTER_LINEAR)
            )
            mask = cv2.resize(
                ex.masks[i, ..., c].astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST
            )
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(tile, contours, -1, (255, 255, 255), 1)
            label = ex.labels[i, c]
            tag = "?" if np.isnan(label) else str(int(label))
            tiles.append(_caption(tile, f"{cond[:5]} y={tag} p={probs[i, c]:.2f}"))
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


def _caption(tile: np.ndarray, text: str) -> np.ndarray:
    bar = np.zeros((14, tile.shape[1], 3), np.uint8)
    cv2.putText(bar, text, (2, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([bar, tile], axis=0)


def pick_examples(ex: Examples, group: str, k: int) -> list[int]:
    """Up to `k` images of `group` with some condition present (data-source order)."""
    present = np.nan_to_num(ex.labels, nan=0.0).max(axis=1) > 0
    return [i for i, g in enumerate(ex.groups) if g == group and present[i]][:k]


# --------------------------------------------------------------------------- the evaluation


def load_run_examples(
    run_dir: str | Path,
    data_dir: str | Path,
    *,
    split: str,
    limit: int | None = None,
    tfds_dir: str | Path | None = None,
) -> tuple[Any, Any, Examples]:
    """The run's best model, its config, and the split's crops at the run's image size.

    `tfds_dir`: the crop cache; None = the one the run was trained from (`data.tfds_dir`).
    """
    from train_jax.checkpoints import load_model

    try:
        model, config = load_model(Path(run_dir), which="best")
    except (FileNotFoundError, ValueError) as err:
        raise EvaluationError(f"{run_dir}: {err}", EXIT_RUN) from None
    if tfds_dir is None:
        tfds_dir = getattr(config.data, "tfds_dir", "") or None
    size = int(config.model.image_size)
    ex = load_examples(data_dir, crop_size=size, split=split, limit=limit, tfds_dir=tfds_dir)
    return model, config, ex


def evaluate_run(
    run_dir: str | Path,
    data_dir: str | Path,
    *,
    split: str = "test",
    out_dir: str | Path | None = None,
    limit: int | None = None,
    method: str = "cam",
    layer: str | None = None,
    tolerance_px: float | None = None,
    dilate: float | None = None,
    num_steps: int = 20,
    curve_images: int = 100,
    num_boot: int = 1000,
    num_examples: int = 6,
    batch_size: int = 32,
    seed: int = 0,
    show_progress: bool = True,
    tfds_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Run the whole evaluation, write the JSON and PNG grids, return the report dict.

    `tolerance_px`: of the tolerant pointing game (None: `standard_tolerance(side)`; 0: none).

    `dilate`: allowance of `pointing_game` around the masks, a fraction of the face width
    (None: 0 on a synthetic dataset, `BOX_DILATE` otherwise).

    `tfds_dir`: the crop cache; None = the one the run was trained from (`data.tfds_dir`).
    """
    run = Run(run_dir, explain=out_dir)
    run_dir = run.root
    model, config, ex = load_run_examples(
        run_dir, data_dir, split=split, limit=limit, tfds_dir=tfds_dir
    )
    size = int(config.model.image_size)
    facts = read_data_facts(data_dir)
    settings = _Settings.resolve(
        size,
        synthetic=facts["synthetic"],
        tolerance_px=tolerance_px,
        dilate=dilate,
        num_steps=num_steps,
        curve_images=curve_images,
        num_boot=num_boot,
        seed=seed,
    )
    tone = examples_tone(ex)
    out_dir = run.explain_dir

    probs, cams = _cams_with_progress(
        model, ex.images, method=method, layer=layer, batch_size=batch_size, show=show_progress
    )
    grid, align = cam_grid(model, size, layer), cell_alignment(model)
    localisation = _localise(ex, cams, grid, align, settings)
    predict = make_predict_fn(model, batch_size=batch_size)
    faithfulness = _faithfulness_with_progress(ex, cams, predict, settings, show=show_progress)
    report = {
        "run": str(run_dir),
        "data": str(data_dir),
        "split": split,
        "model": config.model.name,
        "image_size": size,
        "method": method,
        "layer": layer or "features (last feature map)",
        "cam_grid": grid,
        "cam_align": align,
        **_group_fields(ex, tone, localisation),
        "settings": settings.to_dict(),
        "localisation": localisation,
        "faithfulness": faithfulness,
        "lesion_reliance": lesion_reliance(ex.images, ex.masks, ex.labels, predict, seed=seed),
        "goal": goal_check(localisation, faithfulness),
        "figures": _write_figures(ex, cams, probs, out_dir, num_examples=num_examples, tone=tone),
        "note": _note(facts, tone, settings.dilate),
    }
    json_path = run.explain_report(split)
    report["report_path"] = str(json_path)
    _write_json(json_path, report)
    return report


@dataclass(frozen=True)
class _Settings:
    """The evaluation's parameters with their defaults filled in."""

    dilate: float
    face_width: float
    tolerance_px: float
    num_steps: int
    curve_images: int
    num_boot: int
    seed: int

    @classmethod
    def resolve(
        cls,
        size: int,
        *,
        synthetic: bool,
        tolerance_px: float | None,
        dilate: float | None,
        num_steps: int,
        curve_images: int,
        num_boot: int,
        seed: int,
    ) -> _Settings:
        """Fill in the defaults that depend on the crop side and on the data being synthetic."""
        if tolerance_px is None:
            tolerance_px = standard_tolerance(size)
        if dilate is None:
            dilate = 0.0 if synthetic else BOX_DILATE
        return cls(
            dilate=dilate,
            face_width=face_width_px(size),
            tolerance_px=tolerance_px,
            num_steps=num_steps,
            curve_images=curve_images,
            num_boot=num_boot,
            seed=seed,
        )

    def to_dict(self) -> dict[str, Any]:
        """The report's `settings` block: the parameters and the rules behind them."""
        return {
            "dilate": self.dilate,
            "face_width_px": self.face_width,
            "dilate_px": self.dilate * self.face_width,
            "dilate_rule": (
                "pointing_game counts a map maximum within dilate x face width of the lesion "
                "mask (filled boxes grown by that many pixels); face width = side / (1 + 2 x "
                f"margin {DEFAULT_MARGIN}), the face-box width in the crop of "
                "preprocessing.align; default dilate 0 on synthetic data (exact masks), "
                f"{BOX_DILATE} on real box annotations"
                + ("; pointing_game_strict is the undilated one" if self.dilate > 0 else "")
            ),
            "tolerance_px": self.tolerance_px,
            "tolerance_rule": (
                "pointing_game_tolerant counts a maximum within "
                "tolerance_px of the mask (default 15 px at 224 px scaled to the crop, "
                "Zhang et al. 2016)"
            ),
            "num_steps": self.num_steps,
            "curve_images": self.curve_images,
            "num_boot": self.num_boot,
            "seed": self.seed,
            "baseline": "gaussian blur, sigma = side / 8",
        }


def _localise(
    ex: Examples, cams: np.ndarray, grid: list[int] | None, align: str, settings: _Settings
) -> dict[str, Any]:
    """`localisation_summary` of the examples' maps under the evaluation's settings."""
    return localisation_summary(
        cams,
        ex.masks,
        ex.labels,
        ex.groups,
        tolerance_px=settings.tolerance_px,
        dilate=settings.dilate,
        face_width=settings.face_width,
        grid=grid,
        align=align,
        num_boot=settings.num_boot,
        seed=settings.seed,
    )


def _group_fields(ex: Examples, tone: ToneBasis, localisation: dict[str, Any]) -> dict[str, Any]:
    """The report's image count, group naming, conditions without ground truth and group sizes."""
    return {
        "n_images": int(len(ex.images)),
        **tone.to_dict(),
        **({"group_note": tone.note} if tone.note else {}),
        "no_ground_truth": [c for c in CONDITIONS if localisation[c]["status"] == NO_GROUND_TRUTH],
        "n_by_group": {
            g: int(sum(1 for x in ex.groups if x == g)) for g in [*GROUPS, UNKNOWN_GROUP]
        },
    }


def _cams_with_progress(
    model: Any,
    images: np.ndarray,
    *,
    method: str,
    layer: str | None,
    batch_size: int,
    show: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """`compute_cams` under a progress bar; an unknown layer or method is an `EvaluationError`."""
    from tqdm import tqdm

    try:
        with tqdm(
            total=len(images), desc="CAM", disable=None if show else True, file=sys.stderr
        ) as bar:
            return compute_cams(
                model,
                images,
                method=method,
                layer=layer,
                batch_size=batch_size,
                progress=bar.update,
            )
    except ValueError as err:  # unknown layer or method for this model
        raise EvaluationError(str(err), EXIT_ARGS) from None


def _faithfulness_with_progress(
    ex: Examples,
    cams: np.ndarray,
    predict: Callable[[np.ndarray], np.ndarray],
    settings: _Settings,
    *,
    show: bool,
) -> dict[str, Any]:
    """`faithfulness_summary` of the examples under a progress bar (one step per image)."""
    from tqdm import tqdm

    curve_images = settings.curve_images
    total_curves = sum(
        min(curve_images, int((ex.labels[:, c] == 1).sum())) for c in range(len(CONDITIONS))
    )
    with tqdm(
        total=total_curves,
        desc="deletion/insertion",
        disable=None if show else True,
        file=sys.stderr,
    ) as bar:
        return faithfulness_summary(
            ex.images,
            cams,
            ex.labels,
            predict,
            max_images=curve_images,
            num_steps=settings.num_steps,
            seed=settings.seed,
            progress=bar.update,
        )


def _write_figures(
    ex: Examples,
    cams: np.ndarray,
    probs: np.ndarray,
    out_dir: Path,
    *,
    num_examples: int,
    tone: ToneBasis,
) -> dict[str, str]:
    """Write one example grid per group that has examples; group -> the PNG's path."""
    figures = {}
    for group in GROUPS:
        idx = pick_examples(ex, group, num_examples)
        if idx:
            path = write_image(
                out_dir / f"cam_examples_{group}.png",
                example_grid(ex, cams, probs, idx, tone=tone),
            )
            figures[group] = str(path)
    return figures


def _note(facts: dict[str, Any], tone: ToneBasis, dilate: float) -> str:
    """The report's closing note: what the data is, where its groups come from, the disclaimer."""
    if facts["synthetic"]:
        data = "Synthetic data: these numbers describe the benchmark, not real skin."
    else:
        card = facts.get("datacard") or {}
        name = card.get("name") or ", ".join(facts.get("sources") or []) or "unknown"
        licence = f" ({card['licence']})" if card.get("licence") else ""
        data = f"Real photographs: {name}{licence}."
    if dilate > 0:
        data += (
            f" The pointing game counts a map maximum within {dilate:.0%} of the face width of an "
            "annotated lesion (box)."
        )
    groups = f" Groups: {tone.label}. {tone.note}" if tone.source != LABELLED else ""
    return f"{data}{groups} {DISCLAIMER}."


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write the report JSON atomically."""
    atomic.write_json(path, payload)


def format_table(report: dict[str, Any]) -> str:
    """Markdown table of the headline numbers of a report."""

    def fmt(s: dict[str, Any]) -> str:
        if s is None or s.get("value") is None:
            return "-"
        lo, hi = s["ci95"]
        return f"{s['value']:.2f} [{lo:.2f}, {hi:.2f}] (n={s['n']})"

    tone = make_tone_basis(report.get("tone_source", LABELLED))
    tol = report.get("settings", {}).get("tolerance_px") or 0
    dilate = report.get("settings", {}).get("dilate") or 0
    pg_name = (
        f"pointing game (boxes + {dilate:.0%} face width)" if dilate else "pointing game (strict)"
    )
    head = (
        f"| condition | {pg_name} | "
        + " | ".join(f"PG {tone.group_name(g)}" for g in GROUPS)
        + " | PG spread | PG chance | PG ceiling | "
        + (f"PG within {tol:.1f} px (spread) | " if tol else "")
        + "energy in mask (area) | deletion AUC / random | insertion AUC / random |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for cond in CONDITIONS:
        loc, fai = report["localisation"][cond], report["faithfulness"][cond]
        if loc.get("status") == NO_GROUND_TRUTH:
            cells = head.count("|") - 2
            lines.append(f"| {cond} | {NO_GROUND_TRUTH} |" + " - |" * (cells - 1))
            continue
        pg = loc["pointing_game"]
        spread = "-" if pg["spread"] is None else f"{pg['spread']:.2f}"
        en = loc["energy_in_mask"]["overall"]
        area = loc["mask_area_fraction"]
        energy = "-" if en["value"] is None else f"{en['value']:.2f} ({area:.2f})"
        ceiling = (loc.get("pointing_ceiling") or {}).get("overall", {}).get("value")
        ceiling = "-" if ceiling is None else f"{ceiling:.2f}"
        chance = (loc.get("pointing_game_chance") or {}).get("overall", {}).get("value")
        chance = "-" if chance is None else f"{chance:.3f}"

        ratios = []
        for mode in ("deletion", "insertion"):
            a, r, q = fai[f"{mode}_auc"], fai[f"{mode}_random_auc"], fai[f"{mode}_ratio"]
            ratios.append("-" if q is None else f"{a:.3f} / {r:.3f} = {q:.2f}")

        groups = " | ".join(fmt(pg["by_group"].get(g)) for g in GROUPS)
        near = loc.get("pointing_game_tolerant")
        tolerant = ""
        if tol:
            sp = "-" if near is None or near["spread"] is None else f"{near['spread']:.2f}"
            tolerant = "- | " if near is None else f"{fmt(near['overall'])} ({sp}) | "
        lines.append(
            f"| {cond} | {fmt(pg['overall'])} | {groups} | {spread} | {chance} | {ceiling} | "
            f"{tolerant}{energy} | {ratios[0]} | {ratios[1]} |"
        )
    reliance = report.get("lesion_reliance")
    if reliance:
        lines += [
            "",
            "| condition | n | mean prob | lesion removed | control (shifted mask removed) |",
            "|---|---|---|---|---|",
        ]
        for cond in CONDITIONS:
            r = reliance[cond]
            if r["n"]:
                lines.append(
                    f"| {cond} | {r['n']} | {r['prob']:.2f} | {r['prob_lesion_removed']:.2f} | "
                    f"{r['prob_control']:.2f} |"
                )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(
        prog="python -m explain.evaluate",
        description="Measure CAM heatmaps against lesion masks, per condition and skin-tone "
        "group (research aid, not a diagnosis).",
    )
    p.add_argument("--run", required=True, help="training run folder (outputs/RUN)")
    p.add_argument("--data", required=True, help="canonical dataset folder with lesion masks")
    p.add_argument(
        "--split", default="test", choices=["val", "test"], help="split to evaluate (default test)"
    )
    p.add_argument("--out", help="output folder (default RUN/explain)")
    p.add_argument(
        "--json", action="store_true", help="print the report as JSON instead of a table"
    )
    p.add_argument("--limit", type=int, help="use only the first N images of the split")
    p.add_argument(
        "--method",
        default="cam",
        choices=["cam", "gradcam", "gradcam++"],
        help="map to evaluate (default cam: the served one)",
    )
    p.add_argument(
        "--layer", help="stage or sub-module for gradcam/gradcam++ (default: last feature map)"
    )
    p.add_argument(
        "--tolerance-px",
        type=float,
        default=None,
        help="tolerance of the second, tolerant pointing game in crop pixels (default: 15 px at "
        "224 px scaled to the crop; 0: strict only). The strict one is always reported",
    )
    p.add_argument(
        "--dilate",
        type=float,
        default=None,
        help="pointing game: count a map maximum within this fraction of the face width of "
        f"the lesion mask (box annotations are loose; default: 0 on synthetic data, {BOX_DILATE} "
        "on real data; 0 = strict)",
    )
    p.add_argument(
        "--num-steps", type=int, default=20, help="points of each deletion/insertion curve - 1"
    )
    p.add_argument(
        "--curve-images",
        type=int,
        default=100,
        help="images per condition for deletion/insertion (default 100)",
    )
    p.add_argument("--num-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--examples", type=int, default=6, help="example rows per group figure")
    p.add_argument(
        "--tfds-dir",
        help="face-crop cache (default: the run's data.tfds_dir, else DATA/tfds)",
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.dilate is not None and not 0 <= args.dilate < 1:
        p.error(f"--dilate must be in [0, 1), got {args.dilate}")
    for name in ("limit", "num_steps", "curve_images", "num_boot"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    return args


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    args = parse_args(argv)
    keep_freed_memory()  # before the first JAX computation (train_jax/host_malloc.py)
    logging.getLogger("absl").setLevel(logging.ERROR)  # orbax's read-only checkpoint chatter
    try:
        report = evaluate_run(
            args.run,
            args.data,
            split=args.split,
            out_dir=args.out,
            limit=args.limit,
            method=args.method,
            layer=args.layer,
            tolerance_px=args.tolerance_px,
            dilate=args.dilate,
            num_steps=args.num_steps,
            curve_images=args.curve_images,
            num_boot=args.num_boot,
            num_examples=args.examples,
            seed=args.seed,
            show_progress=not args.json,
            tfds_dir=args.tfds_dir,
        )
    except EvaluationError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        grid = report.get("cam_grid") or ["?", "?"]
        print(
            f"{report['model']} at {report['image_size']} px, {report['method']} on "
            f"{report['layer']} ({grid[0]}x{grid[1]} map), split {report['split']}, "
            f"{report['n_images']} images\n"
        )
        print(format_table(report))
        print(f"\n{report['note']}\nreport: {report['report_path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
