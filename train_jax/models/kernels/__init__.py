"""Compiled CPU kernels for training, loaded as XLA FFI custom calls (optional, built on first use).

One kernel so far (`depthwise_cpu.cc`): the **kernel gradient of a depthwise convolution**, the
largest cost of an EfficientNet training step on XLA:CPU (docs/performance.md).
The source ships with the package and is compiled the first time a CPU training asks for it (about
4 s, with the C++ compiler in ``$CXX``, else ``c++``/``g++``, against the FFI headers of the
installed jaxlib), into a cache folder keyed by the source, compiler, jaxlib version and CPU
model (``$FSA_KERNEL_CACHE``, default ``~/.cache/face-skin-analysis/kernels``).

**Opt-in** (``FSA_CPU_KERNELS=1``): on the shared 2-core machine the kernel gradient is 3-11x
faster than XLA's per layer, and with ``train_jax.host_malloc`` in place a whole EfficientNet-B0
training step went from 1.16-1.24x timm's throughput to 1.27-1.37x (docs/performance.md); it
changes the float rounding of the gradients, so trained weights (and every number measured with
the demo model) differ slightly from the default path's. If no compiler is found or the build
fails, a warning says so once and the pure-JAX implementation in `train_jax.models.layers` is
used.
``FSA_KERNEL_THREADS`` sets the kernel's threads (default: the usable cores, at most 8). The
exported ONNX graph never contains it: it is only used for gradients.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

SOURCE = Path(__file__).with_name("depthwise_cpu.cc")
TARGET = "fsa_depthwise_kernel_grad"  # custom-call target name
SYMBOL = "FsaDepthwiseKernelGrad"  # its handler in the compiled library
CXX_FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-w")

_lock = threading.Lock()
_state: dict[str, object] = {"ready": None, "error": None}


class KernelBuildError(RuntimeError):
    """The compiled kernels could not be built or loaded (the message says why)."""


def cache_dir() -> Path:
    """Where compiled kernels are kept (``$FSA_KERNEL_CACHE`` or the user's cache folder)."""
    if os.environ.get("FSA_KERNEL_CACHE"):
        return Path(os.environ["FSA_KERNEL_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "face-skin-analysis" / "kernels"


def _compiler() -> str:
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not cxx:
        raise KernelBuildError("no C++ compiler found (set CXX or install g++)")
    return cxx


def _cpu_model() -> str:
    """The CPU's model name and feature flags (what ``-march=native`` compiles for)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [next((ln for ln in lines if ln.startswith(key)), "") for key in ("model name", "flags")]
    return "\n".join(keep) if any(keep) else platform.machine()


def library_path(cxx: str | None = None) -> Path:
    """Path of the compiled kernel library for this source, compiler, jaxlib and CPU."""
    cxx = cxx or _compiler()
    try:
        version = subprocess.run(
            [cxx, "--version"], capture_output=True, text=True, check=False
        ).stdout.splitlines()[:1]
    except OSError as err:
        raise KernelBuildError(f"cannot run {cxx}: {err}") from err
    key = hashlib.sha256()
    for part in (
        SOURCE.read_bytes(),
        " ".join(CXX_FLAGS).encode(),
        str(version).encode(),
        jax.__version__.encode(),
        _cpu_model().encode(),
    ):
        key.update(part)
    return cache_dir() / f"libfsa_kernels-{key.hexdigest()[:16]}.so"


def build() -> Path:
    """Compile the kernels if this machine has no cached build yet; returns the library path."""
    cxx = _compiler()
    path = library_path(cxx)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    include = jax.ffi.include_dir()
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        out = Path(tmp) / path.name
        cmd = [cxx, *CXX_FLAGS, f"-I{include}", str(SOURCE), "-o", str(out), "-lpthread"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise KernelBuildError(
                f"compiling {SOURCE.name} failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}"
            )
        os.replace(out, path)  # atomic: a concurrent build leaves one complete file
    return path


def _load() -> None:
    lib = ctypes.cdll.LoadLibrary(str(build()))
    jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(getattr(lib, SYMBOL)), platform="cpu")


def enabled() -> bool:
    """True when the user asked for the compiled kernels (``FSA_CPU_KERNELS=1``)."""
    return os.environ.get("FSA_CPU_KERNELS", "0") == "1"


def available() -> bool:
    """True when the compiled CPU kernels are built and registered (builds them on first call)."""
    with _lock:
        if _state["ready"] is None:
            try:
                _load()
                _state["ready"] = True
            except (KernelBuildError, OSError, AttributeError) as err:
                _state["ready"], _state["error"] = False, str(err)
                warnings.warn(
                    f"compiled CPU kernels unavailable, using the slower pure-JAX gradient: {err}",
                    stacklevel=2,
                )
    return bool(_state["ready"])


def build_error() -> str | None:
    """Why `available()` returned False (None if it did not, or was not called yet)."""
    return _state["error"]  # type: ignore[return-value]


def _threads() -> int:
    if os.environ.get("FSA_KERNEL_THREADS"):
        return max(1, int(os.environ["FSA_KERNEL_THREADS"]))
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except AttributeError:  # not Linux
        return max(1, min(8, os.cpu_count() or 1))


def depthwise_kernel_grad(x: jax.Array, g: jax.Array, stride: int, k: int) -> jax.Array:
    """``[k, k, 1, C]`` kernel gradient of a depthwise conv (padding k // 2) on the CPU.

    ``x`` is the conv's input ``[B, H, W, C]``, ``g`` the gradient of its output
    ``[B, Ho, Wo, C]``; float32. Call only after `available()` returned True.
    """
    c = x.shape[-1]
    out = jax.ffi.ffi_call(TARGET, jax.ShapeDtypeStruct((k * k * c,), jnp.float32))(
        x.astype(jnp.float32),
        g.astype(jnp.float32),
        stride=np.int64(stride),
        k=np.int64(k),
        threads=np.int64(_threads()),
    )
    return out.reshape(k, k, 1, c)
