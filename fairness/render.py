"""A tiny document model rendered to Markdown and to self-contained HTML (images embedded).

A document is a list of blocks: ``("h1"|"h2"|"h3", text)``, ``("p", text)``,
``("list", [items])``, ``("table", headers, rows)`` and ``("img", alt, path)``.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

__all__ = ["fmt_estimate", "to_html", "to_markdown"]

INSUFFICIENT_SHORT = "insufficient evidence"


def fmt_estimate(est: dict | None, digits: int = 3) -> str:
    """'0.812 [0.790, 0.833]' for an estimate dict, or its status when it has no value."""
    if not est or est.get("value") is None:
        return (est or {}).get("status", "n/a")
    text = f"{est['value']:.{digits}f}"
    if est.get("ci_low") is not None and est.get("ci_high") is not None:
        text += f" [{est['ci_low']:.{digits}f}, {est['ci_high']:.{digits}f}]"
    return text


def _md_cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[tuple], *, base: Path | None = None) -> str:
    """Render blocks to GitHub Markdown; image paths are written relative to `base`."""
    lines: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + block[1], ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "list":
            lines += [f"- {item}" for item in block[1]] + [""]
        elif kind == "table":
            headers, rows = block[1], block[2]
            lines.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
            lines.append("|" + "---|" * len(headers))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            lines.append("")
        elif kind == "img":
            path = Path(block[2])
            rel = path.name if base is None else path.relative_to(base).as_posix()
            lines += [f"![{block[1]}]({rel})", ""]
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    return "\n".join(lines).rstrip() + "\n"


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;
padding:3px 8px;font-size:13px;text-align:left}th{background:#f3f3f3}img{max-width:100%}
.disclaimer{background:#fff4d6;border:1px solid #e0c068;padding:0.6em 1em}"""


def to_html(blocks: list[tuple], *, title: str) -> str:
    """Render blocks to one self-contained HTML page (PNG images inlined as base64)."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
    ]
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{html.escape(block[1])}</{kind}>")
        elif kind == "p":
            cls = ' class="disclaimer"' if "not a diagnosis" in block[1] else ""
            out.append(f"<p{cls}>{html.escape(block[1])}</p>")
        elif kind == "list":
            items = "".join(f"<li>{html.escape(str(i))}</li>" for i in block[1])
            out.append(f"<ul>{items}</ul>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in block[1])
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                for row in block[2]
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(Path(block[2]).read_bytes()).decode("ascii")
            out.append(
                f'<p><img alt="{html.escape(block[1])}" src="data:image/png;base64,{data}"></p>'
            )
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
