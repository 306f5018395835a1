"""Reference solutions to the exercises of notebook 01 (the listening socket).

Try the exercises first: each notebook cell that calls ``exercises.check_01_*`` tells
you how far you got.  ``tests/test_exercises.py`` runs these answers through the same
checks.
"""

from __future__ import annotations

import socket

import minisocket


class KeepAliveTCPServer(minisocket.TCPServer):
    """Exercise 1: the option goes on the socket; the address is still read back.

    Setting it before ``super().server_bind()`` or after makes no difference to the
    listening socket; what matters is calling ``super().server_bind()``, which binds and
    records the port the kernel chose.  On Linux, accepted sockets inherit the option.
    """

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        super().server_bind()


# Exercise 2, the prediction: the second server's bind() fails, as in §10 -- the option
# set in server_activate comes too late, since server_bind has already failed by then.
PREDICTION = "EADDRINUSE"


class RestartableServer(minisocket.TCPServer):
    """Exercise 2, the fix: ``SO_REUSEADDR`` must be set *before* ``bind()``.

    ``__init__`` calls ``server_bind`` and then ``server_activate``; with a connection of
    the old server still in ``TIME_WAIT``, ``bind()`` raises ``EADDRINUSE`` and
    ``server_activate`` never runs.  The class attribute asks ``server_bind`` to set the
    option before it binds (overriding ``server_bind`` to set it before
    ``super().server_bind()`` works too).
    """

    allow_reuse_address = True
