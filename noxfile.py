"""The test matrix.  ``make test`` runs every session; ``make test SESSIONS=tests-3.12`` one.

    lint        ruff check, ruff format --check, mypy --strict       (make lint typecheck)
    tests-3.11  every test but the browser test, on that Python, in a venv of its own
    tests-3.12  (.nox/tests-3-12) holding the test, bench and widgets extras, not
    tests-3.13  JupyterLab: the unit tests, CPython's own test_socketserver and its
                http.server, xmlrpc and wsgiref suites run against minisocket, the
                wheel, the CI workflow
    notebooks   nbval over every notebook (strict), then the JupyterLab browser test
                (make nbval browser, in .venv: the notebook stack is installed once)

An interpreter is looked for on PATH (``python3.12``), then among pyenv's versions
(``$PYENV_ROOT/versions/3.12.*``).  A missing one skips its session, saying so in one
line; under CI (``CI`` set, as GitHub Actions and .ci/run have it) it fails the session.
Session venvs are reused; their extras are installed again only when pyproject.toml
changes.  The checkout is installed editable, so each session tests the code as it is.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
PYTHONS = ("3.11", "3.12", "3.13")
# Needs JupyterLab and Chromium: it runs in the notebooks session, after nbval.
BROWSER_TEST = "tests/test_browser.py"
TEST_EXTRAS = ".[test,bench,widgets]"

nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"
nox.options.download_python = "never"  # use the machine's interpreters, never fetch one
nox.options.error_on_external_run = True


def find_python(version: str) -> str | None:
    """The path of a working Python *version* ("3.12") on PATH or in pyenv, or None."""
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    releases = [
        path
        for path in pyenv.glob(f"{version}.*/bin/python{version}")
        if re.fullmatch(rf"{re.escape(version)}\.\d+", path.parent.parent.name)
    ]
    releases.sort(key=lambda path: int(path.parent.parent.name.split(".")[2]), reverse=True)
    # On PATH first: a pyenv shim for a version pyenv has not activated fails, and is
    # skipped for the interpreter behind it.
    report = "import sys; print('%d.%d' % sys.version_info[:2], sys.executable)"
    for candidate in [shutil.which(f"python{version}"), *map(str, releases)]:
        if candidate is None:
            continue
        try:
            probe = subprocess.run(
                [candidate, "-c", report], capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        found = probe.stdout.split(maxsplit=1)
        if probe.returncode == 0 and len(found) == 2 and found[0] == version:
            return found[1].strip()  # the interpreter itself, not a shim in front of it
    return None


def install(session: nox.Session, *args: str) -> None:
    """``pip install -e`` the checkout with *args*, unless done since pyproject.toml changed."""
    stamp = Path(session.virtualenv.location) / ".minisocket-installed"
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + repr(args).encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == key:
        session.log(f"{' '.join(args)} already installed (pyproject.toml unchanged)")
        return
    session.install("--quiet", "-e", *args)
    stamp.write_text(key)


def tests_session(version: str) -> None:
    python = find_python(version)

    @nox.session(name=f"tests-{version}", python=python or False)
    def tests(session: nox.Session) -> None:
        """Every test but the browser test, on one Python: unit, conformance, wheel, CI."""
        if python is None:
            missing = f"no Python {version}: not on PATH (python{version}), not in pyenv"
            if os.environ.get("CI"):
                session.error(missing)
            session.skip(missing)
        install(session, TEST_EXTRAS)
        session.run("python", "--version")
        session.run(
            "python", "-m", "pytest", "-p", "no:nbval", "tests",
            f"--ignore={BROWSER_TEST}", *session.posargs,
        )  # fmt: skip


for _version in PYTHONS:
    tests_session(_version)


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, mypy --strict minisocket (in .venv)."""
    session.run("make", "--no-print-directory", "lint", "typecheck", external=True)


@nox.session(python=False)
def notebooks(session: nox.Session) -> None:
    """nbval over every notebook, then the JupyterLab browser test (in .venv)."""
    if not (shutil.which("chromium") or os.path.exists("/usr/bin/chromium")):
        session.log(f"no chromium: {BROWSER_TEST} will be skipped (apt-get install chromium)")
    session.run("make", "--no-print-directory", "nbval", "browser", external=True)
