"""MkDocs hook: the architecture page's module table, generated from each module's docstring (never hand-kept)."""
from __future__ import annotations

import ast
from pathlib import Path

MARKER = "<!-- modules -->"
ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ["fitboard", "app/core", "app/store", "app/services", "app/web", "app/api", "app/pages", "worker",
           "worker/cli", "migrations"]


def first_line(path: Path) -> str:
    """The first line of a module's docstring, or '' when it has none."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    return doc.strip().splitlines()[0] if doc else ""


def module_table() -> str:
    """One table per folder: each module and what its docstring says it holds."""
    parts = []
    for folder in FOLDERS:
        base = ROOT / folder
        if not base.is_dir():
            continue
        rows = [f"| `{p.name}` | {first_line(p).replace('|', '/')} |"
                for p in sorted(base.glob("*.py")) if not p.is_symlink()]
        if rows:
            parts.append(f"**`{folder}/`**\n\n| module | holds |\n|---|---|\n" + "\n".join(rows) + "\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 (MkDocs' hook signature)
    """Replace the marker on the page that carries it."""
    return markdown.replace(MARKER, module_table()) if MARKER in markdown else markdown
