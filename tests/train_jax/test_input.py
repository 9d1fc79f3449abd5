"""Input pipeline: tone-stratified sampler, process sharding, TFDS build and grain batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.severity import severity_from_count
from train_jax import input as I

GROUP_SIZES = (700, 250, 50)  # imbalanced like real dermatology data: few dark-skin images


def _population(seed: int = 0, unknown: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    groups = np.concatenate(
        [np.full(n, g) for g, n in enumerate(GROUP_SIZES)] + [np.full(unknown, -1)]
    )
    labels = (rng.random((len(groups), 3)) < 0.3).astype(np.float32)
    labels[rng.random(labels.shape) < 0.1] = np.nan
    return groups, labels


@pytest.mark.parametrize("epoch", [0, 1, 7])
def test_group_balance_within_5_percent(epoch: int) -> None:
    groups, labels = _population()
    idx = I.sample_epoch(groups, labels, balance="group", seed=11, epoch=epoch)
    share = np.bincount(groups[idx], minlength=3) / len(idx)
    np.testing.assert_allclose(share, 1 / 3, atol=0.05)
    natural = np.bincount(groups, minlength=3) / len(groups)
    assert natural[2] < 0.1  # the test population really is imbalanced


def test_group_label_balances_group_label_strata() -> None:
    groups, labels = _population()
    idx = I.sample_epoch(groups, labels, balance="group_label", seed=2, epoch=0)
    strata = I.strata(groups, labels, "group_label")
    counts = np.bincount(np.unique(strata[idx], return_inverse=True)[1])
    assert len(counts) == len(np.unique(strata))  # every stratum is drawn
    assert counts.max() - counts.min() <= 1
    share = np.bincount(groups[idx], minlength=3) / len(idx)
    assert share[2] > 0.2  # the rare group is no longer rare


def test_unknown_tone_keeps_its_natural_share() -> None:
    groups, labels = _population(unknown=100)
    idx = I.sample_epoch(groups, labels, balance="group", seed=0, epoch=0)
    assert np.mean(groups[idx] == -1) == pytest.approx(100 / 1100, abs=0.002)
    known = groups[idx][groups[idx] >= 0]
    np.testing.assert_allclose(np.bincount(known) / len(known), 1 / 3, atol=0.05)


@pytest.mark.parametrize("balance", ["none", "group", "group_label"])
def test_sampler_is_deterministic_per_epoch_and_seed(balance: str) -> None:
    groups, labels = _population()
    a = I.sample_epoch(groups, labels, balance=balance, seed=5, epoch=3)
    b = I.sample_epoch(groups, labels, balance=balance, seed=5, epoch=3)
    c = I.sample_epoch(groups, labels, balance=balance, seed=5, epoch=4)
    d = I.sample_epoch(groups, labels, balance=balance, seed=6, epoch=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    assert len(a) == len(groups)


def test_none_is_a_permutation() -> None:
    groups, labels = _population()
    idx = I.sample_epoch(groups, labels, balance="none", seed=0, epoch=0)
    np.testing.assert_array_equal(np.sort(idx), np.arange(len(groups)))


def test_bad_balance_mode() -> None:
    with pytest.raises(ValueError, match="balance must be one of"):
        I.strata(np.zeros(3), np.zeros((3, 3)), "tone")


def test_processes_split_each_global_batch() -> None:
    idx = np.arange(100, 124)
    parts = [I._process_slice(idx, 8, p, 2) for p in range(2)]
    for step in range(3):
        rows = np.concatenate([parts[p][0][step * 4 : (step + 1) * 4] for p in range(2)])
        np.testing.assert_array_equal(rows, idx[step * 8 : (step + 1) * 8])
    with pytest.raises(ValueError, match="not divisible"):
        I._process_slice(idx, 8, 0, 3)


@pytest.fixture(scope="module")
def builder(tiny_dataset: Path):
    from data.tfds_builder import build_dataset

    return build_dataset(tiny_dataset, crop_size=32)


def test_tfds_build_matches_metadata(builder, tiny_dataset: Path) -> None:
    df = pd.read_csv(tiny_dataset / "metadata.csv")
    total = 0
    for split in ("train", "val", "test"):
        meta = I.split_metadata(builder, split)
        total += len(meta)
        rows = df.iloc[meta.rows]
        assert list(rows["image"]) == meta.ids
        assert set(rows["split"]) == {split}
        expected = rows[["acne", "hyperpigmentation", "wrinkles"]].to_numpy(np.float32)
        np.testing.assert_array_equal(np.isnan(meta.labels), np.isnan(expected))
        np.testing.assert_array_equal(
            np.nan_to_num(meta.labels, nan=-1), np.nan_to_num(expected, nan=-1)
        )
        fitz = rows["fitzpatrick"].fillna(0).astype(int).to_numpy()
        np.testing.assert_array_equal(meta.fitzpatrick, fitz)
        np.testing.assert_array_equal(meta.groups, np.where(fitz > 0, (fitz - 1) // 2, -1))
        severity = rows["acne_severity"].fillna(-1).astype(int).to_numpy()
        np.testing.assert_array_equal(meta.severity, severity)
        np.testing.assert_array_equal(meta.lesion_count, rows["acne_lesion_count"].to_numpy())
        assert meta.tone_source == ["labelled" if f > 0 else "" for f in fitz]
    assert total == len(df)
    assert df["acne_lesion_count"].max() > 5  # counts, not only the grades' 0/1
    record = builder.as_data_source(split="train")[0]
    assert record["image"].shape == (32, 32, 3) and record["image"].dtype == np.uint8
    assert record["mask"].shape == (32, 32, 3)


def test_build_is_cached(builder, tiny_dataset: Path) -> None:
    from data.tfds_builder import build_dataset

    again = build_dataset(tiny_dataset, crop_size=32)
    assert again.data_dir == builder.data_dir
    assert again.is_prepared()


def _epoch(builder, *, balance: str, seed: int, epoch: int, **kw) -> tuple[list, np.ndarray]:
    """Batches of 4 of one augmented training epoch of the tiny build, and its indices."""
    meta = I.split_metadata(builder, "train")
    idx = I.sample_epoch(meta.groups, meta.labels, balance=balance, seed=seed, epoch=epoch)
    source = builder.as_data_source(split="train")
    batches = I.train_batches(source, idx, batch_size=4, seed=seed, epoch=epoch, **kw)
    return list(batches), idx


def test_train_batches_deterministic_and_resumable(builder) -> None:
    full, idx = _epoch(builder, balance="group", seed=1, epoch=0)
    again, _ = _epoch(builder, balance="group", seed=1, epoch=0)
    tail, _ = _epoch(builder, balance="group", seed=1, epoch=0, start_step=2)
    assert len(full) == len(idx) // 4 and len(tail) == len(full) - 2
    for a, b in zip(full, again, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
    for a, b in zip(full[2:], tail, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
    batch = full[0]
    assert batch["image"].dtype == np.uint8 and batch["image"].shape == (4, 32, 32, 3)
    assert set(np.unique(batch["label_mask"])) <= {0.0, 1.0}
    assert np.all(batch["labels"][batch["label_mask"] == 0] == 0)
    assert batch["severity"].dtype == np.int32 and batch["severity"].shape == (4,)
    assert batch["severity_mask"].dtype == np.float32


def test_eval_batches_cover_every_example_once_with_padding(builder) -> None:
    source = builder.as_data_source(split="val")
    batches = list(I.eval_batches(source, batch_size=4))
    severity = np.concatenate([b["severity"] for b in batches])[: len(source)]
    known = np.concatenate([b["severity_mask"] for b in batches])[: len(source)]
    expected = np.array([int(source[i]["acne_severity"]) for i in range(len(source))])
    np.testing.assert_array_equal(np.where(known > 0, severity, -1), expected)
    assert np.all(severity[known == 0] == 0)
    # the synthetic faces carry their lesion counts: every count known, its band the severity
    count = np.concatenate([b["lesion_count"] for b in batches])[: len(source)]
    count_known = np.concatenate([b["lesion_count_mask"] for b in batches])[: len(source)]
    assert count.dtype == np.float32 and count_known.all()
    assert [severity_from_count(int(c)) for c in count] == expected.tolist()
    weights = np.concatenate([b["weight"] for b in batches])
    assert weights.sum() == len(source) and len(weights) % 4 == 0
    images = np.concatenate([b["image"] for b in batches])[: len(source)]
    for i in range(len(source)):
        np.testing.assert_array_equal(images[i], source[i]["image"])


def test_masks_ride_along_without_changing_the_images(builder) -> None:
    plain, _ = _epoch(builder, balance="none", seed=4, epoch=1)
    with_masks, _ = _epoch(builder, balance="none", seed=4, epoch=1, masks=True)
    for a, b in zip(plain, with_masks, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        assert "mask" not in a
        assert b["mask"].shape == (4, 32, 32, 3) and b["mask"].dtype == np.uint8


def test_augmented_mask_follows_the_image_geometry() -> None:
    # An image whose bright square is its own lesion mask: after crop, flip and rotation the
    # mask must still cover the bright pixels (the same geometry, nearest-neighbour resampling).
    image = np.zeros((48, 48, 3), np.uint8)
    image[8:20, 26:40] = 255
    mask = np.zeros((48, 48, 3), np.uint8)
    mask[8:20, 26:40, 1] = 255
    record = {"image": image, "mask": mask, "labels": np.array([0, 1, 0], np.float32), "group": 1}
    idx = np.zeros(16, np.int64)
    batches = list(
        I.train_batches([record], idx, batch_size=16, seed=0, epoch=0, augment=True, masks=True)
    )
    moved = 0
    for img, m in zip(batches[0]["image"], batches[0]["mask"], strict=True):
        bright, lesion = img[..., 0] > 127, m[..., 1] > 0
        assert (bright & lesion).sum() / (bright | lesion).sum() > 0.8
        assert not m[..., 0].any() and not m[..., 2].any()
        moved += not np.array_equal(lesion, mask[..., 1] > 0)
    assert moved >= 12  # the augmentation did move the masks
