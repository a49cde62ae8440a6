"""Reports as a list of blocks, rendered as Markdown (the pull-request comment, ``compare``'s default) or
as one self-contained HTML page (figures embedded)."""

from __future__ import annotations

import base64
import html
import os
import re
from pathlib import Path


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    escape = lambda cell: cell.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(escape, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(escape, row)) + " |" for row in rows]
    return "\n".join(lines)


def html_table(header: list[str], rows: list[list[str]]) -> str:
    cells = lambda tag, row: "".join(f"<{tag}>{html.escape(cell)}</{tag}>" for cell in row)  # noqa: E731
    body = "\n".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table>\n<tr>{cells('th', header)}</tr>\n{body}\n</table>"


def image_link(alt: str, image: Path, document: Path) -> str:
    """A Markdown image whose path is relative to the document (what renderers and CML resolve)."""
    return f"![{alt}]({Path(os.path.relpath(image.resolve(), document.resolve().parent)).as_posix()})"


# A report is a list of blocks, written as Markdown or HTML:
# ("heading", level, text) | ("text", text) | ("table", header, rows) | ("details", summary, blocks)
# | ("image", alt, path). Text may hold `code`.
Block = tuple


def to_markdown(blocks: list[Block], document: Path) -> str:
    parts = []
    for block in blocks:
        match block:
            case ("heading", level, text):
                parts.append(f"{'#' * level} {text}")
            case ("text", text):
                parts.append(text)
            case ("table", header, rows):
                parts.append(markdown_table(header, rows))
            case ("details", summary, inner):
                parts.append(f"<details><summary>{html.escape(summary.replace('`', ''))}</summary>\n\n"
                             f"{to_markdown(inner, document).strip()}\n\n</details>")
            case ("image", alt, path):
                parts.append(image_link(alt, path, document))
    return "\n\n".join(parts) + "\n"


def _html_text(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def to_html(blocks: list[Block]) -> str:
    parts = []
    for block in blocks:
        match block:
            case ("heading", level, text):
                parts.append(f"<h{level}>{_html_text(text)}</h{level}>")
            case ("text", text):
                parts.append(f"<p>{_html_text(text)}</p>")
            case ("table", header, rows):
                parts.append(html_table(header, rows))
            case ("details", summary, inner):
                parts.append(f"<details><summary>{_html_text(summary)}</summary>\n{to_html(inner)}</details>")
            case ("image", alt, path):
                embedded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
                parts.append(f"<img alt=\"{html.escape(alt)}\" src=\"data:image/png;base64,{embedded}\">")
    return "\n".join(parts) + "\n"


def html_page(title: str, blocks: list[Block]) -> str:
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>\n"
        "<style>body{font-family:sans-serif} td,th{border:1px solid #ccc;padding:2px 6px}"
        " table{border-collapse:collapse} summary{cursor:pointer;margin:0.5em 0}</style></head>\n<body>\n"
        f"{to_html(blocks)}</body></html>\n"
    )
