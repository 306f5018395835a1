"""Reference solutions to the exercises of notebook 06 (a pool and one thread for all).

``tests/test_exercises.py`` runs each one through its check in
:mod:`minisocket.lab.exercises`.  Try the exercises before reading on.
"""

from __future__ import annotations

import minisocket

# -- Exercise 1: predict ---------------------------------------------------------------
#
# max_workers = 4, queue_size = 2, eight clients that stay connected, one after another.
# The first four each get a worker, and keep it: they never leave.  The next two wait in
# the queue (it holds two).  Past that, process_request refuses: the last two read end of
# file at once.  The count does not depend on how fast the workers pick connections up:
# a worker taking one leaves one more queued connection and one less idle worker.

POOL_PREDICTION = ["served"] * 4 + ["queued"] * 2 + ["refused"] * 2


# -- Exercise 2: a line counter ------------------------------------------------------------


class LineCounter(minisocket.ProtocolRequestHandler):
    """Each newline completes a line, wherever the pieces were cut: count newlines."""

    lines = 0

    def data_received(self, data: bytes) -> None:
        for _ in range(data.count(b"\n")):
            self.lines += 1
            self.send(b"%d\n" % self.lines)


# -- Exercise 3: debug ---------------------------------------------------------------------
#
# The original sends all 200 000 lines from connection_made, in one go: whatever the
# client does not read waits in the server's buffer.  pause_writing is called (past
# high_water) but nobody listens.  Produce from a method that stops when paused, and
# carry on from resume_writing.


class Numbers(minisocket.ProtocolRequestHandler):
    high_water, low_water = 64 * 1024, 16 * 1024
    count = 200_000

    def connection_made(self) -> None:
        self.next, self.paused = 0, False
        self.produce()

    def produce(self) -> None:
        while not self.paused and self.next < self.count:
            self.send(b"%d\n" % self.next)
            self.next += 1
        if self.next == self.count:
            self.close()  # sends what is buffered, then ends the connection

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.produce()
