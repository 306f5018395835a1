"""``import minisocket as socketserver`` keeps real code working.

The stdlib's own servers -- http.server, xmlrpc.server, wsgiref.simple_server -- are
loaded afresh with ``socketserver`` (and, for wsgiref, ``http.server``) aliased to
minisocket, so their server classes are built on minisocket's.  Then they serve real
requests from the stdlib's own clients.  The blog example this project starts from runs
with only its import changed.
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import socket
import struct
import sys
import types
import xmlrpc.client
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import HOST, TIMEOUT, Steps, serving

import minisocket


def load_with_minisocket(name: str, **aliases: types.ModuleType) -> types.ModuleType:
    """Execute stdlib module *name* afresh while ``socketserver`` means minisocket."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    replaced = {"socketserver": minisocket, **aliases}
    saved = {key: sys.modules.get(key) for key in replaced}
    sys.modules.update(replaced)
    try:
        spec.loader.exec_module(module)
    finally:
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value
    return module


@pytest.fixture(scope="module")
def mini_http() -> types.ModuleType:
    return load_with_minisocket("http.server")


def test_http_server_serves_files(mini_http: Any, short_tmp: str) -> None:
    with open(os.path.join(short_tmp, "hello.txt"), "wb") as f:
        f.write(b"hello from minisocket\n")

    class Quiet(mini_http.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=short_tmp, **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = mini_http.ThreadingHTTPServer((HOST, 0), Quiet)
    assert isinstance(server, minisocket.ThreadingMixIn)
    assert isinstance(server, minisocket.TCPServer)
    with serving(server):
        conn = http.client.HTTPConnection(HOST, server.server_port, timeout=TIMEOUT)
        conn.request("GET", "/hello.txt")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"hello from minisocket\n")
        conn.request("GET", "/missing")  # keep-alive: same connection, second request
        response = conn.getresponse()
        response.read()
        assert response.status == 404
        conn.close()


def test_xmlrpc_server(short_tmp: str) -> None:
    mini_xmlrpc = load_with_minisocket("xmlrpc.server")
    server = mini_xmlrpc.SimpleXMLRPCServer((HOST, 0), logRequests=False)
    assert isinstance(server, minisocket.TCPServer)
    server.register_function(pow)
    server.register_function(lambda text: text.upper(), "upper")
    with serving(server):
        host, port = server.server_address
        with xmlrpc.client.ServerProxy(f"http://{host}:{port}") as proxy:
            assert proxy.pow(2, 10) == 1024
            assert proxy.upper("drop-in") == "DROP-IN"
            with pytest.raises(xmlrpc.client.Fault):
                proxy.missing()


def test_wsgiref_server(mini_http: Any) -> None:
    mini_wsgi = load_with_minisocket("wsgiref.simple_server", **{"http.server": mini_http})

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}".encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    class QuietHandler(mini_wsgi.WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = mini_wsgi.make_server(HOST, 0, app, handler_class=QuietHandler)
    assert isinstance(server, minisocket.TCPServer)
    with serving(server):
        conn = http.client.HTTPConnection(HOST, server.server_port, timeout=TIMEOUT)
        conn.request("GET", "/path")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"GET /path")
        conn.close()


# The blog's example, verbatim but for the import and the port (0: let the OS choose).
import minisocket as socketserver  # noqa: E402


class Server(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while True:
            try:
                data = self.request.recv(1024)
                self.request.send(data.upper())
            except ConnectionResetError:
                break


@pytest.fixture
def blog_server() -> Iterator[Any]:
    server = socketserver.ThreadingTCPServer((HOST, 0), Server)
    server.tracer = Steps()
    with serving(server):
        yield server


def test_blog_example(blog_server: Any) -> None:
    for word in (b"hello", b"minisocket"):
        with socket.create_connection(blog_server.server_address, timeout=TIMEOUT) as client:
            client.sendall(word)
            assert client.recv(1024) == word.upper()
            # The blog's handler only stops on ConnectionResetError, so leave the way it
            # expects: an abortive close (RST).  An orderly close makes it spin, which
            # notebook 04 shows and tests/test_handlers.py checks.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # Every handler thread saw its reset and finished: server_close() will not block.
    blog_server.tracer.wait("close_request", 2)
