"""Input pipeline: TFDS array_record face crops -> grain -> uint8 batches (normalised on device).

* `split_metadata` reads labels, groups and ids of a split without decoding images.
* `sample_epoch` draws one epoch of training indices, tone-stratified if asked
  (`balance = none | group | group_label`), deterministic per (seed, epoch).
* `train_batches` / `eval_batches` are grain pipelines over the TFDS data source; each process
  reads only its slice of every global batch, so the same code runs on 1 CPU or N hosts.

Batches are dicts of numpy arrays: `image` uint8 [B,S,S,3], `labels` float32 [B,3] (unknown
labels set to 0), `label_mask` float32 [B,3] (0 = unknown label, masked out of the loss),
`group` int32 [B] (-1 = unknown tone), `severity` int32 [B] (acne severity grade 0-3, unknown set
to 0), `severity_mask` float32 [B] (0 = unknown severity, masked out of the ordinal loss),
`lesion_count` float32 [B] (acne lesion count, unknown set to 0), `lesion_count_mask` float32 [B]
(0 = unknown count, masked out of the count loss),
`weight` float32 [B] (0 = padding), and with
`masks=True` the lesion masks `mask` uint8 [B,S,S,3] (channel = condition, > 0 = lesion), moved by
the same augmentation geometry as the image.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grain
import numpy as np
import tensorflow_datasets as tfds

from core.schema import CONDITIONS, GROUPS

AugmentFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]
MaskAugmentFn = Callable[
    [np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]
]


@dataclass(frozen=True)
class SplitMeta:
    """Per-example metadata of one split, in data-source order."""

    ids: list[str]  # `image` column of metadata.csv
    rows: np.ndarray  # int [N] row in metadata.csv
    labels: np.ndarray  # float32 [N,3], NaN = unknown
    fitzpatrick: np.ndarray  # int [N], 0 = unknown
    groups: np.ndarray  # int [N], index into GROUPS, -1 = unknown
    face_found: np.ndarray  # int [N]
    severity: np.ndarray  # int [N], acne severity grade 0-3, -1 = unknown
    lesion_count: np.ndarray  # int [N], acne lesion count, -1 = unknown
    tone_source: list[str]  # "labelled" | "estimated" | "" (unknown)

    def __len__(self) -> int:
        return len(self.ids)


def split_metadata(builder: tfds.core.DatasetBuilder, split: str) -> SplitMeta:
    """Metadata of `split`, read with the image and mask left encoded (fast)."""
    source = builder.as_data_source(
        split=split,
        decoders={"image": tfds.decode.SkipDecoding(), "mask": tfds.decode.SkipDecoding()},
    )
    records = [source[i] for i in range(len(source))]
    return SplitMeta(
        ids=[_text(r["id"]) for r in records],
        rows=np.array([int(r["row"]) for r in records], np.int64),
        labels=np.array([r["labels"] for r in records], np.float32).reshape(-1, len(CONDITIONS)),
        fitzpatrick=np.array([int(r["fitzpatrick"]) for r in records], np.int64),
        groups=np.array([int(r["group"]) for r in records], np.int64),
        face_found=np.array([int(r["face_found"]) for r in records], np.int64),
        severity=np.array([int(r["acne_severity"]) for r in records], np.int64),
        lesion_count=np.array([int(r["acne_lesion_count"]) for r in records], np.int64),
        tone_source=[_text(r["tone_source"]) for r in records],
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- tone-stratified sampling --------------------------------------------------------------


def strata(groups: np.ndarray, labels: np.ndarray, balance: str) -> np.ndarray:
    """Stratum id per example: its tone group (`group`) or group x label pattern (`group_label`).

    Examples with an unknown group (-1) get stratum -1: they keep their natural frequency.
    A label pattern counts unknown as a third value, so (1, 0, ?) is its own combination.
    """
    groups = np.asarray(groups)
    if balance == "group":
        return groups.copy()
    if balance == "group_label":
        digits = np.where(np.isnan(labels), 2, labels).astype(np.int64)
        pattern = (digits * 3 ** np.arange(labels.shape[1])).sum(axis=1)
        return np.where(groups < 0, -1, groups * 3 ** labels.shape[1] + pattern)
    raise ValueError(f"balance must be one of ['group', 'group_label', 'none'], got {balance!r}")


def sample_epoch(
    groups: np.ndarray,
    labels: np.ndarray,
    *,
    balance: str,
    seed: int,
    epoch: int,
    num_samples: int | None = None,
) -> np.ndarray:
    """Indices of one training epoch (`num_samples`, default N); deterministic per seed and epoch.

    `none` is a plain shuffle. `group` and `group_label` give every known stratum the same
    number of draws (inverse-frequency sampling, like a WeightedRandomSampler, but with exact
    quotas so the balance holds in every epoch); examples of unknown tone keep their share.
    Inside a stratum, examples are drawn without replacement until it is used up, then reshuffled.
    """
    n = len(groups)
    num_samples = n if num_samples is None else int(num_samples)
    rng = np.random.default_rng([int(seed), int(epoch), 0x5EED])
    if balance == "none":
        reps = math.ceil(num_samples / n)
        return np.concatenate([rng.permutation(n) for _ in range(reps)])[:num_samples]
    ids = strata(groups, labels, balance)
    known = np.unique(ids[ids >= 0])
    num_unknown = round(num_samples * np.mean(ids < 0)) if len(known) else num_samples
    quotas = {-1: num_unknown} if num_unknown else {}
    per, extra = divmod(num_samples - num_unknown, max(len(known), 1))
    bonus = set(rng.permutation(known)[:extra].tolist())  # who gets the remainder: random
    for s in known:
        quotas[int(s)] = per + (int(s) in bonus)
    drawn = []
    for s, quota in sorted(quotas.items()):
        members = np.flatnonzero(ids == s)
        reps = math.ceil(quota / len(members))
        drawn.append(np.concatenate([rng.permutation(members) for _ in range(reps)])[:quota])
    return rng.permutation(np.concatenate(drawn))


# --- augmentation --------------------------------------------------------------------------


@functools.cache
def make_augment_fn() -> tuple[AugmentFn, str]:
    """The tone-preserving augmentation of preprocessing/ (`augment(image, rng)`), and its name."""
    from preprocessing.augment import augment

    return augment, "preprocessing.augment"


def make_mask_augment_fn() -> MaskAugmentFn:
    """`augment_with_masks(image, masks, rng)`: the same draw as `make_augment_fn()` on the image
    (so the image is augmented identically with or without masks), the same geometry on masks."""
    from preprocessing.augment import augment_with_masks

    return augment_with_masks


# --- grain pipelines -----------------------------------------------------------------------


def _example(
    record: dict[str, Any],
    *,
    augment: bool,
    rng: np.random.Generator | None,
    masks: bool = False,
) -> dict[str, np.ndarray]:
    """One decoded record -> the arrays of a batch row (with its lesion masks if `masks`)."""
    image = np.asarray(record["image"], np.uint8)
    mask = np.asarray(record["mask"], np.uint8) if masks else None
    if augment and rng is not None:
        if mask is None:
            image = make_augment_fn()[0](image, rng)
        else:
            image, mask = make_mask_augment_fn()(image, mask, rng)
    labels = np.asarray(record["labels"], np.float32)
    known = ~np.isnan(labels)
    severity = int(record.get("acne_severity", -1))  # -1 = unknown (or a record without it)
    count = int(record.get("acne_lesion_count", -1))
    row = {
        "image": np.ascontiguousarray(image, dtype=np.uint8),
        "labels": np.where(known, labels, 0.0).astype(np.float32),
        "label_mask": known.astype(np.float32),
        "group": np.int32(record["group"]),
        "severity": np.int32(max(severity, 0)),
        "severity_mask": np.float32(severity >= 0),
        "lesion_count": np.float32(max(count, 0)),
        "lesion_count_mask": np.float32(count >= 0),
        "weight": np.float32(1.0),
    }
    if mask is not None:
        row["mask"] = np.ascontiguousarray(mask, dtype=np.uint8)
    return row


class _Positions:
    """Random-access view of (record index, global position) pairs for one process."""

    def __init__(self, source: Any, index: np.ndarray, position: np.ndarray, fn: Callable):
        self._source, self._index, self._position, self._fn = source, index, position, fn

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return self._fn(self._source[int(self._index[i])], int(self._position[i]))


def _process_slice(
    indices: np.ndarray, batch_size: int, process_index: int, process_count: int
) -> tuple[np.ndarray, np.ndarray]:
    """This process's columns of every global batch: (record indices, global positions)."""
    if batch_size % process_count:
        raise ValueError(f"batch size {batch_size} is not divisible by {process_count} processes")
    local = batch_size // process_count
    grid = indices.reshape(-1, batch_size)
    pos = np.arange(grid.size).reshape(grid.shape)
    cols = slice(process_index * local, (process_index + 1) * local)
    return grid[:, cols].reshape(-1), pos[:, cols].reshape(-1)


def _read_options(num_threads: int, prefetch: int) -> grain.ReadOptions:
    return grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)


def train_batches(
    source: Any,
    indices: np.ndarray,
    *,
    batch_size: int,
    seed: int,
    epoch: int,
    start_step: int = 0,
    augment: bool = True,
    masks: bool = False,
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 1,
    prefetch: int = 4,
) -> Iterator[dict[str, np.ndarray]]:
    """This process's part of each global training batch of one epoch, from step `start_step`.

    Whole batches only (the tail of the epoch that does not fill a batch is dropped). The
    augmentation of an example depends only on (seed, epoch, its global position), so resuming
    mid-epoch or changing the number of processes gives the same batches. `masks` adds the
    lesion masks (for the localisation loss); the images are the same with or without them.
    """
    num_steps = len(indices) // batch_size
    indices = np.asarray(indices[: num_steps * batch_size])
    index, position = _process_slice(indices, batch_size, process_index, process_count)
    local = batch_size // process_count
    index, position = index[start_step * local :], position[start_step * local :]

    def fn(record: dict[str, Any], pos: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([int(seed), int(epoch), pos]) if augment else None
        return _example(record, augment=augment, rng=rng, masks=masks)

    ds = grain.MapDataset.source(_Positions(source, index, position, fn))
    ds = ds.batch(local, drop_remainder=True)
    return iter(ds.to_iter_dataset(_read_options(num_threads, prefetch)))


def eval_batches(
    source: Any,
    *,
    batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 1,
    prefetch: int = 4,
) -> Iterator[dict[str, np.ndarray]]:
    """Every example of `source` once, in order, padded to whole global batches (`weight` 0)."""
    n = len(source)
    num_batches = max(1, math.ceil(n / batch_size))
    padded = np.arange(num_batches * batch_size)
    index, position = _process_slice(padded, batch_size, process_index, process_count)

    def fn(record: dict[str, Any], pos: int) -> dict[str, np.ndarray]:
        row = _example(record, augment=False, rng=None)
        if pos >= n:
            row["weight"] = np.float32(0.0)
        return row

    ds = grain.MapDataset.source(_Positions(source, np.minimum(index, n - 1), position, fn))
    ds = ds.batch(batch_size // process_count, drop_remainder=True)
    return iter(ds.to_iter_dataset(_read_options(num_threads, prefetch)))


def group_counts(groups: np.ndarray) -> np.ndarray:
    """Examples per tone group (unknown excluded), float [len(GROUPS)]."""
    g = np.asarray(groups)
    return np.array([(g == i).sum() for i in range(len(GROUPS))], np.float64)
