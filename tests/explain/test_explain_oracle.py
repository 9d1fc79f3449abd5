"""Oracle checks of the pointing game through the real data path (synthetic faces -> TFDS crops).

If the lesion mask itself is used as the heatmap, the pointing game must score 1.0; the same
map moved, mirrored or given to the wrong condition must score lower. And the mask carried into
the crop (`warp_to_crop` with the crop's affine) must sit on the lesion pixels of the crop: acne
and hyperpigmentation are darker than the skin right around them there, and not when the mask is
transposed (x/y swapped) or shifted.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.schema import CONDITIONS
from explain.evaluate import Examples, load_examples, localisation_summary

CROP = 64


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Examples:
    """All splits' crops of 40 synthetic 128 px faces (the trainer's TFDS build)."""
    from data.synthetic import SynthConfig, generate_dataset

    out = tmp_path_factory.mktemp("oracle") / "synth"
    generate_dataset(out, SynthConfig(n=40, seed=5, size=128), progress=False)
    parts = [load_examples(out, crop_size=CROP, split=s, limit=None) for s in ("train", "test")]
    return Examples(
        ids=[i for p in parts for i in p.ids],
        images=np.concatenate([p.images for p in parts]),
        masks=np.concatenate([p.masks for p in parts]),
        labels=np.concatenate([p.labels for p in parts]),
        groups=[g for p in parts for g in p.groups],
    )


def _pointing(ex: Examples, cams: np.ndarray) -> dict[str, float]:
    loc = localisation_summary(cams, ex.masks, ex.labels, ex.groups, num_boot=10)
    return {c: loc[c]["pointing_game"]["overall"]["value"] for c in CONDITIONS}


def _mask_maps(ex: Examples) -> np.ndarray:
    """The masks as maps [N, 3, H, W], blurred so each has one clear maximum inside a lesion."""
    m = ex.masks.transpose(0, 3, 1, 2).astype(np.float32)
    return np.stack([[cv2.GaussianBlur(x, (0, 0), 1.0) for x in im] for im in m])


def test_mask_as_cam_scores_one_and_moved_maps_do_not(examples: Examples) -> None:
    n_present = {c: int((examples.labels[:, i] == 1).sum()) for i, c in enumerate(CONDITIONS)}
    assert min(n_present.values()) >= 3, n_present  # each condition is scored on some images
    maps = _mask_maps(examples)
    exact = _pointing(examples, examples.masks.transpose(0, 3, 1, 2).astype(np.float32) + maps)
    assert exact == {c: 1.0 for c in CONDITIONS}
    shifted = _pointing(examples, np.roll(maps, CROP // 4, axis=-1))
    upside_down = _pointing(examples, maps[..., ::-1, :].copy())
    swapped = _pointing(examples, maps[:, ::-1].copy())  # acne <-> wrinkles
    for c in CONDITIONS:
        assert shifted[c] <= 0.5, (c, shifted)
    assert upside_down["wrinkles"] <= 0.5 and swapped["acne"] <= 0.5, (upside_down, swapped)


def _darker_inside(image: np.ndarray, mask: np.ndarray) -> float:
    """L* of the ring just outside `mask` minus L* inside it (NaN if either is tiny)."""
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~mask
    if mask.sum() < 2 or ring.sum() < 2:
        return float("nan")
    lum = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)[..., 0].astype(np.float64)
    return float(lum[ring].mean() - lum[mask].mean())


@pytest.mark.parametrize("condition", ["acne", "hyperpigmentation"])
def test_warped_mask_sits_on_the_lesion_in_the_crop(examples: Examples, condition: str) -> None:
    c = CONDITIONS.index(condition)
    use = [
        i
        for i in range(len(examples.ids))
        if examples.labels[i, c] == 1 and examples.masks[i, ..., c].any()
    ]

    def contrast(move) -> float:  # noqa: ANN001 - a mask -> mask function
        values = [_darker_inside(examples.images[i], move(examples.masks[i, ..., c])) for i in use]
        return float(np.nanmean(values))

    aligned = contrast(lambda m: m)
    assert aligned > 3.0, aligned  # lesions are darker than the skin around them
    assert contrast(lambda m: m.T.copy()) < aligned / 2
    assert contrast(lambda m: np.roll(m, 3, axis=1)) < aligned * 0.75
