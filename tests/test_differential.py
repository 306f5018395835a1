"""The same handler under socketserver and under minisocket gives the same transcript.

For every server class -- TCP, UDP, Unix stream, Unix datagram, each synchronous,
threading and forking -- one handler is served by the stdlib class and by minisocket's
class of the same name, driven by the same client script.  The transcript records
what the client received and what the handler observed about its environment (the
types of ``request`` and ``client_address``, the file objects' classes, which
``server_address`` it saw), so a difference in any visible behaviour fails the test.
"""

from __future__ import annotations

import os
import socket
import socketserver
import threading
from typing import Any

import pytest
from conftest import HOST, TIMEOUT, recv_all

import minisocket

FAMILIES = ["TCP", "UDP", "UnixStream", "UnixDatagram"]
CONCURRENCY = ["", "Threading", "Forking"]
CASES = [(c, f) for f in FAMILIES for c in CONCURRENCY]


def _server_class(module: Any, concurrency: str, family: str) -> Any:
    name = f"{concurrency}{family}Server"
    if not hasattr(module, name):  # ForkingUnix*Server arrived in the stdlib in 3.12
        mixin, base = getattr(module, f"{concurrency}MixIn"), getattr(module, f"{family}Server")
        return type(name, (mixin, base), {})
    return getattr(module, name)


def _observations(handler: Any) -> bytes:
    """What a handler can see about itself, as bytes the client receives."""
    server = handler.server
    seen = [
        type(handler.client_address).__name__,
        type(handler.rfile).__name__,
        "buffered-io" if isinstance(handler.wfile, __import__("io").BufferedIOBase) else "raw",
        str(server.server_address == server.socket.getsockname()),
        str(server.socket.type),
        str(server.socket.family),
    ]
    return ("|".join(seen) + "\n").encode()


def _stream_handle(self: Any) -> None:
    """Numbered upper-case echo of each line, a 100 kB write, then a summary line."""
    self.wfile.write(_observations(self))
    count = 0
    while line := self.rfile.readline():
        count += 1
        self.wfile.write(b"%d:" % count + line.upper())
    self.wfile.write(b"x" * 100_000 + b"\n")
    self.wfile.write(b"lines=%d\n" % count)


def _datagram_handle(self: Any) -> None:
    data = self.rfile.read()
    self.wfile.write(_observations(self) + data.upper())


def _handler(module: Any, stream: bool) -> Any:
    """The same handler body on each module's own handler base class."""
    if stream:
        return type("Echo", (module.StreamRequestHandler,), {"handle": _stream_handle})
    return type("Echo", (module.DatagramRequestHandler,), {"handle": _datagram_handle})


def _stream_client(family: int, address: Any) -> bytes:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(address)
        sock.sendall(b"hello\nsecond line\n\xffbinary\xfe\n")
        sock.shutdown(socket.SHUT_WR)
        return recv_all(sock)


def _datagram_client(family: int, address: Any, client_path: str | None) -> bytes:
    replies = []
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        if client_path is not None:
            sock.bind(client_path)  # a Unix datagram reply needs an address to go to
        for payload in (b"one", b"two\nlines", b"x" * 1000):
            sock.sendto(payload, address)
            replies.append(sock.recv(65536))
    return b"\n--\n".join(replies)


def _transcript(module: Any, concurrency: str, family: str, tmp: str) -> bytes:
    cls = _server_class(module, concurrency, family)
    unix = family.startswith("Unix")
    stream = "Stream" in family or family == "TCP"
    tag = f"{module.__name__}-{concurrency or 'sync'}"
    address: Any = os.path.join(tmp, f"{tag}.s") if unix else (HOST, 0)
    server = cls(address, _handler(module, stream))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        if stream:
            results = [_stream_client(cls.address_family, server.server_address) for _ in range(2)]
        else:
            results = [
                _datagram_client(
                    cls.address_family,
                    server.server_address,
                    os.path.join(tmp, f"{tag}-client{i}.c") if unix else None,
                )
                for i in range(2)
            ]
    finally:
        server.shutdown()
        thread.join(TIMEOUT)
        server.server_close()
    assert not thread.is_alive()
    return b"\n==\n".join(results)


@pytest.mark.parametrize(
    ("concurrency", "family"), CASES, ids=[f"{c or 'Sync'}{f}" for c, f in CASES]
)
def test_same_transcript(concurrency: str, family: str, short_tmp: str) -> None:
    expected = _transcript(socketserver, concurrency, family, short_tmp)
    actual = _transcript(minisocket, concurrency, family, short_tmp)
    assert actual == expected
    assert b"lines=3" in actual or b"ONE" in actual  # the transcript is not empty


@pytest.mark.parametrize("name", socketserver.__all__)
def test_every_stdlib_name_exists_with_the_same_kind(name: str) -> None:
    theirs, ours = getattr(socketserver, name), getattr(minisocket, name)
    assert isinstance(ours, type) and isinstance(theirs, type)
    # Every public attribute and hook of the stdlib class exists on ours.
    missing = {a for a in dir(theirs) if not a.startswith("__") and not hasattr(ours, a)}
    missing -= {"_BaseServer__is_shut_down", "_BaseServer__shutdown_request"}
    assert not missing, f"{name} lacks {sorted(missing)}"
