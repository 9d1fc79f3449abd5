"""CPU demo: the small CNN on synthskin-v1 face crops, a few minutes on a laptop.

    python train_jax/main.py                                   # this config, default variant
    python train_jax/main.py --config train_jax/configs/demo.py:quick --data DIR   # seconds

Variants (comma-separated): `quick` shrinks images, model, batch and epochs for tests;
`group` / `group_label` switch on tone-stratified sampling.
"""

from __future__ import annotations

import dataclasses

from train_jax.config import DataConfig, ModelConfig, OptimConfig, TrainConfig, validate


def get_config(variant: str | None = None) -> TrainConfig:
    """The demo config, optionally shrunk (`quick`) or rebalanced (`group`, `group_label`)."""
    config = TrainConfig(
        name="demo",
        model=ModelConfig(name="small_cnn", image_size=96, overrides={"width": 0.5}),
        data=DataConfig(data_dir="data/synthskin-v1", generate_preset="synthskin-v1"),
        optim=OptimConfig(learning_rate=3e-3, weight_decay=1e-4, warmup_steps=30),
        batch_size=32,
        eval_batch_size=128,
        epochs=12,
    )
    for part in [p.strip() for p in (variant or "").split(",") if p.strip()]:
        if part == "quick":
            config = dataclasses.replace(
                config,
                name="demo-quick",
                model=dataclasses.replace(config.model, image_size=32, overrides={"width": 0.25}),
                optim=dataclasses.replace(config.optim, warmup_steps=2),
                batch_size=8,
                eval_batch_size=32,
                epochs=2,
            )
        elif part in ("group", "group_label"):
            config = dataclasses.replace(
                config, data=dataclasses.replace(config.data, balance=part)
            )
        else:
            raise ValueError(
                f"unknown demo variant {part!r}; choose from ['group', 'group_label', 'quick']"
            )
    return validate(config)
