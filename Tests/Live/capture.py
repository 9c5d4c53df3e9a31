# SPDX-License-Identifier: Apache-2.0
"""An upstream that records the exact bytes of every request it receives, for the hostile-input corpus.

It frames requests the way a strict origin would (Content-Length or a final chunked coding, nothing else), answers
each with a small fixed response, and keeps the raw bytes so a test can compare them with what the proxy was
expected to forward. It can also answer with a scripted raw response, to test what the proxy does with bad
responses.
"""

import threading

from loopback_server import LoopbackServer


class CapturingUpstream(LoopbackServer):
    def __init__(self, response=b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"):
        self.response = response
        self.received = []  # raw bytes of each complete request, in arrival order
        self.lock = threading.Lock()
        super().__init__()

    def take(self):
        with self.lock:
            taken, self.received = self.received, []
        return taken

    def handle(self, connection):
        connection.settimeout(10)
        data = b""
        with connection:
            try:
                while True:
                    request, data = self._read_request(connection, data)
                    if request is None:
                        return
                    with self.lock:
                        self.received.append(request)
                    connection.sendall(self.response)
            except (OSError, ValueError):
                return

    @staticmethod
    def _recv_until(connection, data, predicate):
        while not predicate(data):
            chunk = connection.recv(65536)
            if not chunk:
                return None
            data += chunk
        return data

    def _read_request(self, connection, data):
        data = self._recv_until(connection, data, lambda d: b"\r\n\r\n" in d)
        if data is None:
            return None, b""
        end = data.index(b"\r\n\r\n") + 4
        head = data[:end]
        fields = [line.split(b":", 1) for line in head[:-4].split(b"\r\n")[1:]]
        names = {name.strip().lower(): value.strip() for name, value in fields}
        if b"transfer-encoding" in names:
            # Read chunks until the last one and the (empty) trailer section.
            position = end
            while True:
                data = self._recv_until(connection, data, lambda d: b"\r\n" in d[position:])
                line_end = data.index(b"\r\n", position)
                size = int(data[position:line_end].split(b";")[0], 16)
                position = line_end + 2
                if size == 0:
                    data = self._recv_until(connection, data, lambda d: b"\r\n\r\n" in d[position - 2:])
                    position = data.index(b"\r\n\r\n", position - 2) + 4
                    break
                data = self._recv_until(connection, data, lambda d: len(d) >= position + size + 2)
                position += size + 2
            return data[:position], data[position:]
        length = int(names.get(b"content-length", b"0"))
        data = self._recv_until(connection, data, lambda d: len(d) >= end + length)
        return data[:end + length], data[end + length:]
