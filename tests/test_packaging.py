"""The package as a user gets it: ``pip install .``, not the editable install tests run on.

The wheel is built offline (no index, no build isolation: setuptools comes with the
``test`` extra) from a copy of the checkout -- a build in the checkout itself would leave
``build/`` and ``*.egg-info`` behind, and a stale ``build/lib`` can put deleted files into
a later wheel.  Then it is installed into an empty venv and run from outside the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _package_files() -> set[str]:
    """Every file of the package in the checkout, as paths relative to its root."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "minisocket").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("checkout")
    for path in ROOT.iterdir():  # pyproject.toml, README.md and the other top-level files
        if path.is_file():
            shutil.copy(path, source / path.name)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "minisocket", source / "minisocket", ignore=ignore)
    out = tmp_path_factory.mktemp("dist")
    _run(
        sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
        "--no-build-isolation", "--wheel-dir", out, source, cwd=source,
    )  # fmt: skip
    (built,) = out.glob("minisocket-*.whl")
    return built


def test_the_wheel_holds_every_file_of_the_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        packaged = {name for name in archive.namelist() if name.startswith("minisocket/")}
    tree = _package_files()
    assert "minisocket/bench/__main__.py" in tree and "minisocket/lab/widgets.py" in tree
    assert packaged - tree == set(), "the wheel has files the checkout does not"
    assert tree - packaged == set(), "the wheel leaves out files of the package"


def test_the_wheel_metadata_matches_pyproject(wheel: Path) -> None:
    project = PYPROJECT["project"]
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(name).decode())
    assert metadata["Requires-Python"] == project["requires-python"]
    assert set(metadata.get_all("Classifier")) == set(project["classifiers"])
    assert set(metadata.get_all("Provides-Extra")) == set(project["optional-dependencies"])
    requirements = [Requirement(r) for r in metadata.get_all("Requires-Dist")]
    assert all(r.marker is not None and "extra" in str(r.marker) for r in requirements), (
        "minisocket itself must need nothing beyond the standard library"
    )


def test_pip_install_runs_the_benchmarks_from_outside_the_checkout(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    _run(
        sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-index",
        "--no-deps", wheel, cwd=tmp_path,
    )  # fmt: skip
    away = tmp_path / "elsewhere"  # no minisocket/ folder to import by accident
    away.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    where = _run(
        python, "-c", "import minisocket, minisocket.bench, minisocket.lab; "
        "print(minisocket.__file__)", cwd=away, env=env,
    )  # fmt: skip
    assert Path(where.strip()).is_relative_to(venv), where

    usage = _run(python, "-m", "minisocket.bench", "--help", cwd=away, env=env)
    assert usage.startswith("usage: python -m minisocket.bench")
    assert "--servers" in usage

    # The venv has minisocket alone: a benchmark run says which extra it needs.
    done = subprocess.run(
        [python, "-m", "minisocket.bench", "--quick", "--servers", "select"],
        cwd=away, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "pip install 'minisocket[bench]'" in done.stderr, done.stderr


def test_the_notebook_environment_has_what_the_test_sessions_have() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    notebooks = set(extras["notebooks"])
    assert set(extras["bench"]) <= notebooks
    assert set(extras["widgets"]) <= notebooks
