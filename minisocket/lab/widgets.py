"""ipywidgets panels: start, watch and stop a background server from a notebook.

Import this module only in notebooks (it needs ipywidgets; ``import minisocket`` never
loads it).  A :class:`ServerPanel` holds one server at a time:

    kind      blocking, select, threaded, forking or pool
    handler   echo, upper (the blog's upper-case echo, fixed) or slow (0.2 s per line)
    Start     binds 127.0.0.1, port 0, and serves in a background thread
    Stop      shutdown(), server_close(): every socket, thread and child is released
    Send      one line from a client, and the reply
    Load      N clients at once; a latency summary and a histogram

Threads and widgets, done the safe way (ipywidgets' docs on output from background
threads): server threads never
touch a widget.  The server's tracer and the ``minisocket`` logger append lines to a
bounded deque; one pump thread, alive only while the server runs, rewrites the log
widget at most ten times a second, newest line first.  Buttons run their handlers in the
kernel, so ``Button.click()`` in a cell exercises the same code as a click in the page.

Panels are kept in a registry by name: making a new panel with the same name -- say, by
re-running its cell -- stops the old one first.
"""

from __future__ import annotations

import collections
import io
import ipaddress
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ipywidgets as widgets

from minisocket.bench.kinds import KINDS as BENCH_KINDS
from minisocket.bench.kinds import SETS
from minisocket.evented import ProtocolRequestHandler
from minisocket.handlers import StreamRequestHandler
from minisocket.trace import TraceEvent

__all__ = ["HANDLERS", "KINDS", "ServerPanel", "close_all"]

logger = logging.getLogger("minisocket")

LOG_LINES = 40
SLOW_SECONDS = 0.2
CLIENT_TIMEOUT = 5.0


# -- the handlers, in a blocking and an event-driven flavour ---------------------------


def _reply(kind: str, line: bytes) -> bytes:
    return line.upper() if kind == "upper" else line


class _LineHandler(StreamRequestHandler):
    """Blocking servers: answer each line until the client closes."""

    reply_kind = "echo"
    timeout = 30  # a silent client does not hold a thread (or the loop) forever

    def handle(self) -> None:
        for line in self.rfile:
            if self.reply_kind == "slow":
                time.sleep(SLOW_SECONDS)
            self.wfile.write(_reply(self.reply_kind, line))


class _LineProtocol(ProtocolRequestHandler):
    """The select server: the same protocol as callbacks (a slow line stalls the loop)."""

    reply_kind = "echo"

    def connection_made(self) -> None:
        self._pending = b""

    def data_received(self, data: bytes) -> None:
        *lines, self._pending = (self._pending + data).split(b"\n")
        if len(self._pending) > 65536:  # a line without end: do not buffer it forever
            self.abort()
            return
        for line in lines:
            if self.reply_kind == "slow":
                time.sleep(SLOW_SECONDS)  # on the loop's only thread: everyone waits
            self.send(_reply(self.reply_kind, line + b"\n"))


class _PanelServerMixIn:
    """Quick, bounded cleanup: requests get 0.2 s to finish when the panel stops."""

    close_grace = 0.2
    max_children = 64


def _server_class(kind: str) -> type[Any]:
    base = BENCH_KINDS[kind].base
    assert base is not None, "minisocket's kinds all have a server class"
    return type(base.__name__, (_PanelServerMixIn, base), {})


# minisocket's five serving models, as the bench defines them (minisocket.bench.kinds),
# each with the panel's settings rather than the bench's.
KINDS: dict[str, type[Any]] = {kind: _server_class(kind) for kind in SETS["minisocket"]}
HANDLERS = ("echo", "upper", "slow")


def _handler_class(kind: str, reply_kind: str) -> type[Any]:
    base = _LineProtocol if BENCH_KINDS[kind].evented else _LineHandler
    return type(f"{reply_kind.title()}Handler", (base,), {"reply_kind": reply_kind})


# -- the log: many writers, one reader ------------------------------------------------------


class _LogLines(logging.Handler):
    """A bounded, thread-safe buffer of log lines, fed by the tracer and by logging.

    It also keeps, for each request, which steps the serving thread ran and which the
    thread that handled it ran: the per-request view beside the raw log.
    """

    HEADER = "  time s  thread     step (client, detail)"

    def __init__(self, maxlen: int = LOG_LINES) -> None:
        super().__init__(logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=maxlen)
        self.version = 0  # bumped on every write, so the pump knows when to redraw
        self._started = time.monotonic()
        self._roles: dict[str, str] = {}
        self._loop = ""  # the serving thread's name, once known
        self._serving: dict[str, Any] = {}  # thread: the client it last took a step for
        self.requests: dict[Any, tuple[list[str], list[str]]] = {}  # client: (loop, other)

    def add(self, text: str) -> None:
        self.lines.append(f"{time.monotonic() - self._started:8.3f}  {text}")
        self.version += 1

    def emit(self, record: logging.LogRecord) -> None:
        self.add(f"{record.levelname.lower()}: {record.getMessage()}")

    def trace(self, event: TraceEvent) -> None:
        if event.step == "service_actions":
            return
        if event.step == "serve_forever":
            self._loop = event.thread
        role = "loop" if event.thread == self._loop else self._role(event.thread)
        address = event.client_address
        if isinstance(address, tuple) and len(address) >= 2:
            self._serving[event.thread] = address
        else:  # shutdown_request and close_request: the request this thread is ending
            address = self._serving.get(event.thread) if event.step.endswith("_request") else None
        if address is not None:
            self.requests.setdefault(address, ([], []))[role != "loop"].append(event.step)
        client = f" {address[0]}:{address[1]}" if event.client_address is not None else ""
        detail = f" ({event.detail})" if event.detail else ""
        self.add(f"{role:<10} {event.step}{client}{detail}")

    def _role(self, thread: str) -> str:
        return self._roles.setdefault(thread, f"thread-{len(self._roles) + 1}")

    def text(self) -> str:
        """Newest line first (the widget does not scroll), under the column header."""
        return "\n".join([self.HEADER, *reversed(self.lines)])

    def table(self, last: int = 8) -> str:
        """The per-request view as HTML: one row per request, a column per thread."""
        rows = "".join(
            f"<tr><td>client-{number}</td><td>{' '.join(loop)}</td><td>{' '.join(other)}</td></tr>"
            for number, (loop, other) in list(enumerate(self.requests.values(), 1))[-last:]
        )
        return (
            "<table><tr><th>request</th><th>on the serving thread</th>"
            f"<th>on the request's own thread</th></tr>{rows}</table>"
        )


# -- the panel ------------------------------------------------------------------------------

_PANELS: dict[str, ServerPanel] = {}


def close_all() -> None:
    """Stop every panel's server (for the end of a notebook, or a test)."""
    for panel in list(_PANELS.values()):
        panel.close()


class ServerPanel(widgets.VBox):  # type: ignore[misc]
    """A server you can start, talk to, load and stop, with a live log.

    ``name`` keys the registry (a new panel of the same name replaces the old one).
    ``host`` is 127.0.0.1; any other address needs ``allow_remote=True`` and is reported
    in the status line, because it exposes the server beyond this machine.
    """

    def __init__(
        self,
        name: str = "panel",
        kind: str = "threaded",
        handler: str = "upper",
        host: str = "127.0.0.1",
        allow_remote: bool = False,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        if handler not in HANDLERS:
            raise ValueError(f"handler must be one of {', '.join(HANDLERS)}")
        if not _is_loopback(host) and not allow_remote:
            raise ValueError(
                f"{host!r} is not a loopback address: pass allow_remote=True to listen "
                "beyond this machine"
            )
        previous = _PANELS.pop(name, None)
        if previous is not None:
            previous.close()
        self.name, self.host = name, host
        self.server: Any = None
        self._thread: threading.Thread | None = None
        self._pump: threading.Thread | None = None
        self._pump_stop = threading.Event()
        self._log = _LogLines()

        self.kind = _classed(
            widgets.Dropdown(options=list(KINDS), value=kind, description="server"), "kind"
        )
        self.handler = _classed(
            widgets.Dropdown(options=list(HANDLERS), value=handler, description="handler"),
            "handler",
        )
        self.start_button = _classed(
            widgets.Button(description="Start", button_style="success"), "start"
        )
        self.stop_button = _classed(widgets.Button(description="Stop", disabled=True), "stop")
        self.status = _classed(widgets.HTML(value="stopped"), "status")
        self.line = _classed(widgets.Text(value="hello, minisocket", description="line"), "input")
        self.send_button = _classed(widgets.Button(description="Send", disabled=True), "send")
        self.reply = _classed(widgets.HTML(value=""), "reply")
        self.clients = _classed(
            widgets.BoundedIntText(value=20, min=1, max=200, description="clients"), "clients"
        )
        self.load_button = _classed(widgets.Button(description="Load", disabled=True), "load")
        self.summary = _classed(widgets.HTML(value=""), "summary")
        # Hidden until there is a histogram: an empty Image shows a broken-image icon.
        self.histogram = _classed(
            widgets.Image(format="png", width=420, layout=widgets.Layout(display="none")),
            "histogram",
        )
        self.log_view = _classed(widgets.HTML(value=f"<pre>{_LogLines.HEADER}</pre>"), "log")
        self.request_view = _classed(widgets.HTML(value=""), "requests")

        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.send_button.on_click(lambda _: self.send())
        self.load_button.on_click(lambda _: self.load())
        super().__init__(
            children=[
                widgets.HBox([self.kind, self.handler, self.start_button, self.stop_button]),
                self.status,
                widgets.HBox([self.line, self.send_button, self.reply]),
                widgets.HBox([self.clients, self.load_button, self.summary]),
                self.histogram,
                widgets.HBox([self.log_view, self.request_view]),
            ]
        )
        self.add_class("minisocket-panel")
        if not _is_loopback(host):
            logger.warning("panel %r will listen on %s, beyond this machine", name, host)
        _PANELS[name] = self

    # -- actions (each runs in the kernel: a click, or .click() in a cell) ------------------

    def log_lines(self) -> list[str]:
        """The log as plain text, oldest line first: time, thread, step, client."""
        return list(self._log.lines)

    def requests(self) -> list[tuple[str, str]]:
        """The per-request view as text, one ``(serving thread's steps, the request's own
        thread's steps)`` pair per request, in order of arrival: the same on every run,
        whatever the threads' interleaving (a notebook cell can print it for nbval)."""
        return [(" ".join(loop), " ".join(other)) for loop, other in self._log.requests.values()]

    @property
    def running(self) -> bool:
        return self.server is not None

    def start(self) -> None:
        """Start the chosen server; a second Start while running changes nothing."""
        if self.running:
            self.status.value = f"already running: {self._describe()}"
            return
        self._log = _LogLines()  # a new server, a new log: nothing left from the last one
        self.summary.value = self.reply.value = self.request_view.value = ""
        self.histogram.layout.display = "none"
        server_class = KINDS[self.kind.value]
        self.server = server_class(
            (self.host, 0), _handler_class(self.kind.value, self.handler.value)
        )
        self.server.tracer = self._log.trace
        logger.addHandler(self._log)
        self._log.add(f"started {self._describe()}")
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(0.1,), name=f"{self.name}-loop", daemon=True
        )
        self._thread.start()
        self._pump_stop.clear()
        self._pump = threading.Thread(target=self._pump_log, name=f"{self.name}-log", daemon=True)
        self._pump.start()
        self._set_running(True)
        remote = "" if _is_loopback(self.host) else " <b>(reachable from other machines)</b>"
        self.status.value = f"running: {self._describe()}{remote}"

    def stop(self) -> None:
        """Stop serving and release everything: sockets, threads, child processes."""
        if not self.running:
            self.status.value = "stopped"
            return
        server, self.server = self.server, None
        server.shutdown()
        if self._thread is not None:
            self._thread.join(CLIENT_TIMEOUT)
        server.server_close()  # closes the socket; lets requests finish for close_grace
        logger.removeHandler(self._log)
        self._log.add("stopped")
        self._pump_stop.set()
        if self._pump is not None:
            self._pump.join(CLIENT_TIMEOUT)
        self._thread = self._pump = None
        self._redraw()
        self._set_running(False)
        self.status.value = "stopped"

    def send(self) -> str:
        """Send the text box's line as a client; show and return the reply."""
        if not self.running:
            self.reply.value = "start the server first"
            return ""
        try:
            reply = _ask(self.server.server_address, (self.line.value + "\n").encode())
            text = reply.decode(errors="replace").rstrip("\n")
        except OSError as exc:
            text = f"no reply: {exc}"
        self.reply.value = f"&rarr; <code>{_escape(text)}</code>"
        return text

    def load(self) -> list[float]:
        """Fire the chosen number of clients at once; show a summary and a histogram.

        Returns the latencies in milliseconds (failed requests are left out and counted).
        """
        if not self.running:
            self.summary.value = "start the server first"
            return []
        n = int(self.clients.value)
        address, message = self.server.server_address, b"load\n"

        def one(_: int) -> float | None:
            started = time.perf_counter()
            try:
                _ask(address, message)
            except OSError:
                return None
            return (time.perf_counter() - started) * 1000

        with ThreadPoolExecutor(max_workers=n) as pool:
            results = list(pool.map(one, range(n)))
        latencies = sorted(r for r in results if r is not None)
        if latencies:
            self.summary.value = _summary(latencies, n)
            self.histogram.value = _histogram_png(latencies, f"{n} clients, {self._describe()}")
            self.histogram.layout.display = None
        else:
            self.summary.value = f"none of {n} answered"
        return latencies

    def close(self) -> None:
        """Stop the server and remove the panel from the page and the registry."""
        if "server" in self.__dict__:  # not when __init__ refused its arguments
            self.stop()
            if _PANELS.get(self.name) is self:
                del _PANELS[self.name]
        super().close()

    # -- internals ------------------------------------------------------------------------

    def _describe(self) -> str:
        server, handler = self.server, self.handler.value
        if server is None:
            return f"{self.kind.value}, {handler} handler"
        host, port = server.server_address[:2]
        return f"{type(server).__name__} on {host}:{port}, {handler} handler"

    def _redraw(self) -> None:
        self.log_view.value = f"<pre>{_escape(self._log.text())}</pre>"
        self.request_view.value = self._log.table()

    def _set_running(self, running: bool) -> None:
        self.start_button.disabled = running
        self.kind.disabled = self.handler.disabled = running
        self.stop_button.disabled = self.send_button.disabled = (
            self.load_button.disabled
        ) = not running

    def _pump_log(self) -> None:
        """The only thread that writes the log widget: at most ten redraws a second."""
        shown = -1
        while not self._pump_stop.wait(0.1):
            version = self._log.version
            if version != shown:
                shown = version
                self._redraw()


def _summary(latencies: list[float], sent: int) -> str:
    """What Load measured, said plainly (latencies sorted, in ms)."""
    spread = f"median {latencies[len(latencies) // 2]:.1f} ms, slowest {latencies[-1]:.1f} ms"
    if len(latencies) >= 100:  # a 99th percentile of fewer samples is just the maximum
        spread += f", p99 {latencies[int(len(latencies) * 0.99)]:.1f} ms"
    failed = sent - len(latencies)
    return (
        f"{len(latencies)} of {sent} answered ({spread}{f', {failed} failed' if failed else ''})."
        " Each time is one client's connect, send a line, read the reply; the client threads"
        " run in this kernel and share its interpreter lock with the server's threads (the"
        " latency lab, 07, runs clients in processes of their own)."
    )


def _classed(widget: Any, name: str) -> Any:
    """Give a widget a stable CSS class, ``minisocket-<name>``, for browser tests."""
    widget.add_class(f"minisocket-{name}")
    return widget


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _ask(address: Any, message: bytes) -> bytes:
    """One client: connect, send a line, read the one-line reply, close."""
    with socket.create_connection(address[:2], timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(message)
        # Half-close rather than rely on close(): a forking server's child may hold a copy
        # of this very socket (fork copies every descriptor of the kernel process), and
        # then only an explicit FIN tells the handler that the client is done.
        sock.shutdown(socket.SHUT_WR)
        with sock.makefile("rb") as lines:
            return lines.readline()


def _histogram_png(latencies: list[float], title: str) -> bytes:
    from matplotlib.figure import Figure  # no pyplot: nothing global, safe off the main thread

    figure = Figure(figsize=(4.2, 2.2), dpi=100)
    axes = figure.add_subplot()
    axes.hist(latencies, bins=min(30, max(5, len(latencies) // 3)), color="C0")
    axes.set_xlabel("latency (ms)")
    axes.set_ylabel("requests")
    axes.set_title(title, fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
