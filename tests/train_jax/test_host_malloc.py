"""`train_jax.host_malloc`: freed host memory stays mapped (no page faults on reuse)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Allocates (libc malloc), touches and frees a 64 MiB buffer (above glibc's largest mmap
# threshold) five times, then prints the minor page faults of the last four rounds.
PROBE = """
import ctypes, ctypes.util, json, resource
from train_jax import host_malloc
applied = host_malloc.keep_freed_memory()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 64 * 2**20
faults = []
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    ptr = libc.malloc(size)
    ctypes.memset(ptr, 1, size)
    libc.free(ptr)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults[1:]}))
"""


def _probe(tuning: str) -> dict:
    env = {**os.environ, "FSA_MALLOC_TUNING": tuning, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning: Linux")
def test_keep_freed_memory_stops_page_faults_on_reuse():
    untuned, tuned = _probe("0"), _probe("1")
    assert untuned["applied"] is False  # the switch turns it off
    assert tuned["applied"] is True
    # 64 MiB = 16,384 pages of 4 KiB: glibc maps and unmaps it every round by default...
    assert min(untuned["faults"]) > 10_000
    # ...and reuses the same pages once tuned.
    assert max(tuned["faults"]) < 1_000
