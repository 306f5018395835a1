"""The server kinds the benchmarks compare, defined once: the bench, the panel and the
tests take their lists from here.

``KINDS``  name -> :class:`Kind`: minisocket's servers, the standard library's
           ``socketserver`` equivalents, and asyncio's two styles
``SETS``   named lists of kind names (``SETS["minisocket"]``: the five serving models
           minisocket has, as the server panel offers them)

This module imports ``minisocket`` and the standard library only (no numpy, no
matplotlib), so the panel and ``python -m minisocket.bench --help`` work without the
``bench`` extra.  A kind knows its class and the settings the benchmarks give it; the
benchmarks' own handlers and server processes live in :mod:`minisocket.bench.servers`.
"""

from __future__ import annotations

import socket
import socketserver
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import minisocket

__all__ = ["KINDS", "SETS", "SETTINGS_WHY", "Kind", "names"]


@dataclass(frozen=True)
class Kind:
    """One server kind: what it is, and how the benchmarks configure it.

    ``base`` is the library's own class (``None`` for asyncio, which has no server
    class of socketserver's shape); ``settings`` are the class attributes the
    benchmarks set on a subclass of it, each for a reason given in ``SETTINGS_WHY``.
    """

    name: str
    label: str
    library: str  # "minisocket", "stdlib" or "asyncio"
    model: str  # "blocking", "select", "threaded", "forking", "pool" or "asyncio"
    base: type[Any] | None
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def evented(self) -> bool:
        """Handlers are callbacks on the loop's thread (``ProtocolRequestHandler``)."""
        return self.model == "select"

    def server_class(self) -> type[Any]:
        """``base`` with the benchmark's ``settings`` (``base`` itself without any)."""
        if self.base is None:
            raise TypeError(f"{self.name} is not a socketserver-style server")
        if not self.settings:
            return self.base
        return type(self.base.__name__, (self.base,), dict(self.settings))


# Why the benchmarks change a class attribute, by attribute.
SETTINGS_WHY = {
    "daemon_threads": "a benchmark server's threads must not keep it alive after the run",
    "max_children": "the default, 40, would leave most of 64 or 256 persistent clients "
    "unserved by design",
    "request_queue_size": "socketserver's backlog of 5 overflows when clients connect "
    "faster than it accepts: each dropped SYN costs its client a 1 s retransmission "
    "(notebook 01); the benchmarks compare serving models, so the stdlib servers get "
    "minisocket's backlog, socket.SOMAXCONN",
    "selector_class": "busy polling is opt-in: a subclass sets the selector",
}

_DAEMON = {"daemon_threads": True}
_FORK = {"max_children": 1024}
_BACKLOG = {"request_queue_size": socket.SOMAXCONN}


def _kinds(*kinds: Kind) -> dict[str, Kind]:
    return {kind.name: kind for kind in kinds}


KINDS: dict[str, Kind] = _kinds(
    Kind("blocking", "minisocket TCPServer", "minisocket", "blocking", minisocket.TCPServer),
    Kind(
        "select", "minisocket SelectorTCPServer", "minisocket", "select",
        minisocket.SelectorTCPServer,
    ),
    Kind(
        "select-busy", "minisocket SelectorTCPServer + BusyPollSelector", "minisocket", "select",
        minisocket.SelectorTCPServer, {"selector_class": minisocket.BusyPollSelector},
    ),
    Kind(
        "threaded", "minisocket ThreadingTCPServer", "minisocket", "threaded",
        minisocket.ThreadingTCPServer, _DAEMON,
    ),
    Kind(
        "pool", "minisocket ThreadPoolTCPServer", "minisocket", "pool",
        minisocket.ThreadPoolTCPServer, _DAEMON,
    ),
    Kind(
        "forking", "minisocket ForkingTCPServer", "minisocket", "forking",
        minisocket.ForkingTCPServer, _FORK,
    ),
    Kind(
        "stdlib-blocking", "socketserver TCPServer", "stdlib", "blocking",
        socketserver.TCPServer, _BACKLOG,
    ),
    Kind(
        "stdlib-threaded", "socketserver ThreadingTCPServer", "stdlib", "threaded",
        socketserver.ThreadingTCPServer, {**_DAEMON, **_BACKLOG},
    ),
    Kind(
        "stdlib-forking", "socketserver ForkingTCPServer", "stdlib", "forking",
        socketserver.ForkingTCPServer, {**_FORK, **_BACKLOG},
    ),
    Kind("asyncio-streams", "asyncio streams", "asyncio", "asyncio", None),
    Kind("asyncio-protocol", "asyncio Protocol", "asyncio", "asyncio", None),
)  # fmt: skip

SETS: dict[str, tuple[str, ...]] = {
    # minisocket's five serving models: the server panel's choices, the property tests'
    "minisocket": ("blocking", "select", "threaded", "forking", "pool"),
    # `python -m minisocket.bench run` without --servers
    "default": ("blocking", "select", "threaded", "pool", "stdlib-threaded", "asyncio-protocol"),
    # the reference run that notebook 07 plots: persistent echo clients...
    "echo": (
        "blocking", "select", "select-busy", "threaded", "pool", "forking",
        "stdlib-threaded", "asyncio-protocol",
    ),
    # ...some requests that do 20 ms of work...
    "slow": ("select", "threaded", "pool", "forking"),
    # ...and a new connection per request
    "connect": ("select", "threaded", "pool", "forking", "stdlib-threaded"),
    # the soak: many connections for a long time
    "soak": ("select", "threaded"),
}  # fmt: skip


def names(text: str) -> list[str]:
    """Kind names from a comma-separated list, where a set's name stands for its kinds.

    Raises ``ValueError`` naming what is unknown.
    """
    out: list[str] = []
    for word in (w.strip() for w in text.split(",")):
        if not word:
            continue
        for name in SETS.get(word, (word,)):
            if name not in KINDS:
                raise ValueError(f"unknown server {name}")
            if name not in out:
                out.append(name)
    if not out:
        raise ValueError("no server given")
    return out
