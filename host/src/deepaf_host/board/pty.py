"""Serve a virtual board on a pseudo-terminal (``deepaf-host emulate``).

Any serial program (the DeepAf host, UGS, CNCjs, ``screen``) can open the printed
device. Opening it resets the board, as opening an Uno's port does; closing it leaves
the board running. A pseudo-terminal has no DTR line: the server sees an open as the
end of the hang-up that the master reports while no client has the terminal open, so
a close and a new open within a few milliseconds look like one session.
"""

from __future__ import annotations

import errno
import os
import select
import threading
import tty

from .board import VirtualBoard

POLL_MS = 5
READ_WAIT_S = 0.005


class PtyServer:
    """Bridges the master side of a new pseudo-terminal to ``board``."""

    def __init__(self, board: VirtualBoard) -> None:
        self.board = board
        self._master, slave = os.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        os.close(slave)  # no slave open: the master reports a hang-up until a client opens it
        self._stop = threading.Event()
        #: Whether a client has the terminal open (as last seen by ``serve_forever``).
        self.connected = False

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.stop()
        try:
            os.close(self._master)
        except OSError:
            pass

    def serve_forever(self) -> None:
        """Run until ``stop()`` (from another thread) or KeyboardInterrupt."""
        poller = select.poll()
        poller.register(self._master, select.POLLIN)
        while not self._stop.is_set():
            events = dict(poller.poll(POLL_MS)).get(self._master, 0)
            if events & select.POLLHUP:
                self.connected = False
                self._stop.wait(0.01)
                continue
            if not self.connected:
                self.connected = True
                self.board.reset()  # the client opened the port: DTR reset
            if events & select.POLLIN:
                try:
                    data = os.read(self._master, 4096)
                except OSError as exc:
                    if exc.errno == errno.EIO:
                        continue
                    raise
                self.board.write(data)
            out = self.board.read(4096, READ_WAIT_S)
            if out:
                self._send(out)

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._master, view)
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EAGAIN):
                    return  # the client went away: the bytes are lost, as on a wire
                raise
            view = view[n:]
