# SPDX-License-Identifier: Apache-2.0
"""The base of the live tier's scripted peers: a TCP server on 127.0.0.1 (a free port) that hands each accepted
connection to `handle` on a thread of its own, until `close`."""

import socket
import threading


class LoopbackServer:
    """Subclasses set their own state, then call `super().__init__()` (connections may arrive at once), and
    define `handle(connection)`; `accepted(connection)` runs first on the accepting thread, for counting."""

    def __init__(self, backlog=64):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(backlog)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def accepted(self, connection):
        pass

    def handle(self, connection):
        raise NotImplementedError

    def close(self):
        self.listener.close()

    def _accept(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.accepted(connection)
            threading.Thread(target=self.handle, args=(connection,), daemon=True).start()
