# SPDX-License-Identifier: Apache-2.0
"""Starts QUIC handshakes that never finish, for test_http3.py: each sends only the first datagram of a
ClientHello made to span two (long ALPN offers), so the server holds a connection that has no 1-RTT keys yet.

    h3_half_handshake.py PORT [COUNT]

Runs under the venv Packaging/setup.sh --test makes (aioquic from PyPI)."""

import socket
import sys
import time

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

port = int(sys.argv[1])
count = int(sys.argv[2]) if len(sys.argv) > 2 else 1
sent = 0
for _ in range(count):
    # h3 first, then offers long enough that the ClientHello needs a second Initial datagram.
    configuration = QuicConfiguration(
        is_client=True, alpn_protocols=["h3"] + [f"x-{n:02}-" + "a" * 200 for n in range(8)],
        server_name="localhost")
    connection = QuicConnection(configuration=configuration)
    connection.connect(("127.0.0.1", port), now=time.time())
    datagrams = connection.datagrams_to_send(now=time.time())
    assert len(datagrams) >= 2, "the ClientHello fit in one datagram"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(datagrams[0][0], ("127.0.0.1", port))
    sent += 1
print(sent)
