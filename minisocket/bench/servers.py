"""Every server kind the benchmarks compare, speaking one echo protocol.

The protocol: whatever a connection sends comes back unchanged.  A message whose first
byte is ``!`` is a *slow request*: the handler burns ``--work-ms`` of CPU before
echoing it, the way a real handler might render a page or hash a password.

Run one server per process (so it never shares an interpreter lock with the load
generator)::

    python -m minisocket.bench.servers select --work-ms 20 [--cpu 0]

It prints ``READY <port>`` once it listens on 127.0.0.1 and serves until its standard
input closes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import minisocket

__all__ = ["SERVERS", "ServerSpec", "main"]

SLOW_MARK = ord("!")
HOST = "127.0.0.1"


def burn(seconds: float) -> None:
    """Keep one CPU busy for *seconds* (holding the GIL, like real Python work)."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


class Servable(Protocol):
    """What the benchmark needs of a server: socketserver's shape."""

    server_address: Any

    def serve_forever(self) -> None: ...

    def shutdown(self) -> None: ...

    def server_close(self) -> None: ...


@dataclass(frozen=True)
class ServerSpec:
    name: str
    label: str
    library: str  # "minisocket", "stdlib" or "asyncio"
    kind: str  # "blocking", "select", "threaded", "forking", "pool", "asyncio"
    start: Callable[[float], Servable]  # seconds of work per slow request -> server


def _blocking_handler(module: Any, work: float) -> type[Any]:
    class Echo(module.BaseRequestHandler):  # type: ignore[misc]
        def handle(self) -> None:
            sock = self.request
            try:
                while data := sock.recv(65536):
                    if work and data[0] == SLOW_MARK:
                        burn(work)
                    sock.sendall(data)
            except ConnectionError:
                pass  # a client that gave up (starved clients close at the end of a run)

    return Echo


class _ProtocolEcho(minisocket.ProtocolRequestHandler):
    work = 0.0

    def data_received(self, data: bytes) -> None:
        if self.work and data[0] == SLOW_MARK:
            burn(self.work)
        self.send(data)


def _socketserver(module: Any, class_name: str, **attrs: Any) -> Callable[[float], Servable]:
    def start(work: float) -> Servable:
        if class_name.startswith("Selector"):
            handler: type[Any] = type("Echo", (_ProtocolEcho,), {"work": work})
        else:
            handler = _blocking_handler(module, work)
        server_class = type(class_name, (getattr(module, class_name),), attrs)
        server: Servable = server_class((HOST, 0), handler)
        return server

    return start


# Forking servers get max_children above any tested concurrency; the default (40)
# would otherwise leave most of 64 or 256 persistent clients unserved by design.
_FORK = {"max_children": 1024}
# Threads of a benchmark server must not keep it alive after the run.
_DAEMON = {"daemon_threads": True}
# The stdlib's listen backlog of 5 overflows whenever clients connect faster than the
# server accepts: each dropped SYN costs its client a 1 s retransmission, and opening
# 256 connections takes about 40 s (notebook 01 shows the stall).  The benchmarks
# compare serving models, so the stdlib servers get minisocket's backlog.
_BACKLOG = {"request_queue_size": socket.SOMAXCONN}

# name: (label, kind, module, class, class attributes)
_SOCKETSERVERS: dict[str, tuple[str, str, Any, str, dict[str, Any]]] = {
    "blocking": ("minisocket TCPServer", "blocking", minisocket, "TCPServer", {}),
    "select": ("minisocket SelectorTCPServer", "select", minisocket, "SelectorTCPServer", {}),
    "select-busy": (
        "minisocket SelectorTCPServer, BusyPollSelector", "select", minisocket,
        "SelectorTCPServer", {"selector_class": minisocket.BusyPollSelector},
    ),
    "threaded": (
        "minisocket ThreadingTCPServer", "threaded", minisocket, "ThreadingTCPServer", _DAEMON
    ),
    "forking": ("minisocket ForkingTCPServer", "forking", minisocket, "ForkingTCPServer", _FORK),
    "pool": ("minisocket ThreadPoolTCPServer", "pool", minisocket, "ThreadPoolTCPServer", _DAEMON),
    "stdlib-blocking": ("socketserver TCPServer", "blocking", socketserver, "TCPServer", _BACKLOG),
    "stdlib-threaded": (
        "socketserver ThreadingTCPServer", "threaded", socketserver, "ThreadingTCPServer",
        {**_DAEMON, **_BACKLOG},
    ),
    "stdlib-forking": (
        "socketserver ForkingTCPServer", "forking", socketserver, "ForkingTCPServer",
        {**_FORK, **_BACKLOG},
    ),
}  # fmt: skip


class _AsyncioServer:
    """An asyncio echo server with the serve_forever/shutdown/server_close shape."""

    def __init__(self, work: float, streams: bool) -> None:
        self.work = work
        self.streams = streams
        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(self._start())
        self.server_address = self.server.sockets[0].getsockname()

    async def _start(self) -> asyncio.base_events.Server:
        work = self.work
        if self.streams:

            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                try:
                    while data := await reader.read(65536):
                        if work and data[0] == SLOW_MARK:
                            burn(work)
                        writer.write(data)
                        await writer.drain()
                except ConnectionError:
                    pass
                finally:
                    writer.close()

            return await asyncio.start_server(handle, HOST, 0)

        class Echo(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                assert isinstance(transport, asyncio.Transport)
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                if work and data[0] == SLOW_MARK:
                    burn(work)
                self.transport.write(data)

        return await self.loop.create_server(Echo, HOST, 0)

    def serve_forever(self) -> None:
        self.loop.run_forever()

    def shutdown(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)

    def server_close(self) -> None:
        self.server.close()
        self.loop.close()


SERVERS: dict[str, ServerSpec] = {
    name: ServerSpec(
        name,
        label,
        "stdlib" if module is socketserver else "minisocket",
        kind,
        _socketserver(module, cls, **attrs),
    )
    for name, (label, kind, module, cls, attrs) in _SOCKETSERVERS.items()
}
SERVERS["asyncio-streams"] = ServerSpec(
    "asyncio-streams",
    "asyncio streams",
    "asyncio",
    "asyncio",
    partial(_AsyncioServer, streams=True),
)
SERVERS["asyncio-protocol"] = ServerSpec(
    "asyncio-protocol",
    "asyncio Protocol",
    "asyncio",
    "asyncio",
    partial(_AsyncioServer, streams=False),
)


def run(name: str, work_ms: float) -> None:
    """Serve *name* until standard input closes; announce the port on standard output."""
    server = SERVERS[name].start(work_ms / 1000)

    def stop_when_stdin_closes() -> None:
        sys.stdin.read()
        server.shutdown()

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    print(f"READY {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m minisocket.bench.servers")
    parser.add_argument("name", choices=sorted(SERVERS))
    parser.add_argument("--work-ms", type=float, default=0.0, help="CPU per slow request")
    parser.add_argument("--cpu", type=int, help="run on this CPU only (Linux)")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})  # before any thread starts: all inherit it
    run(args.name, args.work_ms)


if __name__ == "__main__":
    main()
