"""Compiled CPU kernels for training, loaded as XLA FFI custom calls (built on first use).

One kernel so far (`depthwise_cpu.cc`): the **kernel gradient of a depthwise convolution**, the
largest cost of an EfficientNet training step on XLA:CPU (docs/performance.md). It returns the
same partial sums as the pure-JAX path (`depthwise_kernel_grad_rows_xla`, here beside it)
**bit for bit** (same summation order, one fused multiply-add per term, like XLA:CPU's own loop),
2-7x faster per layer on the shared 2-core machine; so trained weights and every number measured
with them do not depend on whether it is used.

The source ships with the package and is compiled the first time a CPU training asks for it (about
4 s, with the C++ compiler in ``$CXX``, else ``c++``/``g++``, against the FFI headers of the
installed jaxlib), into a cache folder keyed by the source, compiler, jaxlib version and CPU
model (``$FSA_KERNEL_CACHE``, default ``~/.cache/face-skin-analysis/kernels``). Before first use,
`available()` checks on small random inputs that the kernel reproduces XLA's result exactly on
this machine (for example, a CPU without FMA would not); if it does not, or no compiler is found,
or the build fails, a warning says so once and the pure-JAX implementation is used.

**On by default** for single-device CPU training (with several devices the pure-JAX path, which
XLA partitions over the batch, is used); ``FSA_CPU_KERNELS=0`` turns it off.
``FSA_KERNEL_THREADS`` sets the kernel's threads (default: the usable cores, at most 8; the result
does not depend on it). The exported ONNX graph never contains it: it is only used for gradients.
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
from jax import lax

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
    """False when the user turned the compiled kernels off (``FSA_CPU_KERNELS=0``)."""
    return os.environ.get("FSA_CPU_KERNELS", "1") != "0"


# (batch, height, width, channels, k, stride): both strides, both kernel sizes, several terms
# per sum along batch and width, widths that are not a multiple of the vector length.
SELF_CHECK_SHAPES = ((3, 9, 7, 5, 3, 1), (4, 12, 11, 19, 5, 2), (2, 6, 17, 40, 3, 2))


def _self_check() -> None:
    """Raise `KernelBuildError` unless the kernel reproduces XLA's partial sums bit for bit."""
    rng = np.random.default_rng(0)
    with jax.ensure_compile_time_eval():
        for b, h, w, c, k, s in SELF_CHECK_SHAPES:
            p = k // 2
            x = rng.standard_normal((b, h, w, c)).astype(np.float32)
            xp = jnp.asarray(np.pad(x, ((0, 0), (p, p), (p, p), (0, 0))))
            g = jnp.asarray(
                rng.standard_normal((b, (h - 1) // s + 1, (w - 1) // s + 1, c)), jnp.float32
            )
            want = jax.jit(depthwise_kernel_grad_rows_xla, static_argnums=(2, 3))(xp, g, s, k)
            got = jax.jit(depthwise_kernel_grad_rows, static_argnums=(2, 3))(xp, g, s, k)
            if not np.array_equal(np.asarray(got), np.asarray(want)):
                raise KernelBuildError(
                    "the compiled kernel does not reproduce XLA's rounding on this machine "
                    f"(shape {(b, h, w, c)}, k={k}, stride={s})"
                )


def available() -> bool:
    """True when the compiled CPU kernels are built, registered and bit-exact (checked once)."""
    with _lock:
        if _state["ready"] is None:
            try:
                _load()
                _self_check()
                _state["ready"] = True
            except (KernelBuildError, OSError, AttributeError) as err:
                _state["ready"], _state["error"] = False, str(err)
                warnings.warn(
                    f"compiled CPU kernels unavailable, using the slower pure-JAX gradient: {err}",
                    stacklevel=2,
                )
    return bool(_state["ready"])


def active() -> bool:
    """True when training gradients use the compiled kernels: CPU backend, one device, enabled
    and `available()`."""
    # One device only: the custom call has no partitioning rule, so XLA would gather a
    # batch-sharded input onto every device, where the pure-JAX reduce is split over the batch.
    return jax.default_backend() == "cpu" and jax.device_count() == 1 and enabled() and available()


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


def depthwise_kernel_grad_rows(xp: jax.Array, g: jax.Array, stride: int, k: int) -> jax.Array:
    """``[k*k, Ho, C]`` per-tap, per-output-row sums of a depthwise conv's kernel gradient.

    ``xp`` is the conv's zero-padded input ``[B, H + 2p, W + 2p, C]``, ``g`` the gradient of its
    output ``[B, Ho, Wo, C]``; float32. The same array, bit for bit, as
    `depthwise_kernel_grad_rows_xla`. Call only after `available()` returned True.
    """
    ho, c = g.shape[1], g.shape[-1]
    # Under vmap (Grad-CAM pulls back one cotangent per class) the kernel runs once per element.
    out = jax.ffi.ffi_call(
        TARGET, jax.ShapeDtypeStruct((k * k * ho * c,), jnp.float32), vmap_method="sequential"
    )(
        xp.astype(jnp.float32),
        g.astype(jnp.float32),
        stride=np.int64(stride),
        k=np.int64(k),
        threads=np.int64(_threads()),
    )
    return out.reshape(k * k, ho, c)


def depthwise_kernel_grad_rows_xla(xp: jax.Array, g: jax.Array, stride: int, k: int) -> jax.Array:
    """``[k*k, Ho, C]`` per-tap, per-output-row sums over batch and width of input x gradient
    (pure JAX, any backend and dtype; the reference for the compiled kernel)."""
    # One variadic reduce over (batch, width) computes all k*k partial sums in a single pass;
    # the caller (`train_jax.models.layers`) then sums over rows. Separate per-tap reductions
    # made XLA:CPU materialise every slice, and reducing over (batch, height, width) at once
    # vectorised badly: both were 2-6x slower on B0's layers. The compiled kernel
    # (`depthwise_kernel_grad_rows`) returns the same array bit for bit.
    b, _, _, c = xp.shape
    ho, wo = g.shape[1], g.shape[2]
    products = tuple(
        (
            lax.slice(
                xp,
                (0, i, j, 0),
                (b, i + stride * (ho - 1) + 1, j + stride * (wo - 1) + 1, c),
                (1, stride, stride, 1),
            )
            * g
        ).astype(jnp.float32)
        for i in range(k)
        for j in range(k)
    )
    zeros = tuple(jnp.zeros((), jnp.float32) for _ in products)
    row_sums = lax.reduce(
        products,
        zeros,
        lambda acc, new: tuple(u + v for u, v in zip(acc, new, strict=True)),
        (0, 2),
    )
    return jnp.stack(row_sums)
