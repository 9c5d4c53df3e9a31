# SPDX-License-Identifier: Apache-2.0
"""HTTP/3 sessions (issue 23, part one) against an independent client: aioquic (its own QUIC, TLS and QPACK)
talks over real UDP on loopback to jester-h3-probe, a tiny server on JesterHTTP3's QUICServerEndpoint,
QUICConnection and HTTP3Session. Large bodies both ways (beyond every flow-control window, so both sides' limits
are respected or the transfer stalls), trailers both ways, many concurrent streams, a malformed request reset
with H3_MESSAGE_ERROR while its connection serves on, and forced address validation through Retry.

The worker's HTTP/3 listener is part two; these tests hold the wrappers to a second implementation meanwhile.
aioquic runs under the venv Packaging/setup.sh --test makes. (Debian 12's h2load is not linked with ngtcp2 or
nghttp3, so it cannot load an HTTP/3 server here.)"""

import hashlib
import json
import subprocess

import pytest

from conftest import BIN
from test_http3 import AIOQUIC_PYTHON, TLS, h3

PROBE = str(BIN / "jester-h3-probe")
H3_MESSAGE_ERROR = 0x10E


def pattern_sha256(size):
    """The digest of h3_client.py's request pattern."""
    return hashlib.sha256(bytes((i * 31 + (i >> 8)) & 0xFF for i in range(size))).hexdigest()


def probe_sha256(size):
    """The digest of the probe's /size/N body."""
    return hashlib.sha256(bytes(i % 251 for i in range(size))).hexdigest()


class Probe:
    def __init__(self, *flags):
        if not AIOQUIC_PYTHON.exists():
            pytest.fail(f"{AIOQUIC_PYTHON} is missing: run Packaging/setup.sh --test (it installs aioquic)")
        self.process = subprocess.Popen([PROBE, str(TLS / "alpha.pem"), str(TLS / "alpha.key"), *flags],
                                        stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline().split()
        assert line[:1] == ["PORT"], line
        self.port = int(line[1])

    def run(self, requests, timeout=60):
        """Runs the requests on one new aioquic connection; returns their results in order."""
        return h3(self.port, requests, timeout)

    def stats(self):
        """The probe's counters (GET /stats, on a connection of its own)."""
        result = self.run([{"path": "/stats", "raw": True}])[0]
        assert result["status"] == "200"
        return json.loads(bytes.fromhex(result["raw"]))

    def stop(self):
        self.process.kill()
        self.process.wait()


@pytest.fixture(scope="module")
def probe():
    server = Probe()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def exchanged(probe):
    """One connection: a 3 MB download, a 2 MB upload echoed with trailers, a malformed request, then a request
    that may start only after the malformed one was reset."""
    return probe.run([
        {"path": "/size/3000000"},
        {"method": "POST", "path": "/echo", "body_size": 2_000_000, "trailers": [["x-checksum", "abc"]]},
        {"omit": [":path"]},
        {"path": "/size/10", "after": 2},
    ])


def test_a_large_response_body_and_its_trailers_arrive_whole(exchanged):
    download = exchanged[0]
    assert download["status"] == "200"
    assert download["length"] == 3_000_000
    assert download["sha256"] == probe_sha256(3_000_000)
    assert download["trailers"] == [["x-served", "jester-h3-probe"]]


def test_a_large_request_body_and_its_trailers_arrive_whole(exchanged):
    # The server's windows are 256 KiB per stream and 1 MiB per connection: 2 MB pass only as it consumes.
    echo = exchanged[1]
    assert echo["status"] == "200"
    assert echo["length"] == 2_000_000
    assert echo["sha256"] == pattern_sha256(2_000_000)
    assert echo["trailers"] == [["x-echo-length", "2000000"], ["x-echo-trailer", "abc"]]


def test_a_malformed_request_is_reset_and_the_connection_serves_on(exchanged):
    malformed, after = exchanged[2], exchanged[3]
    assert malformed["reset"] == H3_MESSAGE_ERROR
    assert malformed["status"] is None
    assert after["status"] == "200"
    assert after["length"] == 10


def test_many_concurrent_streams_on_one_connection(probe):
    results = probe.run([{"path": f"/size/{1000 + i}"} for i in range(60)] + [{"path": "/missing"}])
    for i, result in enumerate(results[:-1]):
        assert (result["status"], result["length"], result["reset"]) == ("200", 1000 + i, None)
    assert results[-1]["status"] == "404"


def test_requests_go_on_after_the_client_switches_connection_id(probe):
    # aioquic moves to another of the IDs the server issued (from its factory): the server must route by each.
    results = probe.run([{"path": "/size/100"}, {"path": "/size/200", "after": 0, "new_connection_id": True},
                         {"path": "/size/300", "after": 1, "new_connection_id": True}])
    assert [(r["status"], r["length"]) for r in results] == [("200", 100), ("200", 200), ("200", 300)]
    assert len({r["connection_id"] for r in results}) == 3


def test_retry_is_sent_only_when_address_validation_is_required(probe):
    assert probe.stats()["retries"] == 0
    forced = Probe("--retry")
    try:
        result = forced.run([{"path": "/size/100"}])[0]
        assert (result["status"], result["length"]) == ("200", 100)
        # Two connections (this one and the stats request's), each validated through one Retry.
        assert forced.stats() == {"connections": 2, "retries": 2}
    finally:
        forced.stop()
