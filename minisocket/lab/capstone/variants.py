"""Modules to grade besides your own: the skeleton partly filled in, and broken copies.

``filled(layers, dest)`` writes the skeleton with the parts of the given layers taken
from the reference solution: what a reader holds after writing those layers.
``broken(name, dest)`` writes the reference solution with one deliberate bug (``BROKEN``
says which).  The notebook and the tests grade both.
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass
from pathlib import Path

from .grader import SKELETON, stub_sections

__all__ = ["BROKEN", "REFERENCE", "Bug", "broken", "diff", "filled"]

REFERENCE = SKELETON.with_name("reference.py")


@dataclass(frozen=True)
class Bug:
    """A one-place change to the reference solution."""

    story: str
    old: str
    new: str


BROKEN = {
    "refused-request-left-open": Bug(
        "_handle_request_noblock returns when verify_request refuses a request, without "
        "shutting it down: the connection stays open until the garbage collector finds it",
        "            if self.verify_request(request, client_address):\n"
        "                self.process_request(request, client_address)"
        "  # it shuts the request down\n"
        "                return\n",
        "            if not self.verify_request(request, client_address):\n"
        "                return  # BUG: the refused request is never shut down\n"
        "            self.process_request(request, client_address)\n"
        "            return\n",
    ),
    "shutdown-request-never-closes": Bug(
        "TCPServer.shutdown_request half-closes the connection but never closes the socket",
        "            pass  # the client is already gone\n        self.close_request(request)\n",
        "            pass  # the client is already gone\n"
        "        # BUG: and the socket is never closed (no close_request)\n",
    ),
    "loop-ignores-shutdown": Bug(
        "serve_forever never looks at the shutdown flag, so shutdown() waits for ever",
        "                while not self._shutdown_request:\n",
        "                while True:  # BUG: shutdown() cannot stop this loop\n",
    ),
}


def broken(name: str, dest: str | Path) -> Path:
    """Write the reference solution with bug *name* to *dest*; return its path."""
    bug = BROKEN[name]
    source = REFERENCE.read_text()
    if source.count(bug.old) != 1:
        raise ValueError(f"bug {name!r} no longer matches the reference solution")
    path = Path(dest)
    path.write_text(source.replace(bug.old, bug.new))
    return path


def diff(name: str) -> str:
    """Bug *name* as a diff against the reference solution, with a line of context."""
    bug = BROKEN[name]
    source = REFERENCE.read_text()
    before = source.splitlines()
    after = source.replace(bug.old, bug.new).splitlines()
    lines = difflib.unified_diff(before, after, "reference.py", name, n=1, lineterm="")
    kept = (line.rstrip() for line in lines if not line.startswith(("---", "+++", "@@")))
    return "\n".join(kept).rstrip()


def filled(layers: int, dest: str | Path) -> Path:
    """Write the skeleton with every part of layers 01..*layers* written as the reference
    solution writes it; return its path."""
    skeleton = SKELETON.read_text().splitlines(keepends=True)
    reference = REFERENCE.read_text().splitlines(keepends=True)
    answers = dict(_spans(REFERENCE.read_text()))
    edits = [
        (span, answers[name])
        for name, span in _spans(SKELETON.read_text())
        if int(stub_sections().get(name, "99")[:2]) <= layers
    ]
    for (start, end), (ref_start, ref_end) in sorted(edits, reverse=True):
        skeleton[start:end] = reference[ref_start:ref_end]
    path = Path(dest)
    path.write_text("".join(skeleton))
    return path


def _spans(source: str) -> list[tuple[str, tuple[int, int]]]:
    """``(Class.method, (first line, end line))``, 0-based and end-exclusive, for each
    method in the module."""
    spans = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.end_lineno is not None:
                    spans.append((f"{node.name}.{item.name}", (item.lineno - 1, item.end_lineno)))
    return spans
