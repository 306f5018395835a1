"""Reference solutions to notebook 04's exercises (04-handlers.ipynb).

Try the exercises first: the notebook's check cells tell you how far you got.
"""

from __future__ import annotations

import minisocket

# -- Exercise 1: the blog's handler, fixed ----------------------------------------------
#
# recv() returns b'' once the client has closed its side: that is the end of the loop.
# sendall, not send: send() may hand the kernel only part of the data.


class UpperEcho(minisocket.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(1024):
            self.request.sendall(data.upper())


# -- Exercise 2: a line protocol that adds ------------------------------------------------
#
# Iterating over rfile yields one line at a time and stops at end of file; int() accepts
# surrounding whitespace and a sign, and raises ValueError for anything else.


class Adder(minisocket.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            try:
                total = sum(int(word) for word in line.split())
            except ValueError:
                self.wfile.write(b"ERR\n")
            else:
                self.wfile.write(b"%d\n" % total)
