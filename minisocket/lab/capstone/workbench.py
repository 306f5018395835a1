"""The reader's copy of the skeleton: make it, show its parts, start over.

``copy_skeleton(path)`` copies the skeleton to *path* unless a file is already there --
a reader's work is never overwritten; ``start_over(path)`` moves the old copy aside
first.  ``outline(path)`` lists the parts to write, layer by layer, ticked once written;
``source(path, name)`` prints one of them as plain text.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

from .grader import SKELETON, stub_sections

__all__ = ["copy_skeleton", "outline", "source", "start_over"]

_HEADER = re.compile(r"^# (\d\d · .+?) -+$")


def copy_skeleton(path: str | Path) -> Path:
    """Copy the skeleton to *path* if nothing is there yet; return *path*."""
    target = Path(path)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SKELETON, target)
    return target


def start_over(path: str | Path) -> Path | None:
    """Move the copy at *path* aside (``NAME.old-N.py``), copy the skeleton afresh, and
    return where the old copy went (``None`` if there was none)."""
    target = Path(path)
    kept = None
    if target.exists():
        n = 1
        while target.with_name(f"{target.stem}.old-{n}{target.suffix}").exists():
            n += 1
        kept = target.rename(target.with_name(f"{target.stem}.old-{n}{target.suffix}"))
    copy_skeleton(target)
    return kept


def outline(path: str | Path = SKELETON) -> str:
    """The parts to write, under their layer's heading: ``[x]`` once written."""
    text = Path(path).read_text()
    titles = {m.group(1)[:2]: m.group(1) for m in map(_HEADER.match, text.splitlines()) if m}
    written = _written(text)
    sections = stub_sections()
    lines, layer = [], ""
    for qualname, section in sections.items():
        if section[:2] != layer:
            layer = section[:2]
            lines.append(titles.get(layer, layer))
        lines.append(f"  [{'x' if written.get(qualname) else ' '}] {qualname:<40}{section}")
    done = sum(bool(written.get(qualname)) for qualname in sections)
    lines.append(f"{done} of {len(sections)} parts written")
    return "\n".join(lines)


def _written(text: str) -> dict[str, bool]:
    """``{Class.method: whether its body is more than raise NotImplementedError}``."""
    written = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    written[f"{node.name}.{item.name}"] = not _is_stub(item)
    return written


def _is_stub(node: ast.FunctionDef) -> bool:
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return (
        len(body) == 1
        and isinstance(body[0], ast.Raise)
        and "NotImplementedError" in ast.unparse(body[0])
    )


def source(path: str | Path, qualname: str) -> str:
    """The source of one method (``"Class.method"``) of the module at *path*."""
    text = Path(path).read_text()
    class_name, method = qualname.split(".")
    for node in ast.parse(text).body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == method:
                    lines = text.splitlines()[item.lineno - 1 : item.end_lineno]
                    return "\n".join(line[4:] for line in lines)
    raise LookupError(f"{qualname} is not in {path}")
