"""Input normalisation modes, applied inside the model graph (so the exported ONNX has them too).

* ``"imagenet"`` (default): ImageNet mean/std, ``layers.normalize_image``.
* ``"signed"``: ``(x - 127) / 128``, inputs in about [-1, 1]: what TensorFlow's EfficientNet-Lite
  ImageNet weights were trained with.
* ``"tone"``: tone-aware. Skin colour and most lesions act on the reflectance multiplicatively
  (a lesion darkens the skin under it by a factor ``1 - k``), and sRGB encoding is close to a
  power law, so in 8-bit RGB a lesion's *difference* to the skin around it scales with the skin's
  own brightness: the same lesion is about a third as large on type VI skin as on type II. In the
  log domain it is an offset ``log(1 - k)`` whatever the skin's tone. This mode takes
  ``log(x + TONE_OFFSET)`` per channel, removes the image's own mean (its geometric-mean colour,
  i.e. most of the global tone and exposure) and scales by a constant; what is left is relative
  contrast. It cannot restore what the image lacks (a fainter lesion stays fainter).

Both are pure elementwise maps plus (for "tone") one mean per image and channel: exportable.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from train_jax.models.layers import normalize_image

INPUT_NORMS = ("imagenet", "signed", "tone")
SIGNED_MEAN, SIGNED_SCALE = 127.0, 128.0  # TensorFlow EfficientNet-Lite's MEAN_RGB / STDDEV_RGB
TONE_OFFSET = 8.0  # grey levels added before the log: keeps JPEG noise in near-black pixels small
TONE_SCALE = 2.0  # centred log-RGB of synthskin crops has std 0.6: inputs of about unit scale


DESCRIPTIONS = {
    "imagenet": "in the graph: (x / 255 - ImageNet mean) / ImageNet std",
    "signed": f"in the graph: (x - {SIGNED_MEAN:g}) / {SIGNED_SCALE:g}",
    "tone": (
        f"in the graph, tone-aware: {TONE_SCALE:g} * (log(x + {TONE_OFFSET:g}) - its mean over "
        "the image, per channel) (train_jax.models.input_norm)"
    ),
}


def describe(mode: str) -> str:
    """One line for the model card: what the graph does to the 0..255 RGB input."""
    if mode not in DESCRIPTIONS:
        raise ValueError(f"unknown input_norm {mode!r}; choose one of {sorted(INPUT_NORMS)}")
    return DESCRIPTIONS[mode]


def tone_normalize(x: jax.Array) -> jax.Array:
    """Tone-aware input: ``TONE_SCALE * (log(x + off) - mean_hw log(x + off))``, [B,H,W,C].

    Multiplying the image by any positive per-channel factor leaves the output unchanged
    (up to the offset), which is the point: skin tone and exposure are factored out.
    """
    lg = jnp.log(x.astype(jnp.float32) + TONE_OFFSET)
    return TONE_SCALE * (lg - jnp.mean(lg, axis=(1, 2), keepdims=True))


def normalize_input(x: jax.Array, mode: str = "imagenet", dtype: Any | None = None) -> jax.Array:
    """Float RGB in [0, 255], NHWC -> the network's input under `mode` (see INPUT_NORMS)."""
    if mode == "imagenet":
        return normalize_image(x, dtype)
    if mode == "signed":
        y = (x.astype(jnp.float32) - SIGNED_MEAN) * (1.0 / SIGNED_SCALE)
        return y.astype(dtype) if dtype is not None else y
    if mode == "tone":
        y = tone_normalize(x)
        return y.astype(dtype) if dtype is not None else y
    raise ValueError(f"unknown input_norm {mode!r}; choose one of {sorted(INPUT_NORMS)}")
