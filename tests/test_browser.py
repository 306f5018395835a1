"""The panels in a real JupyterLab, driven by headless Chromium through Playwright.

For each notebook with a panel: open it in JupyterLab, Run All, then click Start, type
a line, click Send, see the reply and the loop's events in the log, click Stop -- and
fail if any widget failed to render.  A screenshot of each panel is saved under
``test-artifacts/``.

Needs Debian's ``chromium`` (``apt-get install chromium``; ``.ci/run`` installs it) and the
``playwright`` package from the ``test`` extra.  Playwright's own browser download is
never used: Chromium is launched by path.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PANEL_NOTEBOOKS = ["02-select-loop.ipynb", "03-request-pipeline.ipynb", "05-mixins.ipynb"]

if not os.path.exists(CHROMIUM):
    pytest.skip(
        "no Chromium: the JupyterLab browser test needs Debian's chromium "
        "(run `apt-get install chromium`, as .ci/run does)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lab:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        home = Path(tempfile.mkdtemp(prefix="jupyter-home-"))
        # Render every cell (no windowing), so the panels are in the page to click.
        settings = home / "settings" / "@jupyterlab" / "notebook-extension"
        settings.mkdir(parents=True)
        (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
        news = home / "settings" / "@jupyterlab" / "apputils-extension"
        news.mkdir(parents=True)  # and no "would you like news?" toast over the screenshots
        (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(home / "config"),
            "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
            "IPYTHONDIR": str(home / "ipython"),
        }
        args = [
            sys.executable, "-m", "jupyterlab", "--no-browser",
            f"--port={self.port}", "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp, to ask the model
        ]  # fmt: skip
        if os.geteuid() == 0:
            args.append("--allow-root")
        self.home = home
        self.log = open(home / "lab.log", "w")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}?token={self.token}"

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.home / "lab.log").read_text())
            try:
                with urllib.request.urlopen(self.url("/api/status"), timeout=2) as response:
                    json.load(response)
                    return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError("JupyterLab did not answer /api/status")

    def stop(self) -> None:
        try:
            request = urllib.request.Request(self.url("/api/shutdown"), method="POST")
            urllib.request.urlopen(request, timeout=5).close()
            self.process.wait(20)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            self.log.close()
            shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("notebooks")
    for name in PANEL_NOTEBOOKS:
        shutil.copy(ROOT / "notebooks" / name, root / name)
    running = Lab(root)
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=CHROMIUM_FLAGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.parametrize("notebook", PANEL_NOTEBOOKS)
def test_panel_in_jupyterlab(lab: Lab, browser: Any, notebook: str) -> None:
    page = browser.new_page()
    try:
        page.goto(lab.url(f"/lab/tree/{notebook}") + "&reset")  # a fresh workspace: one tab
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
        page.wait_for_function(KERNEL_IDLE, timeout=90_000, polling=250)
        # Start from a clean slate (the saved notebook already has execution counts),
        # then Run All from the Run menu, as a reader would.
        page.evaluate("window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
        page.wait_for_function(NOTHING_RAN, timeout=10_000)
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        page.wait_for_function(EVERY_CELL_RAN, timeout=180_000, polling=500)
        assert page.locator("text=Error displaying widget").count() == 0

        panel = page.locator(".jp-NotebookPanel:visible .minisocket-panel").first
        panel.scroll_into_view_if_needed()
        panel.locator(".minisocket-start").click()
        page.wait_for_function(
            "el => el.textContent.startsWith('running')",
            arg=panel.locator(".minisocket-status").element_handle(),
            timeout=20_000,
        )
        line = "through the browser"
        panel.locator(".minisocket-input input").fill(line)
        panel.locator(".minisocket-send").click()
        handler = panel.locator(".minisocket-handler select").input_value()
        expected = line.upper() if handler == "upper" else line
        page.wait_for_function(
            "([el, text]) => el.textContent.endsWith(text)",
            arg=[panel.locator(".minisocket-reply").element_handle(), expected],
            timeout=20_000,
        )
        log = panel.locator(".minisocket-log")
        page.wait_for_function(
            "el => el.textContent.includes('get_request')", arg=log.element_handle(), timeout=20_000
        )
        ARTIFACTS.mkdir(exist_ok=True)
        panel.screenshot(path=str(ARTIFACTS / f"{Path(notebook).stem}-panel.png"))
        panel.locator(".minisocket-stop").click()
        page.wait_for_function(
            "el => el.textContent === 'stopped'",
            arg=panel.locator(".minisocket-status").element_handle(),
            timeout=20_000,
        )
        assert page.locator("text=Error displaying widget").count() == 0
    finally:
        page.close()


# The open notebook's kernel is connected and idle.
KERNEL_IDLE = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const kernel = panel && panel.sessionContext && panel.sessionContext.session
        && panel.sessionContext.session.kernel;
    return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""

# No code cell of the open notebook has an execution count.
NOTHING_RAN = """() => window.jupyterapp.shell.currentWidget.content.widgets
    .filter(cell => cell.model.type === 'code')
    .every(cell => cell.model.executionCount === null)"""

# Every code cell of the open notebook has an execution count: nothing pending or unrun.
EVERY_CELL_RAN = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    if (!panel || !panel.content || !panel.content.widgets) return false;
    const code = panel.content.widgets.filter(cell => cell.model.type === 'code');
    return code.length > 0 && code.every(cell => cell.model.executionCount !== null
        && cell.promptNode && !cell.promptNode.textContent.includes('*'));
}"""
