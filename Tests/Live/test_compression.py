# SPDX-License-Identifier: Apache-2.0
"""Response compression (issue 21): a route's `compression = { ... }` codes responses as the client accepts (br, zstd,
gzip, deflate), over HTTP/1.1 and HTTP/2, and real decoders (curl --compressed, Python's gzip/zlib, brotli and
zstandard) read every coding back byte-exact; responses that must not be coded are not; a large streamed response
passes in bounded memory."""

import gzip
import hashlib
import subprocess
import threading
import time
import zlib

import pytest

from conftest import Jester

PROTOCOLS = ["http1", "h2c"]
TEXT = "/download?size=200000&type=text/html&text=1"


@pytest.fixture(scope="module")
def coding(upstream):
    instance = Jester(f"""
[upstreams.app]
targets = ["{upstream.address}"]

[[routes]]
name = "coded"
path_prefix = "/coded/"
upstream = "app"
compression = {{ algorithms = ["br", "zstd", "gzip", "deflate"], min_size = "1KiB" }}

[[routes]]
name = "fast"
path_prefix = "/fast/"
upstream = "app"
compression = {{ algorithms = ["gzip"], level = 1 }}

[[routes]]
name = "plain"
path_prefix = "/"
upstream = "app"
""")
    yield instance
    instance.stop()


def fetch(jester, path, protocol, headers=(), method=None, compressed=False):
    """One request with curl: the status, the response fields (lowercase names, every value) and the raw body."""
    args = ["curl", "-sS", "--max-time", "60", "--http2-prior-knowledge" if protocol == "h2c" else "--http1.1"]
    # A HEAD's head once (-I prints it); any other answer's head, then its body.
    args += ["-I"] if method == "HEAD" else ["-D", "-", "-o", "-"]
    if compressed:
        args.append("--compressed")
    for header in headers:
        args += ["-H", header]
    result = subprocess.run(args + [jester.url + path], capture_output=True, timeout=90)
    assert result.returncode == 0, result.stderr.decode()
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields.setdefault(name.strip().lower(), []).append(value.strip())
    return int(lines[0].split()[1]), fields, body


def decode(name, data):
    """`data` decoded by the coding's reference decoder (Debian's python3-brotli and python3-zstandard, run under
    the system Python when the test's own Python lacks them)."""
    if name == "gzip":
        return gzip.decompress(data)
    if name == "deflate":
        return zlib.decompress(data)
    module = {"br": "brotli", "zstd": "zstandard"}[name]
    call = {"br": "brotli.decompress(data)",
            "zstd": "zstandard.ZstdDecompressor().decompressobj().decompress(data)"}[name]
    try:
        namespace = {"data": data, module: __import__(module)}
        return eval(call, namespace)
    except ImportError:
        script = f"import sys, {module}; data = sys.stdin.buffer.read(); sys.stdout.buffer.write({call})"
        return subprocess.run(["/usr/bin/python3", "-c", script], input=data, capture_output=True,
                              check=True).stdout


@pytest.fixture(scope="module")
def identity(coding):
    status, fields, body = fetch(coding, "/plain" + TEXT, "http1")
    assert status == 200 and "content-encoding" not in fields
    return body


@pytest.mark.parametrize("name", ["br", "zstd", "gzip", "deflate"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_each_coding_reads_back_byte_exact(coding, identity, protocol, name):
    status, fields, body = fetch(coding, "/coded" + TEXT, protocol, [f"Accept-Encoding: {name}"])
    assert status == 200
    assert fields["content-encoding"] == [name]
    assert "content-length" not in fields
    assert fields["vary"] == ["Accept-Encoding"]
    assert len(body) < len(identity) // 4
    assert decode(name, body) == identity


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_clients_preference_and_refusals_are_honoured(coding, protocol):
    for accept, expected in [("gzip;q=0.5, zstd;q=0.9", "zstd"), ("br;q=0, gzip", "gzip"),
                             ("*;q=0.1, br;q=0", "zstd"), ("identity", None), ("GZIP", "gzip")]:
        _, fields, _ = fetch(coding, "/coded" + TEXT, protocol, [f"Accept-Encoding: {accept}"])
        assert fields.get("content-encoding", [None]) == [expected], accept
        assert fields["vary"] == ["Accept-Encoding"], accept


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_curl_compressed_reads_a_chunked_upstream_response(coding, identity, protocol):
    status, fields, body = fetch(coding, "/coded" + TEXT + "&chunked=1", protocol, compressed=True)
    assert status == 200 and fields["content-encoding"][0] in ("br", "gzip", "deflate", "zstd")
    assert body == identity


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_what_must_not_be_coded_is_not(coding, protocol):
    accept = ["Accept-Encoding: gzip, br"]
    cases = [
        ("/coded/download?size=200000&type=application/octet-stream", "a type outside the list"),
        ("/coded/download?size=500&type=text/html&text=1", "under min_size"),
        ("/coded" + TEXT + "&content-encoding=gzip", "already coded"),
        ("/coded" + TEXT + "&cache-control=no-transform", "no-transform"),
    ]
    for path, why in cases:
        _, fields, _ = fetch(coding, path, protocol, accept)
        assert fields.get("content-encoding", [None]) in ([None], ["gzip"]), why
        if "already" not in why:
            assert "content-encoding" not in fields, why
            assert fields.get("content-length") is not None, why
    # No Accept-Encoding: the identity, but still Vary (a cache must keep the variants apart).
    _, fields, _ = fetch(coding, "/coded" + TEXT, protocol)
    assert "content-encoding" not in fields and fields["vary"] == ["Accept-Encoding"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_strong_etag_is_weakened_and_vary_merged(coding, protocol):
    _, fields, _ = fetch(coding, "/coded" + TEXT + '&etag="v1"&vary=Origin', protocol, ["Accept-Encoding: gzip"])
    assert fields["etag"] == ['W/"v1"']
    assert [v.replace(" ", "").lower() for v in fields["vary"]] == ["origin,accept-encoding"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_head_request_gets_the_fields_a_get_would_and_no_body(coding, protocol):
    status, fields, _ = fetch(coding, "/coded" + TEXT, protocol, ["Accept-Encoding: gzip"], method="HEAD")
    assert status == 200
    assert fields["content-encoding"] == ["gzip"] and fields["vary"] == ["Accept-Encoding"]
    assert "content-length" not in fields


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_large_response_is_coded_with_the_workers_memory_flat(coding, protocol):
    """1 GiB through gzip at level 1: streamed piece by piece, the worker's RSS stays flat (bounded by the
    encoder's window and a few buffers, never the body)."""
    size = 1 << 30
    worker = coding.worker_pids()[0]
    before = rss_kib(worker)
    peak = [before]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(worker))
            time.sleep(0.05)
    watcher = threading.Thread(target=watch)
    watcher.start()
    args = ["curl", "-sS", "--max-time", "120", "-o", "-", "-H", "Accept-Encoding: gzip",
            "--http2-prior-knowledge" if protocol == "h2c" else "--http1.1",
            coding.url + f"/fast/download?size={size}&type=text/plain"]
    try:
        process = subprocess.Popen(args, stdout=subprocess.PIPE)
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        total = 0
        while chunk := process.stdout.read(1 << 20):
            total += len(decoder.decompress(chunk))
        total += len(decoder.flush())
        assert process.wait(timeout=30) == 0
    finally:
        done.set()
        watcher.join()
    assert total == size
    assert peak[0] - before < 32 * 1024, f"worker RSS grew {peak[0] - before} KiB"


# Request bodies sent coded, decoded for the upstream (`decompress_requests`), with a decoded-size limit.

@pytest.fixture(scope="module")
def decoding(upstream):
    instance = Jester(f"""
[upstreams.app]
targets = ["{upstream.address}"]

[[routes]]
name = "decoded"
path_prefix = "/"
upstream = "app"
compression = {{ decompress_requests = true, max_decompressed_size = "64KiB" }}
""")
    yield instance
    instance.stop()


def post(jester, path, body, protocol, encoding):
    args = ["curl", "-sS", "--max-time", "30", "--http2-prior-knowledge" if protocol == "h2c" else "--http1.1",
            "-o", "-", "-w", "\n%{http_code}", "--data-binary", "@-", "-H", "Content-Type: application/json"]
    if encoding:
        args += ["-H", f"Content-Encoding: {encoding}"]
    result = subprocess.run(args + [jester.url + path], input=body, capture_output=True, timeout=40)
    out, _, code = result.stdout.rpartition(b"\n")
    return int(code or 0), out


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_coded_request_bodies_reach_the_upstream_decoded(decoding, protocol):
    import json
    plain = b'{"message": "' + b"hello " * 5000 + b'"}'
    for encoding, coded in (("gzip", gzip.compress(plain)), ("deflate", zlib.compress(plain))):
        status, out = post(decoding, "/upload", coded, protocol, encoding)
        assert status == 200, out
        answer = json.loads(out)
        assert answer["length"] == len(plain) and answer["sha256"] == hashlib.sha256(plain).hexdigest()
        status, out = post(decoding, "/echo", coded, protocol, encoding)
        headers = {name.lower(): value for name, value in json.loads(out)["headers"]}
        assert "content-encoding" not in headers and json.loads(out)["body_length"] == len(plain)
    # A body sent plain passes as it is.
    status, out = post(decoding, "/upload", plain, protocol, None)
    assert status == 200 and json.loads(out)["length"] == len(plain)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_decompression_bomb_gets_413_and_bad_codings_400_or_415(decoding, upstream, protocol):
    bomb = gzip.compress(b"\0" * (8 << 20))  # 8 MiB of zeros in about 8 KiB
    status, _ = post(decoding, "/upload", bomb, protocol, "gzip")
    assert status == 413
    status, _ = post(decoding, "/upload", b"this is not gzip at all" * 10, protocol, "gzip")
    assert status == 400
    result = subprocess.run(
        ["curl", "-sS", "-D", "-", "-o", "/dev/null", "--http2-prior-knowledge" if protocol == "h2c" else "--http1.1",
         "--data-binary", "abc", "-H", "Content-Encoding: compress", decoding.url + "/upload"],
        capture_output=True, text=True, timeout=30)
    assert result.stdout.split()[1] == "415"
    assert "accept-encoding: gzip, deflate, br, zstd" in result.stdout.lower(), result.stdout
    # The worker serves on.
    status, _ = post(decoding, "/upload", b"{}", protocol, None)
    assert status == 200
