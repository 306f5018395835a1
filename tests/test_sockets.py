"""Layer 01: the socket facts, and TCPServer's socket hooks called by hand (no loop)."""

from __future__ import annotations

import errno
import os
import socket

import pytest
from conftest import HOST, TIMEOUT, open_fds

from minisocket import TCPServer, UDPServer, UnixDatagramServer, UnixStreamServer
from minisocket.sockets import family_for_address, recv_datagram, reset


class Listener(TCPServer):
    """A TCP server whose hooks the tests call by hand."""


DatagramListener = UDPServer


def handler(*args: object) -> None:
    raise AssertionError("the socket layer never calls the handler")


def test_binds_port_zero_and_records_the_real_address() -> None:
    with Listener((HOST, 0), handler) as server:
        host, port = server.server_address
        assert host == HOST and port > 0
        assert server.server_address == server.socket.getsockname()
        assert server.fileno() == server.socket.fileno()
    assert server.socket.fileno() == -1


def test_accepts_a_connection_by_hand() -> None:
    with Listener((HOST, 0), handler) as server:
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
            request, client_address = server.get_request()
            assert client_address == client.getsockname()
            client.sendall(b"ping")
            assert request.recv(4) == b"ping"
            server.shutdown_request(request)
            assert client.recv(1) == b""  # the half-close reached the client as EOF
            assert request.fileno() == -1


def test_backlog_defaults_to_somaxconn() -> None:
    assert Listener.request_queue_size == socket.SOMAXCONN


def test_reuse_options_are_applied_only_when_asked() -> None:
    with Listener((HOST, 0), handler) as plain:
        assert not plain.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)

    class Reusing(Listener):
        allow_reuse_address = True
        allow_reuse_port = True

    with Reusing((HOST, 0), handler) as reusing:
        assert reusing.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert reusing.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)


def test_bind_and_activate_false_defers_both() -> None:
    server = Listener((HOST, 0), handler, bind_and_activate=False)
    try:
        assert server.server_address == (HOST, 0)
        server.server_bind()
        server.server_activate()
        assert server.server_address[1] > 0
    finally:
        server.server_close()


def test_failed_bind_closes_the_socket() -> None:
    with Listener((HOST, 0), handler) as taken:
        before = open_fds()
        for _ in range(50):
            with pytest.raises(OSError) as info:
                Listener(taken.server_address, handler)
            assert info.value.errno == errno.EADDRINUSE
        assert open_fds() == before


@pytest.mark.parametrize(
    ("address", "family"),
    [
        (("::1", 0), socket.AF_INET6),
        (("fe80::1%lo", 0), socket.AF_INET6),
        (("127.0.0.1", 0), socket.AF_INET),
        (("localhost", 0), socket.AF_INET),
        ("/tmp/x.sock", socket.AF_INET),
    ],
)
def test_family_for_address(address: object, family: int) -> None:
    assert family_for_address(address, socket.AF_INET) == family


def test_family_for_address_keeps_an_explicit_family() -> None:
    assert family_for_address(("::1", 0), socket.AF_UNIX) == socket.AF_UNIX


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 on this machine")
def test_ipv6_literal_binds_without_overriding_address_family() -> None:
    try:
        server = Listener(("::1", 0), handler)
    except OSError as exc:  # ::1 may be disabled in a container
        pytest.skip(f"cannot bind ::1 here: {exc}")
    with server, socket.create_connection(server.server_address[:2], timeout=TIMEOUT):
        assert server.socket.family == socket.AF_INET6
        request, _ = server.get_request()
        request.close()


def test_datagram_request_is_data_and_socket() -> None:
    with DatagramListener((HOST, 0), handler) as server:
        assert server.socket.type == socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind((HOST, 0))
            client.sendto(b"datagram", server.server_address)
            (data, sock), client_address = server.get_request()
            assert (data, sock) == (b"datagram", server.socket)
            assert client_address == client.getsockname()
            server.shutdown_request((data, sock))  # never closes the shared socket
            assert server.socket.fileno() != -1


def test_unix_stream_socket_file_is_removed_on_close(unix_path: str) -> None:
    UnixListener = UnixStreamServer
    for _ in range(2):  # the second bind works only because the first removed its file
        with UnixListener(unix_path, handler) as server:
            assert os.path.exists(unix_path)
            assert server.socket.family == socket.AF_UNIX
        assert not os.path.exists(unix_path)


def test_unix_socket_file_of_someone_else_is_left_alone(unix_path: str) -> None:
    server = UnixDatagramServer(unix_path, handler)
    os.unlink(unix_path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as other:
        other.bind(unix_path)  # a new file at the same path, not ours
        server.server_close()
        assert os.path.exists(unix_path)


def test_unlink_on_close_can_be_turned_off(unix_path: str) -> None:
    class Keeping(UnixStreamServer):
        unlink_on_close = False

    with Keeping(unix_path, handler):
        pass
    assert os.path.exists(unix_path)


def test_repr_names_the_class_and_address() -> None:
    with Listener((HOST, 0), handler) as server:
        assert repr(server) == f"<Listener {server.server_address!r}>"


def test_a_forked_child_closing_the_server_leaves_the_parents_socket_file(unix_path: str) -> None:
    with UnixStreamServer(unix_path, handler) as server:
        child = os.fork()
        if child == 0:  # the child closes its copy, as a pre-fork worker might
            server.server_close()
            os._exit(0 if os.path.exists(unix_path) else 1)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert os.path.exists(unix_path)  # still there for the parent
    assert not os.path.exists(unix_path)  # and removed by the parent, which bound it


def test_recv_datagram_reports_truncation() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        receiver.bind((HOST, 0))
        receiver.settimeout(TIMEOUT)
        sender.sendto(b"x" * 100, receiver.getsockname())
        sender.sendto(b"y" * 10, receiver.getsockname())
        assert recv_datagram(receiver, 50)[::2] == (b"x" * 50, True)
        assert recv_datagram(receiver, 50)[::2] == (b"y" * 10, False)


def test_reset_makes_the_peer_read_an_error_not_an_end() -> None:
    with socket.create_server((HOST, 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=TIMEOUT)
        server_side, _ = listener.accept()
        server_side.sendall(b"half a rep")
        reset(server_side)
        server_side.close()
        with client, pytest.raises(ConnectionResetError):
            while client.recv(1024):  # what arrived before the reset may still be read
                pass
