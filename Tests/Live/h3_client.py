# SPDX-License-Identifier: Apache-2.0
"""An HTTP/3 client on aioquic (an implementation independent of ngtcp2/nghttp3) for test_http3_sessions.py.

    h3_client.py PORT CA.pem REQUESTS.json [CERT.pem:KEY.pem]
        runs the requests on one connection (with a client certificate, when given), concurrently, and prints one
        JSON object: {"results": [...]} in the order given

Each request: {"method", "path", "headers": [[name, value]...] (extra, after the pseudo-header fields),
"omit": [pseudo-header names to leave out], "body_size": N (a repeating pattern) or "body_hex", "trailers": [[name, value]...],
"after": index of a request that must finish first, "authority" (default "localhost"), "raw": true to get the
body back, "new_connection_id": true
to switch to another of the server's connection IDs first}. Each result: {"status",
"headers", "length", "sha256", "trailers", "reset": QUIC application error code or null, "raw": the body in hex
when asked, "connection_id": the server's connection ID the request was sent to, in hex, "retries": Retry
packets the connection answered, "closed": the connection closed before the answer}.

Runs under the venv Packaging/setup.sh --test makes (aioquic from PyPI)."""

import asyncio
import hashlib
import json
import ssl
import sys

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, StreamReset


def pattern(size):
    return bytes((i * 31 + (i >> 8)) & 0xFF for i in range(size))


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.streams = {}

    def quic_event_received(self, event):
        if isinstance(event, ConnectionTerminated):
            # The server closed the connection (a refused handshake, a drain): unanswered requests end here.
            for state in self.streams.values():
                if not state["done"].done():
                    state["closed"] = True
                    state["done"].set_result(None)
        if isinstance(event, StreamReset) and event.stream_id in self.streams:
            state = self.streams[event.stream_id]
            state["reset"] = event.error_code
            if not state["done"].done():
                state["done"].set_result(None)
        for h3_event in self.h3.handle_event(event):
            state = self.streams.get(getattr(h3_event, "stream_id", None))
            if state is None:
                continue
            if isinstance(h3_event, HeadersReceived):
                fields = [[k.decode(), v.decode()] for k, v in h3_event.headers]
                if state["headers"] is None:
                    state["headers"] = fields
                else:
                    state["trailers"] = fields
            elif isinstance(h3_event, DataReceived):
                state["body"].update(h3_event.data)
                state["length"] += len(h3_event.data)
                if state["raw"] is not None:
                    state["raw"] += h3_event.data
            if getattr(h3_event, "stream_ended", False) and not state["done"].done():
                state["done"].set_result(None)

    async def run(self, request):
        if request.get("new_connection_id"):
            self._quic.change_connection_id()
        stream_id = self._quic.get_next_available_stream_id()
        connection_id = self._quic._peer_cid.cid.hex()  # aioquic has no public accessor
        state = {"headers": None, "trailers": None, "body": hashlib.sha256(), "length": 0, "reset": None,
                 "raw": bytearray() if request.get("raw") else None,
                 "done": asyncio.get_running_loop().create_future()}
        self.streams[stream_id] = state
        pseudo = [(b":method", request.get("method", "GET")), (b":scheme", "https"),
                  (b":authority", request.get("authority", "localhost")),
                  (b":path", request.get("path", "/"))]
        headers = [(k, v.encode()) for k, v in pseudo if k.decode() not in request.get("omit", [])]
        headers += [(k.encode(), v.encode()) for k, v in request.get("headers", [])]
        body = bytes.fromhex(request["body_hex"]) if "body_hex" in request else pattern(request.get("body_size", 0))
        trailers = [(k.encode(), v.encode()) for k, v in request.get("trailers", [])]
        self.h3.send_headers(stream_id, headers, end_stream=not body and not trailers)
        if body:
            self.h3.send_data(stream_id, body, end_stream=not trailers)
        if trailers:
            self.h3.send_headers(stream_id, trailers, end_stream=True)
        self.transmit()
        await asyncio.wait_for(state["done"], timeout=30)
        headers = state["headers"] or []
        status = next((v for k, v in headers if k == ":status"), None)
        return {"status": status, "headers": headers, "length": state["length"],
                "sha256": state["body"].hexdigest(), "trailers": state["trailers"], "reset": state["reset"],
                "raw": state["raw"].hex() if state["raw"] is not None else None, "connection_id": connection_id,
                "retries": self._quic._retry_count, "closed": state.get("closed", False)}


async def main(port, ca, requests, certificate=None):
    configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name="localhost",
                                      verify_mode=ssl.CERT_REQUIRED)
    configuration.load_verify_locations(ca)
    if certificate:
        chain, key = certificate.split(":")
        configuration.load_cert_chain(chain, key)
    async with connect("127.0.0.1", port, configuration=configuration, create_protocol=Client) as client:
        tasks = []
        for request in requests:
            after = request.get("after")
            if after is not None:
                await tasks[after]
            tasks.append(asyncio.ensure_future(client.run(request)))
        return [await task for task in tasks]


if __name__ == "__main__":
    results = asyncio.run(main(int(sys.argv[1]), sys.argv[2], json.load(open(sys.argv[3])),
                               sys.argv[4] if len(sys.argv) > 4 else None))
    print(json.dumps({"results": results}))
