# SPDX-License-Identifier: Apache-2.0
"""HTTP/3 clients on aioquic for test_http3_steering.py: connections whose address changes, and load across a
reload or an upgrade.

    h3_steering_client.py rebind PORT CA.pem CONNECTIONS
        Opens CONNECTIONS connections, each through a UDP relay of its own that stands for a NAT: one request,
        then the relay's outside port changes (NAT rebinding: the server sees the same connection from a new
        address), then two more requests. Prints {"connections": [{"ports": [before, after], "statuses": [...]}]}.

    h3_steering_client.py load PORT CA.pem STOPFILE PATH
        Until STOPFILE exists (60 s at most): four long-lived connections send PATH one request after another (when the server closes one,
        a request it did not process is sent again on a new connection, as clients do after GOAWAY), and every
        0.1 s a new connection sends one request and closes. Every request and handshake has 5 s. Prints
        {"requests": [{"kind": "long" | "new", "start": wall-clock time the request (for "new", its connection)
        began, "status", "body", "error", "retried"}]}.

Runs under the venv Packaging/setup.sh --test makes (aioquic from PyPI)."""

import asyncio
import json
import os
import ssl
import sys
import time

from aioquic.asyncio import connect
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration

import h3_client

REQUEST_TIMEOUT = 5.0
# H3_REQUEST_REJECTED: the server did not process the request (a stream above its GOAWAY); safe to retry.
REQUEST_REJECTED = 0x10B


# h3_client's client ends its requests when the connection closes (aioquic ignores GOAWAY, so a request can go
# out on a connection the server is closing: unanswered, never processed, safe to retry).
Client = h3_client.Client


def configuration(ca):
    result = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name="localhost",
                               verify_mode=ssl.CERT_REQUIRED)
    result.load_verify_locations(ca)
    return result


class Relay:
    """A NAT between one client and the server: the client talks to `port`; the server sees the relay's
    outside socket, which `rebind` replaces (the old mapping is gone, as when a NAT times it out)."""

    class Side(asyncio.DatagramProtocol):
        def __init__(self, deliver):
            self.deliver = deliver

        def datagram_received(self, data, address):
            self.deliver(data, address)

    def __init__(self, server_port):
        self.server = ("127.0.0.1", server_port)
        self.client = None
        self.inside = None
        self.outside = None

    async def start(self):
        loop = asyncio.get_running_loop()
        self.inside, _ = await loop.create_datagram_endpoint(
            lambda: Relay.Side(self.from_client), local_addr=("127.0.0.1", 0))
        await self.rebind()

    async def rebind(self):
        loop = asyncio.get_running_loop()
        old = self.outside
        self.outside, _ = await loop.create_datagram_endpoint(
            lambda: Relay.Side(self.from_server), local_addr=("127.0.0.1", 0))
        if old is not None:
            old.close()

    def from_client(self, data, address):
        self.client = address
        self.outside.sendto(data, self.server)

    def from_server(self, data, _address):
        if self.client is not None:
            self.inside.sendto(data, self.client)

    @property
    def port(self):
        return self.inside.get_extra_info("sockname")[1]

    @property
    def outside_port(self):
        return self.outside.get_extra_info("sockname")[1]

    def close(self):
        self.inside.close()
        self.outside.close()


async def rebinding_connection(port, ca, index):
    relay = Relay(port)
    await relay.start()
    ports, statuses = [relay.outside_port], []
    try:
        async with connect("127.0.0.1", relay.port, configuration=configuration(ca), create_protocol=Client) as client:
            statuses.append((await client.run({"path": f"/echo?connection={index}&step=0"}))["status"])
            await relay.rebind()
            ports.append(relay.outside_port)
            for step in (1, 2):
                try:
                    result = await asyncio.wait_for(
                        client.run({"path": f"/echo?connection={index}&step={step}"}), REQUEST_TIMEOUT)
                    statuses.append(result["status"])
                except asyncio.TimeoutError:
                    statuses.append("timeout")
    finally:
        relay.close()
    return {"ports": ports, "statuses": statuses}


async def rebind(port, ca, count):
    return {"connections": await asyncio.gather(*(rebinding_connection(port, ca, i) for i in range(count)))}


async def load(port, ca, stop_file, path):
    records = []
    give_up = time.monotonic() + 60

    def running():
        return not os.path.exists(stop_file) and time.monotonic() < give_up

    async def request(client, kind, start=None):
        """One request; None when it was not processed (rejected, or the connection closed first)."""
        start = start or time.time()
        try:
            result = await asyncio.wait_for(client.run({"path": path, "raw": True}), REQUEST_TIMEOUT)
        except Exception as error:  # a timeout is a hang: a failure
            records.append({"kind": kind, "start": start, "status": None, "error": f"{type(error).__name__}"})
            return "failed"
        if result["status"] is None and (result["reset"] == REQUEST_REJECTED or result.get("closed")):
            records.append({"kind": kind, "start": start, "status": None, "retried": True, "error": None})
            return None
        records.append({"kind": kind, "start": start, "status": result["status"], "reset": result["reset"],
                        "body": bytes.fromhex(result["raw"]).decode(errors="replace") if result["raw"] else "",
                        "error": None if result["status"] == "200" else "status"})
        return "done"

    async def long_lived():
        """Requests one after another; when the server closes the connection (a drain), a new one."""
        while running():
            async with connect("127.0.0.1", port, configuration=configuration(ca), create_protocol=Client) as client:
                while running():
                    if await request(client, "long") is None:
                        break  # not processed: again on a new connection, as a client does after GOAWAY
                    await asyncio.sleep(0.02)

    async def new_connection():
        start = time.time()
        async with connect("127.0.0.1", port, configuration=configuration(ca), create_protocol=Client) as client:
            await request(client, "new", start)

    async def new_connections():
        tasks = []
        while running():
            tasks.append(asyncio.ensure_future(asyncio.wait_for(new_connection(), REQUEST_TIMEOUT + 5)))
            await asyncio.sleep(0.1)
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, BaseException):
                records.append({"kind": "new", "start": None, "status": None,
                                "error": f"handshake or hang: {type(result).__name__}"})

    await asyncio.gather(*(long_lived() for _ in range(4)), new_connections())
    return {"requests": records}


if __name__ == "__main__":
    mode, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode == "rebind":
        output = asyncio.run(rebind(port, ca, int(sys.argv[4])))
    else:
        output = asyncio.run(load(port, ca, sys.argv[4], sys.argv[5]))
    print(json.dumps(output))
