# SPDX-License-Identifier: Apache-2.0
"""A 0-RTT client on aioquic for test_http3_early_data.py.

    h3_early_data_client.py PORT CA.pem TAG [REPLAYS [HOLD]]

1. A first connection asks for GET /first-TAG/echo and keeps the session ticket the server sends.
2. A second connection resumes with that ticket and sends, before its handshake completes (0-RTT), GET
   /get-TAG/echo and POST /post-TAG/echo (a 2,000-byte body). It holds back everything it sends after the
   server's first answer (its Finished among it) for HOLD seconds, so the handshake cannot complete before: an
   answer that arrives meanwhile was forwarded early. Each result then says when it arrived, and the output when
   the held datagrams went ("released").
3. With REPLAYS > 0: once the second connection has closed and the server forgot it, its first flight (every
   datagram it sent before it heard from the server: the Initial with the ClientHello, and the 0-RTT packets) is
   sent again REPLAYS times, each time from a new UDP socket, as an attacker who captured it would.

Prints one JSON object: {"first": result, "resumed", "early_data_accepted", "results": [GET, POST], "replays":
[datagrams the server sent back to each replay]}; a result is {"status", "headers", "body"}.
Runs under the venv Packaging/setup.sh --test makes (aioquic from PyPI)."""

import asyncio
import json
import socket
import ssl
import sys
import time

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.streams = {}
        self.first_flight = []
        self.heard_from_server = False
        self.resumed = None
        self.early_data_accepted = None
        self.terminated = None
        self.handshake_completed = asyncio.Event()
        self.hold = 0.0
        self.held = []
        self.released = None

    def connection_made(self, transport):
        super().connection_made(transport)
        send = transport.sendto

        def release():
            self.released = time.monotonic()
            for held, held_address in self.held:
                send(held, held_address)
            self.held = []

        def recording_sendto(data, address=None):
            if not self.heard_from_server:
                self.first_flight.append(bytes(data))
            elif self.hold and self.released is None:
                if not self.held:
                    self._loop.call_later(self.hold, release)
                self.held.append((bytes(data), address))
                return
            send(data, address)

        transport.sendto = recording_sendto

    def datagram_received(self, data, address):
        self.heard_from_server = True
        super().datagram_received(data, address)

    def quic_event_received(self, event):
        if isinstance(event, HandshakeCompleted):
            self.handshake_completed.set()
            self.resumed = event.session_resumed
            self.early_data_accepted = event.early_data_accepted
        if isinstance(event, ConnectionTerminated):
            self.terminated = [event.error_code, event.frame_type, event.reason_phrase]
            for state in self.streams.values():
                if not state["done"].done():
                    state["done"].set_exception(ConnectionError(event.reason_phrase))
        for h3_event in self.h3.handle_event(event):
            state = self.streams.get(getattr(h3_event, "stream_id", None))
            if state is None:
                continue
            if isinstance(h3_event, HeadersReceived):
                state["headers"] += [[k.decode(), v.decode()] for k, v in h3_event.headers]
            elif isinstance(h3_event, DataReceived):
                state["body"] += h3_event.data
            if h3_event.stream_ended and not state["done"].done():
                state["done"].set_result(None)

    def request(self, method, path, body=b""):
        stream = self._quic.get_next_available_stream_id()
        self.h3.send_headers(stream, [(b":method", method.encode()), (b":scheme", b"https"),
                                      (b":authority", b"localhost"), (b":path", path.encode())],
                             end_stream=not body)
        if body:
            self.h3.send_data(stream, body, end_stream=True)
        state = {"headers": [], "body": b"", "done": self._loop.create_future()}
        self.streams[stream] = state
        self.transmit()
        return state

    @staticmethod
    async def result(state):
        await asyncio.wait_for(state["done"], 20)
        status = next(int(v) for k, v in state["headers"] if k == ":status")
        return {"status": status, "headers": state["headers"], "body": state["body"].decode(errors="replace"),
                "at": time.monotonic()}


def configuration(ca, ticket=None):
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name="localhost")
    config.load_verify_locations(ca)
    config.session_ticket = ticket
    return config


async def main(port, ca, tag, replays, hold):
    tickets = []
    ticket_arrived = asyncio.Event()

    def keep(ticket):
        tickets.append(ticket)
        ticket_arrived.set()

    async with connect("127.0.0.1", port, configuration=configuration(ca), create_protocol=Client,
                       session_ticket_handler=keep) as client:
        first = await Client.result(client.request("GET", f"/first-{tag}/echo"))
        await asyncio.wait_for(ticket_arrived.wait(), 10)
    async with connect("127.0.0.1", port, configuration=configuration(ca, tickets[-1]), create_protocol=Client,
                       session_ticket_handler=keep, wait_connected=False) as client:
        client.hold = hold
        # Queued before anything is sent: the first transmit carries the Initial and these in 0-RTT packets.
        states = [client.request("GET", f"/get-{tag}/echo"),
                  client.request("POST", f"/post-{tag}/echo", b"x" * 2000)]
        results = [await Client.result(state) for state in states]
        # (Not wait_connected: aioquic 1.x waits forever when the handshake completed before it is called.)
        await asyncio.wait_for(client.handshake_completed.wait(), 10)
        flight = client.first_flight
        output = {"first": first, "resumed": client.resumed, "early_data_accepted": client.early_data_accepted,
                  "results": results, "first_flight": len(flight), "released": client.released}
    answers = []
    if replays:
        # The server keeps a closed connection's IDs for three PTOs (RFC 9000 §10.2): the copies must not reach it.
        await asyncio.sleep(1.5)
        sockets = []
        for _ in range(replays):
            replayer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            replayer.bind(("127.0.0.1", 0))
            replayer.setblocking(False)
            for datagram in flight:
                replayer.sendto(datagram, ("127.0.0.1", port))
            sockets.append(replayer)
        await asyncio.sleep(1.5)
        for replayer in sockets:
            count = 0
            while True:
                try:
                    replayer.recv(65536)
                    count += 1
                except BlockingIOError:
                    break
            answers.append(count)
            replayer.close()
    output["replays"] = answers
    print(json.dumps(output))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 0,
                     float(sys.argv[5]) if len(sys.argv) > 5 else 0.0))
