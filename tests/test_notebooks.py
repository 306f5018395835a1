"""The notebooks as committed: executed, linked, and runnable by anyone.

nbval (``make nbval``) re-runs them and compares outputs; these checks make sure there
is something to compare: a notebook saved without outputs would pass nbval untested.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


# The series, in reading order: 00 links every one of them.
SERIES = [
    "00-index",
    "01-socket-setup",
    "02-select-loop",
    "03-request-pipeline",
    "04-handlers",
    "05-mixins",
    "06-pool-and-selector",
    "07-latency-lab",
    "08-capstone",
]


def test_the_series_exists() -> None:
    assert [p.stem for p in NOTEBOOKS] == SERIES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_code_cell_was_executed_and_kept_its_outputs(path: Path) -> None:
    cells = [c for c in load(path)["cells"] if c["cell_type"] == "code"]
    assert cells
    unexecuted = [i for i, c in enumerate(cells) if c["execution_count"] is None]
    assert not unexecuted, f"code cells {unexecuted} were never executed"
    counts = [c["execution_count"] for c in cells]
    assert counts == list(range(1, len(cells) + 1)), "not executed top to bottom in one run"
    assert sum(bool(c["outputs"]) for c in cells) >= len(cells) // 2, "outputs were stripped"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_kernel_is_python3(path: Path) -> None:
    assert load(path)["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_title_and_navigation_at_top_and_bottom(path: Path) -> None:
    cells = load(path)["cells"]
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# ")
    for nav in (cells[1], cells[-1]):
        text = "".join(nav["source"])
        assert nav["cell_type"] == "markdown"
        assert text.startswith("[Contents](00-index.ipynb)") or text.startswith("[Contents]")
        assert "Previous" in text and "Next" in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_links_resolve(path: Path) -> None:
    for cell in load(path)["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for target in LINK.findall("".join(cell["source"])):
            if "://" in target:
                continue
            assert (path.parent / target).exists(), f"{path.name} links to missing {target}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_only_cells_tagged_to_raise_raise(path: Path) -> None:
    """The tag tells nbval and JupyterLab's Run All that an error is expected."""
    for i, cell in enumerate(load(path)["cells"]):
        if cell["cell_type"] != "code":
            continue
        raised = any(o["output_type"] == "error" for o in cell["outputs"])
        tagged = "raises-exception" in cell["metadata"].get("tags", [])
        assert raised == tagged, f"cell {i}: raised={raised} but tagged={tagged}"
        if tagged:
            assert "".join(cell["source"]).startswith("# Expected to fail"), f"cell {i}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_stderr_in_committed_outputs(path: Path) -> None:
    for i, cell in enumerate(load(path)["cells"]):
        for output in cell.get("outputs", []):
            text = output.get("text", "")
            assert output.get("name") != "stderr", f"cell {i} wrote to stderr: {text[:200]}"


# Notebooks added on a branch, which 00-index links when the branch is merged.
AWAITING_INDEX_LINK: set[str] = set()


def test_index_lists_every_notebook() -> None:
    index = "".join("".join(c["source"]) for c in load(NOTEBOOKS[0])["cells"])
    missing = {path.name for path in NOTEBOOKS[1:] if f"]({path.name})" not in index}
    assert not missing - AWAITING_INDEX_LINK, f"00-index does not link {sorted(missing)}"
    linked = AWAITING_INDEX_LINK - missing
    assert not linked, f"00-index links {sorted(linked)} now: take it out of AWAITING_INDEX_LINK"
