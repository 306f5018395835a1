"""Helpers for the notebooks: clients, descriptor and CPU readings, deterministic traces.

Nothing in the library imports this module; notebooks and their tests do.  Every
helper binds loopback only, bounds every wait, and cleans up what it starts, so a
notebook can be re-run top to bottom without leaking sockets or threads.

Output that would change between runs (ports, thread numbers, timestamps) is turned
into *roles* here -- "loop", "handler-1", "client-1" -- so nbval can compare it.
"""

from __future__ import annotations

import inspect
import os
import socket
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from minisocket.trace import TraceEvent, emit

__all__ = [
    "Check",
    "check",
    "connect_burst",
    "converse",
    "open_fds",
    "recv_all",
    "sequence_diagram",
    "show",
    "thread_cpu_seconds",
    "thread_roles",
    "trace_select",
    "trace_table",
    "wait_until",
]

TIMEOUT = 5.0


def show(obj: Any, *, lines: tuple[int, int] | None = None) -> None:
    """Print *obj*'s source as the running interpreter has it, under a title line.

    For CPython's ``socketserver`` that is the installed ``Lib/socketserver.py``; for
    minisocket, the module the notebook imports.  Plain text, so nbval compares it
    exactly (highlighted HTML would change with the pygments version).  *lines*, a
    ``(first, last)`` pair counted from 1, prints an excerpt, marked as one.
    """
    module = inspect.getmodule(obj)
    source = textwrap.dedent(inspect.getsource(obj)).rstrip("\n").split("\n")
    title = f"# {module.__name__ if module else '?'}.{obj.__qualname__}"
    if lines is not None:
        first, last = lines
        source = source[first - 1 : last]
        title += f", lines {first}-{last} of its source"
    print(title)
    print("\n".join(source))


def converse(
    address: Any, *messages: bytes, family: int = socket.AF_INET, timeout: float = TIMEOUT
) -> bytes:
    """Connect, send each message, half-close, and return everything received.

    Every socket operation waits at most *timeout* seconds (``TimeoutError``).
    """
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address)
        for message in messages:
            sock.sendall(message)
        sock.shutdown(socket.SHUT_WR)
        return recv_all(sock)


def recv_all(sock: socket.socket) -> bytes:
    """Read until the peer closes its side (each read bounded by the socket's timeout)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def connect_burst(backlog: int, clients: int = 10, timeout: float = 0.2) -> int:
    """How many of *clients* connects complete within *timeout* seconds against a
    listener with this *backlog* that never calls ``accept()``.

    The kernel finishes the handshake for queued connections on its own; once the
    accept queue is full (on Linux, at ``backlog + 1``) it drops further SYNs, and those
    clients wait for a retransmission -- one second, then three, ...
    """
    connected = 0
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(backlog)
        clients_ = []
        try:
            for _ in range(clients):
                client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                clients_.append(client)
                client.settimeout(timeout)
                try:
                    client.connect(listener.getsockname())
                except TimeoutError:
                    continue
                connected += 1
        finally:
            for client in clients_:
                client.close()
    return connected


def wait_until(predicate: Callable[[], object], timeout: float = TIMEOUT) -> bool:
    """Poll *predicate* every millisecond until it is true (return True) or *timeout*
    seconds have passed (return False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def open_fds() -> int:
    """How many descriptors this process has open (Linux: /proc/self/fd)."""
    return len(os.listdir("/proc/self/fd"))


def thread_cpu_seconds(native_id: int) -> float:
    """CPU seconds (user + system) one thread of this process has used (Linux /proc)."""
    with open(f"/proc/self/task/{native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_roles(events: Iterable[TraceEvent]) -> dict[str, str]:
    """Stable names for the threads in a trace: ``loop``, ``main``, ``handler-1``, ...

    The thread that ran ``serve_forever`` (or, failing that, the first ``get_request``)
    is the loop; the notebook's own thread, when it is not the loop (it calls
    ``shutdown`` or ``server_close``), is ``main``; the others are numbered in order of
    first appearance.
    """
    events = list(events)
    roles: dict[str, str] = {}
    loop = next((e.thread for e in events if e.step == "serve_forever"), None)
    if loop is None:
        loop = next((e.thread for e in events if e.step == "get_request"), None)
    if loop is not None:
        roles[loop] = "loop"
    main = threading.main_thread().name
    for event in events:
        if event.thread not in roles:
            if event.thread == main:
                roles[main] = "main"
            else:
                handlers = sum(role.startswith("handler-") for role in roles.values())
                roles[event.thread] = f"handler-{handlers + 1}"
    return roles


def _client_roles(events: Sequence[TraceEvent]) -> dict[Any, str]:
    clients: dict[Any, str] = {}
    for event in events:
        if event.client_address is not None and event.client_address not in clients:
            clients[event.client_address] = f"client-{len(clients) + 1}"
    return clients


# Server-wide events that interleave with a request's events in no fixed order.
LIFECYCLE = ("service_actions", "serve_forever", "shutdown", "serve_forever_exit")


def trace_table(
    events: Iterable[TraceEvent],
    skip: Sequence[str] = LIFECYCLE,
    *,
    header: bool = False,
    only: Sequence[str] | None = None,
) -> str:
    """The trace as aligned text: step, thread role, client role, detail.

    Steps named in *skip* are left out (by default the server-wide :data:`LIFECYCLE`
    events; pass ``()`` to keep everything); *only*, if given, keeps just the steps it
    names instead.  Roles are worked out over the whole trace, left-out events included,
    so an excerpt names threads and clients as the full table does.  *header* adds a
    title row.
    """
    events = list(events)
    threads, clients = thread_roles(events), _client_roles(events)
    shown = [e for e in events if (e.step in only if only is not None else e.step not in skip)]
    rows = [f"{'step':<18} {'thread':<10} {'client':<9} detail"] if header else []
    rows += [
        f"{e.step:<18} {threads[e.thread]:<10} {clients.get(e.client_address, '-'):<9} {e.detail}"
        for e in shown
    ]
    return "\n".join(row.rstrip() for row in rows)


def trace_select(server: Any) -> Any:
    """Make *server*'s loop report each wait: a ``select`` event every time it calls
    ``select()`` on its selector, so a trace shows when the loop sat waiting.

    Call it before the server first serves (the loop makes its selector on first use).
    Returns the server.
    """
    base = server.selector_class

    class WaitTracing(base):  # type: ignore[valid-type, misc]
        def select(self, timeout: float | None = None) -> Any:
            emit(server, "select", None, "waiting")
            return super().select(timeout)

    WaitTracing.__name__ = WaitTracing.__qualname__ = f"WaitTracing{base.__name__}"
    server.selector_class = WaitTracing
    return server


def sequence_diagram(
    ax: Any, events: Sequence[TraceEvent], title: str, *, skip: Sequence[str] = LIFECYCLE
) -> None:
    """Draw a trace on a matplotlib Axes: one lane per thread, one row per event.

    The vertical axis is the *order* of events, not time: row *n* is the *n*-th event,
    so the drawing is the same on every run -- what matters is which thread did what,
    in which order.  Steps named in *skip* are left out (by default the server-wide
    :data:`LIFECYCLE` events).  A ``select`` event (see :func:`trace_select`) starts a
    shaded bar: the thread waits in ``select()`` until its next event.  An arrow leads
    from ``process_request`` to the first step of a thread that appears after it: the
    request handed over.
    """
    events = [e for e in events if e.step not in skip]
    roles = thread_roles(events)
    lanes = {role: i for i, role in enumerate(dict.fromkeys(roles[e.thread] for e in events))}
    bottom = len(events) - 0.5
    for role, x in lanes.items():
        ax.plot([x, x], [-0.5, bottom], color="0.85", linewidth=1, zorder=0)
        ax.text(x, -1.0, role, ha="center", va="bottom", fontsize=9, fontweight="bold")
    handed_over: tuple[float, float] | None = None  # the latest process_request
    seen: set[int] = set()
    for y, event in enumerate(events):
        x = lanes[roles[event.thread]]
        if event.step == "select":  # waiting until this thread's next event
            later = (i for i in range(y + 1, len(events)) if events[i].thread == event.thread)
            until = next(later, None)
            end = bottom if until is None else until - 0.15
            ax.add_patch(_bar(x, y, end))
        ax.scatter([x], [y], s=18, color="C0" if x == 0 else "C1", zorder=2)
        label = "select: waiting" if event.step == "select" else event.step
        ax.text(x + 0.08, y, label, va="center", fontsize=8)
        if x not in seen and handed_over is not None and handed_over[0] != x:
            # a thread's first step, after a request was handed over: the hop
            ax.annotate(
                "", xy=(x, y), xytext=handed_over, arrowprops={"arrowstyle": "->", "color": "0.5"}
            )
        seen.add(x)
        if event.step == "process_request":
            handed_over = (x, y)
    ax.set_xlim(-0.6, max(lanes.values(), default=0) + 1.4)
    ax.set_ylim(bottom, -1.4)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_ylabel("order of events (first at the top)", fontsize=9)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)


def _bar(x: float, start: float, end: float) -> Any:
    """A shaded vertical bar in a lane, from row *start* down to row *end*."""
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.06, start), 0.12, end - start, color="C0", alpha=0.18, zorder=1)


@dataclass(frozen=True)
class Check:
    """One requirement of an exercise: a description and a test returning True/False."""

    description: str
    test: Callable[[], object]


def check(exercise: str, checks: Sequence[Check]) -> None:
    """Run an exercise's checks; print one line per check and a verdict. Never raises.

    A check that raises ``NotImplementedError`` means the exercise has not been tried;
    the checks after it are not run.
    The verdict line ends in ``solved`` when every check passes.
    """
    passed = 0
    attempted = True
    for item in checks:
        ok, note = False, " -- not attempted yet"
        if attempted:  # after a stub, the remaining checks would only time out
            try:
                ok = bool(item.test())
                note = "" if ok else " -- not yet"
            except NotImplementedError:
                attempted = False
            except Exception as exc:
                note = f" -- {type(exc).__name__}: {exc}"
        passed += ok
        print(f"  [{'x' if ok else ' '}] {item.description}{note}")
    solved = passed == len(checks)
    print(f"{exercise}: {'solved' if solved else f'{passed}/{len(checks)} checks pass'}")
