"""Install size and time of the analysis install (`pip install -e .`) and of `.[train]`.

    python benchmarks/install_size.py [--extras "" train] [--json]

Each install goes into a fresh virtual environment in a temporary folder (removed afterwards),
created with this Python. Reports the seconds `pip install` took (pip's cache as it is: warm on
a machine that installed before) and the size on disk of the environment (`du`, MiB), minus the
empty environment's own size (pip and setuptools), so "added" is what the install brought.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def disk_mib(path: Path) -> float:
    """Size on disk of a folder in MiB (`du -sk`)."""
    out = subprocess.run(["du", "-sk", str(path)], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[0]) / 1024


def measure(extra: str, root: Path) -> dict:
    """Create a venv under `root`, install the project with `extra`, return size and time."""
    env = root / f"venv-{extra or 'analysis'}"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    empty = disk_mib(env)
    target = f"{REPO_ROOT}[{extra}]" if extra else str(REPO_ROOT)
    start = time.perf_counter()
    subprocess.run(
        [str(env / "bin" / "pip"), "install", "-q", "-e", target],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - start
    total = disk_mib(env)
    return {
        "install": f"pip install -e .[{extra}]" if extra else "pip install -e .",
        "seconds": round(seconds, 1),
        "venv_mib": round(total, 1),
        "added_mib": round(total - empty, 1),
        "added_mb": round((total - empty) * 1.048576, 1),
    }


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/install_size.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--extras", nargs="+", default=["", "train"], help='"" = analysis')
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="fsa-install-") as tmp:
        for extra in args.extras:
            rows.append(measure(extra, Path(tmp)))
            if not args.json:
                row = rows[-1]
                print(
                    f"{row['install']:<28} {row['seconds']:6.1f} s  venv {row['venv_mib']:7.1f} MiB"
                    f"  added {row['added_mib']:7.1f} MiB ({row['added_mb']:.0f} MB)",
                    flush=True,
                )
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
