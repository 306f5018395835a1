"""Layer 01 — the listening socket: the socket facts a server rests on.

Design note
-----------
A socketserver server *has* a socket; it is not one.  ``TCPServer.__init__`` makes it
with ``socket.socket(address_family, socket_type)``; ``server_bind`` sets the reuse
options, binds, and records the address the kernel chose (port 0 becomes a real port);
``server_activate`` listens with a backlog of ``request_queue_size``; ``get_request``
accepts; ``shutdown_request`` half-closes a connection, then closes it; ``server_close``
closes the listener.  Those methods live on ``TCPServer``, beside ``BaseServer`` (layer
03), exactly where socketserver has them.  This module holds the socket facts they rest
on, as plain functions to try at the prompt:

    family_for_address   an IPv6 literal selects AF_INET6 (socketserver: gaierror)
    socket_file          a Unix-domain server's file, so that close can remove it ...
    remove_socket_file   ... and only that file, and only in the process that bound it
    recv_datagram        a datagram longer than the buffer is *reported* (MSG_TRUNC)
    reset                make close() send a reset, so a cut-off reply reads as an error

Where minisocket's ``TCPServer`` differs from socketserver's, on purpose:

* ``request_queue_size`` defaults to ``socket.SOMAXCONN`` instead of 5.  With a backlog
  of 5, a burst of a few simultaneous connects overflows the accept queue and the
  kernel drops SYNs: those clients stall for a retransmission timeout (about 1 s).
* ``('::1', 0)`` works with the default ``AF_INET`` class (:func:`family_for_address`).
* A Unix-domain server removes the socket file it created when it closes, so the same
  path can be bound again (``unlink_on_close = False`` keeps it).
* A datagram larger than ``max_packet_size`` is reported and dropped instead of being
  handed over silently truncated.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from typing import Any

SocketFile = tuple[str, int, int, int]  # path, device, inode, pid of the process that bound it


def family_for_address(address: Any, default: int) -> int:
    """Return ``AF_INET6`` for a ``(host, port, ...)`` whose host is an IPv6 literal.

    Anything else -- hostnames, IPv4 literals, Unix paths -- keeps *default*: resolving
    names is the caller's business, and guessing would make binding depend on DNS.
    """
    if default != socket.AF_INET or not isinstance(address, tuple) or not address:
        return default
    host = address[0]
    if not isinstance(host, str) or ":" not in host:
        return default
    try:
        ipaddress.IPv6Address(host.split("%", 1)[0])  # allow a scope: 'fe80::1%eth0'
    except ValueError:
        return default
    return socket.AF_INET6


def socket_file(address: Any) -> SocketFile | None:
    """The file a Unix-domain socket was just bound to, or ``None`` (no file: an IP
    address, or a Linux abstract-namespace name, which starts with a NUL byte)."""
    if not isinstance(address, (str, bytes)) or not address or address[:1] in ("\0", b"\0"):
        return None
    st = os.stat(address)
    return os.fsdecode(address), st.st_dev, st.st_ino, os.getpid()


def remove_socket_file(identity: SocketFile | None) -> None:
    """Remove the file :func:`socket_file` described -- if it is still the same file
    (someone may have bound the path since) and this is the process that bound it (a
    forked child closing its copy of the server must not remove the parent's file)."""
    if identity is None or identity[3] != os.getpid():
        return
    path, device, inode, _ = identity
    try:
        st = os.stat(path)
        if (st.st_dev, st.st_ino) == (device, inode):
            os.unlink(path)
    except OSError:
        pass  # already removed


class DatagramTruncated(OSError):
    """A datagram was larger than the server's ``max_packet_size``; its tail is lost."""


def recv_datagram(sock: socket.socket, size: int) -> tuple[bytes, Any, bool]:
    """Receive one datagram: ``(data, sender, truncated)``.

    A datagram longer than *size* does not fit, and the kernel drops its tail.
    ``recvfrom`` (socketserver's call) hides that; ``recvmsg`` reports it (``MSG_TRUNC``).
    """
    data, _ancillary, flags, address = sock.recvmsg(size)
    return data, address, bool(flags & socket.MSG_TRUNC)


def reset(sock: socket.socket) -> None:
    """Make the next ``close()`` of a TCP socket send a reset instead of an orderly end.

    The peer's next read then fails (``ECONNRESET``) instead of returning ``b''``: the
    way to end a connection whose reply was cut short, so that the client cannot take
    half a reply for a whole one.  (Unix-domain sockets have no reset: their peer reads
    an orderly end.)
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass  # already closed by the peer: nothing left to reset
