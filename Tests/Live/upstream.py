# SPDX-License-Identifier: Apache-2.0
"""A real HTTP/1.1 upstream server for Jester's live tests.

Endpoints (any path prefix is accepted so routes can mount it anywhere; the last path segment picks the
behaviour):
  /echo             JSON of method, path, headers, body length, and the client port (to see connection reuse)
  /upload           reads the body (Content-Length or chunked) and returns its length and SHA-256
  /download?size=N  N bytes with Content-Length, streamed (type=, text=1, chunked=1, etag=, vary=, ...)
  /chunked          a chunked response
  /slow?delay=S     answers after S seconds
  /stall?delay=S    sends half of a 2 KiB body, pauses S seconds, then sends the rest
  /ws               WebSocket echo (RFC 6455, text and binary frames)
Every request is appended to the in-memory log returned by GET /__requests (used to prove that malformed
requests never reach the upstream). /echo answers include the server's port, so balancing tests see which
target answered. `upstream.py PORT --status N` answers every request with status N (a failing target);
`--close` closes every connection without an answer. `--tls CERT KEY` serves HTTPS (`--client-ca CA` then
requires a client certificate); /echo then also says whether the TLS session was resumed and who the client is.
`--host 127.0.0.N` listens on another loopback address.
"""

import base64
import hashlib
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

REQUESTS = []
LOCK = threading.Lock()
FORCED_STATUS = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A response goes out in two writes (head, then body): without TCP_NODELAY the body waits for Jester's delayed
    # ACK of the head, 40 ms a request, which made the balancing scenarios spend most of their time waiting.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def read_body(self, consume):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                remaining = size
                while remaining:
                    data = self.rfile.read(min(remaining, 1 << 16))
                    consume(data)
                    remaining -= len(data)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length", "0") or "0")
        while length:
            data = self.rfile.read(min(length, 1 << 16))
            if not data:
                return
            consume(data)
            length -= len(data)

    def send_json(self, status, value):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        last = url.path.rstrip("/").rsplit("/", 1)[-1]
        if url.path == "/__requests":
            with LOCK:
                return self.send_json(200, REQUESTS)
        with LOCK:
            REQUESTS.append({"method": self.command, "path": self.path})
        if last == "ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            return self.websocket()
        digest = hashlib.sha256()
        total = [0]

        def consume(data):
            digest.update(data)
            total[0] += len(data)

        self.read_body(consume)
        if FORCED_STATUS == -1:  # --close: drop the connection without an answer
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if FORCED_STATUS:
            return self.send_json(FORCED_STATUS, {"server_port": self.server.server_address[1]})
        if last == "upload":
            return self.send_json(200, {"length": total[0], "sha256": digest.hexdigest()})
        if last == "download":
            size = int(query.get("size", ["0"])[0])
            self.send_response(200)
            self.send_header("Content-Type", query.get("type", ["application/octet-stream"])[0])
            for name in ("etag", "vary", "cache-control", "content-encoding", "access-control-allow-origin"):
                if name in query:
                    self.send_header(name.title(), query[name][0])
            chunked = query.get("chunked", ["0"])[0] == "1"
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(size))
            self.end_headers()
            # text=1: lines that compress like a real page, not one repeated byte.
            if query.get("text", ["0"])[0] == "1":
                block = b"".join(b"line %06d of the download, some words to code\n" % i for i in range(1400))
            else:
                block = b"x" * (1 << 16)
            while size:
                n = min(size, len(block))
                if chunked:
                    self.wfile.write(b"%x\r\n" % n + block[:n] + b"\r\n")
                else:
                    self.wfile.write(block[:n])
                size -= n
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            return
        if last == "stall":
            delay = float(query.get("delay", ["1"])[0])
            self.send_response(200)
            self.send_header("Content-Length", "2048")
            self.end_headers()
            self.wfile.write(b"a" * 1024)
            self.wfile.flush()
            time.sleep(delay)
            self.wfile.write(b"b" * 1024)
            return
        if last == "chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world\n"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        if last == "slow":
            time.sleep(float(query.get("delay", ["1"])[0]))
        self.send_json(200, {
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_length": total[0],
            "client_port": self.client_address[1],
            "server_port": self.server.server_address[1],
            "server_address": self.server.server_address[0],
            **self.tls_facts(),
        })

    def tls_facts(self):
        if not hasattr(self.connection, "session_reused"):
            return {}
        peer = self.connection.getpeercert() or {}
        subject = ",".join(f"{k}={v}" for part in peer.get("subject", ()) for k, v in part)
        return {"tls_version": self.connection.version(), "tls_resumed": self.connection.session_reused,
                "tls_client": subject or None}

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = handle_any

    def do_HEAD(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        self.send_response(200)
        if url.path.rstrip("/").split("/")[-1] == "download":
            # The fields the GET would get, without the body.
            self.send_header("Content-Type", query.get("type", ["application/octet-stream"])[0])
            self.send_header("Content-Length", query.get("size", ["0"])[0])
        else:
            self.send_header("Content-Length", "42")
        self.end_headers()

    def websocket(self):
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept.decode())
        self.end_headers()
        self.wfile.flush()
        while True:
            header = self.rfile.read(2)
            if len(header) < 2:
                return
            opcode = header[0] & 0x0F
            length = header[1] & 0x7F
            if length == 126:
                length = int.from_bytes(self.rfile.read(2), "big")
            elif length == 127:
                length = int.from_bytes(self.rfile.read(8), "big")
            mask = self.rfile.read(4) if header[1] & 0x80 else b"\0\0\0\0"
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
            if opcode == 8:
                self.wfile.write(b"\x88\x00")
                return
            frame = bytes([0x80 | opcode])
            frame += bytes([len(payload)]) if len(payload) < 126 else bytes([126]) + len(payload).to_bytes(2, "big")
            self.wfile.write(frame + payload)
            self.wfile.flush()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's backlog of 5 drops the SYNs of a burst of new connections (an HTTP/2 client's concurrent
    # streams each open one), and each dropped SYN costs a second's retransmission.
    request_queue_size = 256


if __name__ == "__main__":
    port = int(sys.argv[1])
    if "--status" in sys.argv:
        FORCED_STATUS = int(sys.argv[sys.argv.index("--status") + 1])
    if "--close" in sys.argv:
        FORCED_STATUS = -1
    host = sys.argv[sys.argv.index("--host") + 1] if "--host" in sys.argv else "127.0.0.1"
    server = Server((host, port), Handler)
    if "--tls" in sys.argv:
        import ssl
        index = sys.argv.index("--tls")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[index + 1], sys.argv[index + 2])
        if "--client-ca" in sys.argv:
            context.load_verify_locations(sys.argv[sys.argv.index("--client-ca") + 1])
            context.verify_mode = ssl.CERT_REQUIRED
        # The handshake runs in the accepting thread; a client that fails it is dropped (an OSError there is
        # ignored by socketserver).
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()
