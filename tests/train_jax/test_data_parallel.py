"""Two forced CPU devices follow the same loss trajectory as one device (jit over a Mesh).

The quick demo config trains with the lesion-localisation loss, so its term is checked too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter: XLA_FLAGS must be set before jax is imported.
WORKER = r"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from train_jax import checkpoints as K, config as C, train as T
from train_jax.configs.demo import get_config

config = C.override(get_config("quick"), loss=sys.argv[1])
assert config.loc_weight > 0
mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
model = K.build_model(config)
model.train()
graphdef, st = K.split_model(model)
tx, schedule = T.make_optimizer(config, total_steps=20)
state = {"params": st["params"], "rest": st["rest"], "opt": tx.init(st["params"]),
         "dro_q": jnp.full((3,), 1 / 3), "ema": None, "step": jnp.zeros((), jnp.int32)}
state = jax.device_put(state, repl)
step = T.make_train_step(graphdef, tx, schedule, config, np.array([0.5, 1.0, 2.0]), repl, data)
rng = np.random.default_rng(0)
b, s = config.batch_size, config.model.image_size
out = []
for _ in range(5):
    mask = (rng.random((b, 3)) > 0.2).astype(np.float32)
    batch = {"image": rng.integers(0, 256, (b, s, s, 3), dtype=np.uint8),
             "labels": (rng.random((b, 3)) < 0.4).astype(np.float32) * mask,
             "label_mask": mask, "group": rng.integers(-1, 3, b).astype(np.int32),
             "weight": np.ones(b, np.float32)}
    # Lesion masks for the demo's localisation loss: one random square per image and condition.
    masks = np.zeros((b, s, s, 3), np.uint8)
    for i in range(b):
        for c in range(3):
            y, x = rng.integers(0, s - 8, 2)
            masks[i, y : y + 8, x : x + 8, c] = 255
    batch["mask"] = masks
    state, metrics = step(state, T._global_batch(batch, data))
    out.append([float(metrics["loss"]), float(metrics["grad_norm"]), float(metrics["loc"])])
print(json.dumps({"devices": jax.device_count(), "trajectory": out}))
"""


def _start(devices: int, loss: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, loss],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_two_devices_match_one_device() -> None:
    # GroupDRO: its group weights and the BatchNorm statistics both need the global batch.
    one, two = _start(1, "groupdro"), _start(2, "groupdro")
    a, b = _result(one), _result(two)
    assert (a["devices"], b["devices"]) == (1, 2)
    ta, tb = np.array(a["trajectory"]), np.array(b["trajectory"])
    assert len(ta) == 5 and not np.allclose(ta[0, 0], ta[-1, 0])  # the loss really moves
    np.testing.assert_allclose(ta, tb, atol=1e-4, rtol=0)
