"""The server's own Python environment: numpy<2 for the python-backend stubs.

JAX needs numpy>=2, while the stubs of the `nvidia-pytriton` wheel silently return empty tensors
under numpy 2 (notes/triton-local.md), so the local tritonserver runs from a separate venv that
holds only what the python models import. Our JAX-free packages (core, preprocessing, client)
reach it through a `.pth` file that points at the repository root, so edits are picked up
without reinstalling.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV_VAR = "FSA_TRITON_ENV"
DEFAULT_ENV_DIR = REPO_ROOT / ".venv-triton"
REQUIREMENTS: tuple[str, ...] = (
    "nvidia-pytriton==0.7.0",
    "numpy>=1.26,<2",
    "onnxruntime>=1.20,<2",
    "opencv-python-headless>=4.11,<4.12",
)
_READY_MARKER = ".fsa-triton-ready"


@dataclass(frozen=True)
class TritonEnv:
    """Paths inside a ready server environment."""

    root: Path
    python: Path
    site_packages: Path
    tritonserver: Path
    backends: Path
    libdir: str

    def process_env(self) -> dict[str, str]:
        """Environment variables for tritonserver: venv bin first (the stub ignores PYTHONPATH)."""
        env = dict(os.environ)
        env["PATH"] = f"{self.root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (self.libdir, env.get("LD_LIBRARY_PATH", "")) if p
        )
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
        return env


def env_dir() -> Path:
    """Where the server environment lives: $FSA_TRITON_ENV or `.venv-triton/` in the repo root."""
    return Path(os.environ.get(ENV_VAR, DEFAULT_ENV_DIR)).expanduser().resolve()


def _fingerprint() -> str:
    spec = "\n".join((*REQUIREMENTS, str(REPO_ROOT), sys.version.split()[0]))
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def _describe(root: Path) -> TritonEnv:
    python = root / "bin" / "python"
    out = subprocess.run(
        [
            str(python),
            "-c",
            "import sysconfig;print(sysconfig.get_paths()['purelib']);"
            "print(sysconfig.get_config_var('LIBDIR') or '')",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    site = Path(out[0])
    return TritonEnv(
        root=root,
        python=python,
        site_packages=site,
        tritonserver=site / "pytriton" / "tritonserver" / "bin" / "tritonserver",
        backends=root / "triton-backends",
        libdir=out[1] if len(out) > 1 else "",
    )


def _link_backend(env: TritonEnv) -> None:
    """Backend directory with the stub inside it (symlinks into the wheel)."""
    wheel = env.site_packages / "pytriton" / "tritonserver"
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    links = {
        "libtriton_python.so": wheel / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": wheel / "backends/python/triton_python_backend_utils.py",
        "triton_python_backend_stub": wheel
        / "python_backend_stubs"
        / ver
        / "triton_python_backend_stub",
    }
    target_dir = env.backends / "python"
    target_dir.mkdir(parents=True, exist_ok=True)
    for name, src in links.items():
        if not src.exists():
            raise RuntimeError(f"{src} is missing from nvidia-pytriton (Python {ver} stub?)")
        dst = target_dir / name
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        dst.symlink_to(src)


def ensure_env(root: Path | None = None, *, quiet: bool = True) -> TritonEnv:
    """Create the server environment on first use, or reuse it when its marker matches."""
    root = (root or env_dir()).resolve()
    marker = root / _READY_MARKER
    if marker.is_file() and marker.read_text().strip() == _fingerprint():
        return _describe(root)
    # Same interpreter version as ours: the stub is picked per Python minor version.
    base_python = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base_python, "-m", "venv", "--clear", str(root)], check=True)
    pip = [str(root / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    subprocess.run([*pip, *(["-q"] if quiet else []), *REQUIREMENTS], check=True)
    env = _describe(root)
    (env.site_packages / "face_skin_analysis_repo.pth").write_text(f"{REPO_ROOT}\n")
    _link_backend(env)
    marker.write_text(_fingerprint() + "\n")
    return env
