"""Training with JAX/Flax NNX: configs, models, input pipeline, trainer, checkpoints, export.

Needs the training stack: ``pip install -e ".[train]"`` (the analysis install, ``pip install
-e .``, runs client/analyze.py only).
"""

import importlib.util

# Only looked up, not imported: train_jax.host_malloc must run before JAX starts its threads.
if importlib.util.find_spec("jax") is None:  # the analysis install: say what to install
    raise ImportError(
        'train_jax needs the training stack (JAX, Flax, TFDS, MLflow): pip install -e ".[train]"'
    )
