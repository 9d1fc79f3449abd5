"""Real photos: the small CNN on acne-new v36 (real faces with lesion boxes) plus synthskin-v1.

The shipped model's recipe (docs/real-data.md has the table of what was tried on acne-new's
`valid` split and what it measured). The data is the combination made by `python -m
data.combine --data data/acne-new-v36 --data data/synthskin-v1 --out data/acne-new-plus-synth`:
acne and dark spots (hyperpigmentation) are learned from the real photos and the synthetic
faces, wrinkles from the synthetic faces alone (acne-new has no wrinkle labels: they are
unknown there and masked out of the loss). The face crops are 128 px with an output stride of 4
(a 32x32 class map; 192 and 256 px at stride 8 did no better on acne-new valid and worse on dark
spots). In evaluation the model averages each face with its mirror image (`test_time_flip`:
validation, predictions and the exported model; training sees one view). Training samples are
balanced over (estimated or labelled) tone groups and the loss is GroupDRO over them plus the
lesion-localisation loss on the class map (trained with the boxes); the augmentation adds the
camera degradations of `preprocessing.augment`.

    python train_jax/main.py --config train_jax/configs/real_photos.py
    python train_jax/main.py --config train_jax/configs/real_photos.py:quick --data DIR  # tests

Variants (comma-separated): `quick` shrinks images, model, batch and epochs for tests;
`realonly` trains on data/acne-new-v36 alone (no wrinkle labels at all); `bce` uses the plain
loss instead of GroupDRO; `unbalanced` turns the tone-balanced sampling off; `single_view`
evaluates each face as it is, without its mirror image; `count_severity` grades acne severity
with the lesion-count head (a Poisson count from a density map, trained on the lesion counts;
`train_jax.models.count`) instead of the CORAL head on the grades.
"""

from __future__ import annotations

import dataclasses

from train_jax.config import DataConfig, ModelConfig, OptimConfig, TrainConfig, validate
from train_jax.configs.demo import LOC_WEIGHT, shrink_for_tests

COMBINED_DATA = "data/acne-new-plus-synth"
REAL_DATA = "data/acne-new-v36"
VARIANTS = ("bce", "count_severity", "quick", "realonly", "single_view", "unbalanced")
# Variants that only set model overrides.
MODEL_OVERRIDE_VARIANTS = {
    "single_view": {"test_time_flip": False},
    "count_severity": {"severity_head": "count"},
}


def get_config(variant: str | None = None) -> TrainConfig:
    """The real-photo config, optionally changed by the comma-separated `variant`."""
    config = TrainConfig(
        name="real-photos",
        model=ModelConfig(
            name="small_cnn",
            image_size=128,
            overrides={
                "width": 1.0,
                "output_stride": 4,
                "input_norm": "tone",
                "test_time_flip": True,
            },
        ),
        data=DataConfig(data_dir=COMBINED_DATA, generate_preset="", balance="group"),
        optim=OptimConfig(learning_rate=3e-3, weight_decay=1e-4, warmup_steps=50),
        batch_size=32,
        eval_batch_size=32,  # chunks of 32 crops: about twice as fast as 128 on a 2-core CPU
        epochs=18,
        loss="groupdro",
        loc_weight=LOC_WEIGHT,
    )
    for part in [p.strip() for p in (variant or "").split(",") if p.strip()]:
        if part == "quick":
            config = shrink_for_tests(config, "real-photos-quick")
        elif part == "realonly":
            config = dataclasses.replace(
                config, data=dataclasses.replace(config.data, data_dir=REAL_DATA)
            )
        elif part == "bce":
            config = dataclasses.replace(config, loss="bce")
        elif part in MODEL_OVERRIDE_VARIANTS:
            overrides = {**config.model.overrides, **MODEL_OVERRIDE_VARIANTS[part]}
            config = dataclasses.replace(
                config, model=dataclasses.replace(config.model, overrides=overrides)
            )
        elif part == "unbalanced":
            config = dataclasses.replace(
                config, data=dataclasses.replace(config.data, balance="none")
            )
        else:
            raise ValueError(f"unknown real_photos variant {part!r}; choose from {list(VARIANTS)}")
    return validate(config)
