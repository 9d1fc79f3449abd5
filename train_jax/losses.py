"""Multi-label losses with masked (unknown) labels, group reweighting and GroupDRO; the ordinal
acne-severity loss and the Poisson lesion-count loss; the lesion-localisation loss.

All functions are pure `jax.numpy` functions of arrays, so they run inside the jitted step and
are tested on their own. Shapes: logits, labels and label_mask are [B, C]; groups is int [B]
(-1 = unknown tone group); weight is [B] (0 = padding row).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from train_jax.config import LOC_CELLS
from train_jax.models.count import LOG_RATE_RANGE
from train_jax.models.ordinal import ordinal_targets


def bce_elementwise(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Binary cross-entropy with logits, per element (numerically stable)."""
    logits = logits.astype(jnp.float32)
    return jnp.maximum(logits, 0) - logits * labels + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def focal_elementwise(logits: jax.Array, labels: jax.Array, gamma: float) -> jax.Array:
    """Focal loss (Lin et al. 2017) per element: (1 - p_t)^gamma * BCE; gamma 0 is BCE."""
    bce = bce_elementwise(logits, labels)
    p = jax.nn.sigmoid(logits.astype(jnp.float32))
    p_t = labels * p + (1 - labels) * (1 - p)
    return (1 - p_t) ** gamma * bce


def per_example(elementwise: jax.Array, label_mask: jax.Array) -> jax.Array:
    """Mean over the known labels of each example, [B]; 0 for an example with none known."""
    known = label_mask.sum(axis=-1)
    return (elementwise * label_mask).sum(axis=-1) / jnp.maximum(known, 1.0)


def weighted_mean(values: jax.Array, weight: jax.Array) -> jax.Array:
    """Sum(values * weight) / sum(weight) (0 when all weights are 0)."""
    return (values * weight).sum() / jnp.maximum(weight.sum(), 1e-12)


def example_weights(label_mask: jax.Array, weight: jax.Array) -> jax.Array:
    """Row weight of an example in the batch mean: padding and all-unknown rows count 0."""
    return weight * (label_mask.sum(axis=-1) > 0)


def group_means(
    values: jax.Array, groups: jax.Array, weight: jax.Array, num_groups: int
) -> tuple[jax.Array, jax.Array]:
    """(mean of `values` per group [G], number of weighted examples per group [G])."""
    onehot = jax.nn.one_hot(groups, num_groups, dtype=jnp.float32) * weight[:, None]
    counts = onehot.sum(axis=0)
    sums = (onehot * values[:, None]).sum(axis=0)
    return sums / jnp.maximum(counts, 1e-12), counts


def inverse_frequency_weights(counts: np.ndarray) -> np.ndarray:
    """Inverse-frequency group weights w_g = N / (G * n_g) over the groups present (absent: 0).

    A balanced training set gets weight 1 for every group.

    >>> inverse_frequency_weights(np.array([60.0, 30.0, 10.0])).round(3).tolist()
    [0.556, 1.111, 3.333]
    """
    counts = np.asarray(counts, np.float64)
    present = counts > 0
    w = np.zeros_like(counts)
    w[present] = counts[present].sum() / (present.sum() * counts[present])
    return w


def reweighted_weights(groups: jax.Array, weight: jax.Array, group_weights: jax.Array) -> jax.Array:
    """Row weights for group-reweighted BCE: unknown-group rows keep weight 1."""
    g_w = jnp.where(groups >= 0, group_weights[jnp.clip(groups, 0)], 1.0)
    return weight * g_w


def groupdro_update(
    q: jax.Array, group_losses: jax.Array, counts: jax.Array, eta: float
) -> jax.Array:
    """One step of GroupDRO's online group weights (Sagawa et al. 2020, Algorithm 1).

    q_g <- q_g * exp(eta * loss_g) for groups present in the batch, then renormalised;
    absent groups keep their weight.
    """
    present = counts > 0
    logits = jnp.log(q) + jnp.where(present, eta * group_losses, 0.0)
    return jax.nn.softmax(logits)


def compute_loss(
    name: str,
    logits: jax.Array,
    batch: dict[str, jax.Array],
    *,
    num_groups: int,
    group_weights: jax.Array | None = None,
    dro_q: jax.Array | None = None,
    focal_gamma: float = 2.0,
    groupdro_eta: float = 0.01,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Loss `name` (bce | focal | reweight | groupdro) of one batch and auxiliary outputs.

    Returns (loss, aux) where aux holds `bce` (the plain masked BCE, for logging),
    `group_loss` [G] and, for GroupDRO, the updated weights `dro_q` [G]. For GroupDRO the loss
    is sum_g q_g * loss_g with the weights already updated on this batch, as in the paper.
    """
    labels, mask = batch["labels"], batch["label_mask"]
    row_w = example_weights(mask, batch["weight"])
    bce_rows = per_example(bce_elementwise(logits, labels), mask)
    group_loss, counts = group_means(bce_rows, batch["group"], row_w, num_groups)
    aux: dict[str, jax.Array] = {"bce": weighted_mean(bce_rows, row_w), "group_loss": group_loss}
    if name == "bce":
        loss = aux["bce"]
    elif name == "focal":
        loss = weighted_mean(
            per_example(focal_elementwise(logits, labels, focal_gamma), mask), row_w
        )
    elif name == "reweight":
        assert group_weights is not None, "reweight needs group_weights"
        loss = weighted_mean(bce_rows, reweighted_weights(batch["group"], row_w, group_weights))
    elif name == "groupdro":
        assert dro_q is not None, "groupdro needs dro_q"
        q = groupdro_update(dro_q, jax.lax.stop_gradient(group_loss), counts, groupdro_eta)
        loss = (q * group_loss).sum()
        aux["dro_q"] = q
    else:
        raise ValueError(
            f"loss must be one of ['bce', 'focal', 'groupdro', 'reweight'], got {name!r}"
        )
    return loss, aux


# --- ordinal acne severity ----------------------------------------------------------------


def ordinal_loss(
    logits: jax.Array, grades: jax.Array, row_weight: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Ordinal (CORAL) loss: BCE of the cumulative logits [B, K-1] on the targets `grade > k`.

    `grades` int [B] (any value where unknown), `row_weight` [B]: 0 masks a row out (unknown
    severity, padding). Per row, the mean BCE over the K-1 cumulative events; then the weighted
    mean over rows. Returns (loss, number of rows with weight > 0); the loss is 0 without any.

    >>> loss, n = ordinal_loss(jnp.zeros((2, 3)), jnp.array([0, 3]), jnp.array([1.0, 0.0]))
    >>> round(float(loss), 4), int(n)   # log(2) for every event of the one known row
    (0.6931, 1)
    """
    targets = ordinal_targets(jnp.asarray(grades), logits.shape[-1] + 1)
    per_row = bce_elementwise(logits, targets).mean(axis=-1)
    row_weight = row_weight.astype(jnp.float32)
    return weighted_mean(per_row, row_weight), (row_weight > 0).sum()


def poisson_count_loss(
    log_rate: jax.Array, counts: jax.Array, row_weight: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Poisson negative log-likelihood of lesion counts [B] under the rates ``exp(log_rate)``.

    Per row ``rate - count * log_rate`` (the constant ``log(count!)`` left out), the log rate
    clipped as `train_jax.models.count.poisson_log_pmf` clips it; then the weighted mean over
    rows. `row_weight` [B]: 0 masks a row out (unknown count, padding). Returns (loss, number of
    rows with weight > 0); the loss is 0 without any.

    >>> loss, n = poisson_count_loss(jnp.log(jnp.array([2.0, 5.0])), jnp.array([2.0, 9.0]),
    ...                              jnp.array([1.0, 0.0]))
    >>> round(float(loss), 4), int(n)   # 2 - 2 log 2 for the one known row
    (0.6137, 1)
    """
    lr = jnp.clip(log_rate.astype(jnp.float32), *LOG_RATE_RANGE)
    per_row = jnp.exp(lr) - counts.astype(jnp.float32) * lr
    row_weight = row_weight.astype(jnp.float32)
    return weighted_mean(per_row, row_weight), (row_weight > 0).sum()


# --- lesion localisation on the class activation map ---------------------------------------


def mask_at_cells(
    masks: jax.Array, grid: tuple[int, int], align: str, mode: str = "pixel"
) -> jax.Array:
    """Lesion masks [B,S,S,C] (> 0 = lesion) seen by a [h, w] feature grid -> float [B,h,w,C].

    mode "pixel": a cell counts as inside the lesion when the input pixel it is centred on is
    (the pixel where the bilinearly upsampled CAM of that cell peaks, i.e. where the pointing
    game looks): `s * j` for "corner" cells (the CNNs), the central pixels of each `s x s` patch
    for "center" cells (ViT patches, max over the 1 or 2 central pixels per axis). A lesion
    smaller than the stride can fall between those pixels and reach no cell.
    mode "block": a cell counts when any pixel of the `s x s` block it covers is a lesion
    pixel: the block centred on `s * j` (pixels `s * j - s // 2` to `s * j - s // 2 + s - 1`)
    for "corner" cells, the patch itself for "center" cells. Every lesion reaches a cell.
    """
    _, height, width, _ = masks.shape
    h, w = grid
    if height % h or width % w:
        raise ValueError(f"mask size {height}x{width} is not a multiple of the grid {h}x{w}")
    if mode not in LOC_CELLS:
        raise ValueError(f"mode must be one of {LOC_CELLS}, got {mode!r}")
    sy, sx = height // h, width // w
    m = masks > 0
    if align not in ("corner", "center"):
        raise ValueError(f"align must be 'corner' or 'center', got {align!r}")
    if mode == "block":
        return _block_any(m, (sy, sx), centred=align == "corner").astype(jnp.float32)
    if align == "corner":
        return m[:, ::sy, ::sx, :].astype(jnp.float32)
    out = jnp.zeros((m.shape[0], h, w, m.shape[3]), bool)
    for dy in {(sy - 1) // 2, sy // 2}:
        for dx in {(sx - 1) // 2, sx // 2}:
            out = out | m[:, dy::sy, dx::sx, :]
    return out.astype(jnp.float32)


def _block_any(m: jax.Array, stride: tuple[int, int], *, centred: bool) -> jax.Array:
    """Any-pooling of bool masks [B,S,S,C] over `stride` blocks; `centred` shifts each block back
    by half a stride (zero padding) so that block j is centred on pixel `s * j`."""
    sy, sx = stride
    if centred:
        pad = ((0, 0), (sy // 2, 0), (sx // 2, 0), (0, 0))
        m = jnp.pad(m, pad)[:, : m.shape[1], : m.shape[2], :]
    b, height, width, c = m.shape
    return m.reshape(b, height // sy, sy, width // sx, sx, c).any(axis=(2, 4))


def localisation_loss(
    cell_scores: jax.Array,
    cell_mask: jax.Array,
    labels: jax.Array,
    label_mask: jax.Array,
    weight: jax.Array,
    temperature: float = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """Pointing loss of a class map: -T log(share of softmax(scores / T) inside the lesion).

    `cell_scores` [B,h,w,C] are the head's per-cell class scores (the CAM before its ReLU),
    `cell_mask` [B,h,w,C] the lesion cells (`mask_at_cells`). It counts only (image, condition)
    pairs labelled present whose mask covers at least one cell, so images without masks (or
    without the condition) add nothing; it is minimised when the map peaks inside the lesion.
    It equals T softplus((LSE_out - LSE_in) / T) over the outside and lesion cells: a small
    temperature T approaches a hinge on (best outside cell - best lesion cell), which stops
    pushing once the peak is inside; T = 1 keeps pulling every outside cell down.
    `weight` [B] weighs each image's pairs (0 = padding row).
    Returns (weighted mean over those pairs, number of pairs); 0 when there are none.
    """
    b, h, w, c = cell_scores.shape
    s = cell_scores.astype(jnp.float32).reshape(b, h * w, c) / temperature
    inside = cell_mask.reshape(b, h * w, c) > 0
    present = (labels > 0.5) & (label_mask > 0) & (weight[:, None] > 0)
    valid = (present & inside.any(axis=1)).astype(jnp.float32)
    row_w = valid * weight[:, None]
    all_cells = jax.nn.logsumexp(s, axis=1)
    # A large finite floor, not -inf: a pair without lesion cells must keep finite gradients.
    lesion = jax.nn.logsumexp(jnp.where(inside, s, -1e9), axis=1)
    per_pair = jnp.where(valid > 0, temperature * (all_cells - lesion), 0.0)
    return (per_pair * row_w).sum() / jnp.maximum(row_w.sum(), 1e-12), valid.sum()
