"""Import a script of benchmarks/ (not a package) as a module, and the helpers their tests share."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_benchmark(name: str):
    """The module benchmarks/<name>.py (imported once, registered under `name`)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def linked_dataset(
    root: Path, rows: Iterable[tuple[Path, str]], columns: Mapping[str, Sequence] | None = None
) -> Path:
    """A canonical-dataset folder at `root` (metadata.csv with image, split and the extra
    `columns`, one value per row) whose images are symlinks to the (photo, split) rows' photos:
    no face is copied."""
    (root / "images").mkdir(parents=True)
    columns = dict(columns or {})
    lines = [",".join(["image", "split", *columns])]
    for k, (photo, split) in enumerate(rows):
        (root / "images" / photo.name).symlink_to(photo)
        extra = ["" if v[k] is None else str(v[k]) for v in columns.values()]
        lines.append(",".join([f"images/{photo.name}", split, *extra]))
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def run_main(main: Callable[[list[str]], int], argv: list[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of a benchmark's `main(argv)`."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()
