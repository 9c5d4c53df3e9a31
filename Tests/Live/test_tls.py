# SPDX-License-Identifier: Apache-2.0
"""Live TLS tests: real jester workers terminating TLS (OpenSSL), real clients (curl, openssl s_client, Python's
ssl), a real upstream. Certificates are the test fixtures in Tests/Fixtures/tls (a test CA; see make.sh)."""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import SteadyLoad, curl, raw_request, wait_for

FIXTURES = Path(__file__).resolve().parents[1] / "Fixtures" / "tls"
CA = str(FIXTURES / "ca.pem")
REQUEST = b"GET / HTTP/1.1\r\nHost: alpha.test\r\nConnection: close\r\n\r\n"
# Request behaviours over TLS run over HTTP/1.1 and HTTP/2 (chosen by ALPN; curl offers h2 by default).
ALPN = {"http1": "--http1.1", "h2": "--http2"}


def install_keys(directory, **files):
    """Copies fixtures into a root-only directory (mode 0700): workers, which run unprivileged, cannot read it."""
    keys = Path(directory) / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    for name, fixture in files.items():
        shutil.copyfile(FIXTURES / fixture, keys / name)
        os.chmod(keys / name, 0o600)
    return keys


def tls_config(keys, extra="", certificates=(("site.pem", "site.key"),), routes=None):
    body = "\n[listeners.tls]\n" + extra + "\n"
    for cert, key in certificates:
        body += f'\n[[listeners.tls.certificates]]\ncert = "{keys / cert}"\nkey = "{keys / key}"\n'
    return body + (routes or '\n[[routes]]\nname = "hello"\nrespond = { status = 200, body = "serving\\n" }\n')


def s_client(port, *args, request=REQUEST):
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-ign_eof", *args],
        input=request, capture_output=True, timeout=15)
    return result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")


def served_fingerprint(port, server_name="alpha.test"):
    text = s_client(port, "-servername", server_name, "-showcerts")
    pem = text[text.index("-----BEGIN CERTIFICATE-----"):text.index("-----END CERTIFICATE-----") + 25]
    result = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256"], input=pem.encode(),
                            capture_output=True, check=True)
    return result.stdout.decode().strip()


def fixture_fingerprint(name):
    result = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(FIXTURES / name)],
                            capture_output=True, check=True)
    return result.stdout.decode().strip()


@pytest.fixture
def keys(tmp_path):
    os.chmod(tmp_path, 0o755)
    return install_keys(tmp_path, **{"site.pem": "alpha.pem", "site.key": "alpha.key",
                                     "beta.pem": "wildcard.pem", "beta.key": "wildcard.key"})


def test_serves_https_with_keys_workers_cannot_read(make_jester, keys):
    jester = make_jester(tls_config(keys))
    code, body, error = curl("--cacert", CA, f"https://127.0.0.1:{jester.port}/")
    assert (code, body) == (200, b"serving\n"), error
    # The workers run as an unprivileged user and the key directory is root-only: the master read the key.
    for pid in jester.worker_pids():
        uid = int(next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                       if line.startswith("Uid:")).split()[1])
        assert uid != 0
    assert oct(keys.stat().st_mode & 0o777) == "0o700"


def test_sni_selects_exact_wildcard_and_default(make_jester, keys):
    jester = make_jester(tls_config(keys, certificates=(("site.pem", "site.key"), ("beta.pem", "beta.key"))))
    alpha, beta = fixture_fingerprint("alpha.pem"), fixture_fingerprint("wildcard.pem")
    assert served_fingerprint(jester.port, "alpha.test") == alpha
    assert served_fingerprint(jester.port, "api.beta.test") == beta
    assert served_fingerprint(jester.port, "unknown.test") == alpha  # the first certificate is the default
    code, body, error = curl("--cacert", CA, "--resolve", f"api.beta.test:{jester.port}:127.0.0.1",
                             f"https://api.beta.test:{jester.port}/")
    assert code == 200, error


def test_versions_ciphers_and_alpn(make_jester, keys):
    jester = make_jester(tls_config(keys))
    text = s_client(jester.port, "-servername", "alpha.test", "-alpn", "h2,http/1.1")
    assert "TLSv1.3" in text and "ALPN protocol: h2" in text
    assert "ALPN protocol: http/1.1" in s_client(jester.port, "-servername", "alpha.test", "-alpn", "http/1.1")
    text = s_client(jester.port, "-tls1_2", "-servername", "alpha.test")
    assert "Cipher is ECDHE-ECDSA-AES128-GCM-SHA256" in text  # forward secret, AEAD, server preference
    for old in ("-tls1", "-tls1_1"):
        text = s_client(jester.port, old, "-cipher", "DEFAULT@SECLEVEL=0")
        assert "Cipher is (NONE)" in text or "alert" in text.lower() or "no protocols available" in text
    # A CBC cipher is not offered.
    text = s_client(jester.port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA")
    assert "Cipher is (NONE)" in text or "handshake failure" in text


def test_min_version_13_refuses_12(make_jester, keys):
    jester = make_jester(tls_config(keys, extra='min_version = "1.3"'))
    code, _, _ = curl("--cacert", CA, "--tls-max", "1.2", f"https://127.0.0.1:{jester.port}/")
    assert code == 0
    code, _, error = curl("--cacert", CA, "--tlsv1.3", f"https://127.0.0.1:{jester.port}/")
    assert code == 200, error


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_sessions_resume_on_every_worker_and_after_a_reload(make_jester, keys, tmp_path, version):
    jester = make_jester(tls_config(keys), workers=2)
    session = tmp_path / "session.pem"
    first = s_client(jester.port, version, "-servername", "alpha.test", "-sess_out", str(session))
    assert "New," in first and "200 OK" in first
    before = sum(w["requests"] for w in jester.status()["workers"])

    def resumed_everywhere(count):
        outcomes = [s_client(jester.port, version, "-servername", "alpha.test", "-sess_in", str(session))
                    for _ in range(count)]
        assert all("200 OK" in text for text in outcomes)
        return sum("Reused," in text for text in outcomes)

    assert resumed_everywhere(20) == 20
    # Both workers took some of them (SO_REUSEPORT spreads new connections), so the key really is shared.
    time.sleep(1.5)
    per_worker = [w["requests"] for w in jester.status()["workers"]]
    assert all(count > 0 for count in per_worker), per_worker
    assert sum(per_worker) >= before + 20

    jester.ctl("reload", check=True)
    wait_for(lambda: jester.all_ready(), what="new generation")
    assert resumed_everywhere(6) == 6


def test_tickets_can_be_turned_off(make_jester, keys, tmp_path):
    jester = make_jester(tls_config(keys, extra="session_tickets = false"))
    session = tmp_path / "session.pem"
    first = s_client(jester.port, "-tls1_2", "-sess_out", str(session))
    assert "200 OK" in first and "session ticket lifetime hint" not in first
    # Without tickets (and with no per-worker session cache) there is nothing to resume.
    assert not session.exists() or "New," in s_client(jester.port, "-tls1_2", "-sess_in", str(session))


def test_certificate_reload_under_load_drops_nothing(make_jester, keys):
    jester = make_jester(tls_config(keys), workers=2)
    assert served_fingerprint(jester.port) == fixture_fingerprint("alpha.pem")
    with SteadyLoad(jester.port, tls_ca=CA) as load:
        time.sleep(1)
        # A renewal: new files at the same paths, then a reload.
        shutil.copyfile(FIXTURES / "alpha-renewed.pem", keys / "site.pem")
        shutil.copyfile(FIXTURES / "alpha-renewed.key", keys / "site.key")
        result = jester.ctl("reload", "--wait")
        assert result.returncode == 0, result.stdout + result.stderr
        time.sleep(1)
    load.assert_nothing_failed()
    assert served_fingerprint(jester.port) == fixture_fingerprint("alpha-renewed.pem")


def test_a_bad_certificate_fails_the_reload_and_the_old_one_serves(make_jester, keys):
    jester = make_jester(tls_config(keys))
    generation = jester.status()["generation"]
    shutil.copyfile(FIXTURES / "stray.key", keys / "site.key")
    result = jester.ctl("reload")
    assert result.returncode == 1
    assert "the private key does not match the certificate" in result.stderr + result.stdout
    assert f"{jester.config_path}:" in result.stderr + result.stdout  # file:line:column
    assert jester.status()["generation"] == generation
    assert served_fingerprint(jester.port) == fixture_fingerprint("alpha.pem")
    code, _, error = curl("--cacert", CA, f"https://127.0.0.1:{jester.port}/")
    assert code == 200, error

    (keys / "site.key").unlink()
    result = jester.ctl("reload")
    assert result.returncode == 1 and "cannot read" in result.stderr + result.stdout


@pytest.mark.parametrize("protocol", list(ALPN))
def test_client_certificates_required_and_subject_forwarded(make_jester, keys, upstream, protocol):
    shutil.copyfile(FIXTURES / "ca.pem", keys / "clients.pem")
    routes = f'\n[[routes]]\nname = "api"\nupstream = "app"\n\n[upstreams.app]\ntargets = ["{upstream.address}"]\n'
    jester = make_jester(tls_config(
        keys, extra=f'client_certificates = "required"\nclient_ca = "{keys / "clients.pem"}"\n'
                    'client_subject_header = "X-Client-Subject"', routes=routes))
    url = f"https://127.0.0.1:{jester.port}/echo"
    code, _, _ = curl("--cacert", CA, url)
    assert code == 0  # no certificate: the handshake fails
    code, body, error = curl("--cacert", CA, "--cert", str(FIXTURES / "client.pem"), "--key",
                             str(FIXTURES / "client.key"), "-H", "X-Client-Subject: CN=mallory", ALPN[protocol], url)
    assert code == 200, error
    echo = json.loads(body)
    headers = [(name.lower(), value) for name, value in echo["headers"]]
    assert ("x-client-subject", "O=Jester Tests,CN=alice") in headers
    assert ("x-client-subject", "CN=mallory") not in headers  # a client cannot claim an identity
    assert ("x-forwarded-proto", "https") in headers
    # A certificate of the right CA but for servers only (extendedKeyUsage serverAuth) is refused.
    code, _, _ = curl("--cacert", CA, "--cert", str(FIXTURES / "alpha.pem"), "--key", str(FIXTURES / "alpha.key"), url)
    assert code == 0
    wait_for(lambda: "TLS handshake failed" in jester.logs(), what="the refusal logged")
    # The access log says who the client proved to be.
    assert any(entry.get("tls_client_subject") == "O=Jester Tests,CN=alice" for entry in jester.access_log())
    assert {entry["protocol"] for entry in jester.access_log()} == {"HTTP/1.1" if protocol == "http1" else "HTTP/2.0"}


def test_the_access_log_names_the_protocol_and_the_tls_session(make_jester, keys):
    """(Also: the listener's HSTS field on every response over TLS, and on none over plain HTTP.)"""
    from conftest import free_port
    plain = free_port()
    hsts = 'hsts = { max_age = "365d", include_subdomains = true }'
    jester = make_jester(hsts + tls_config(keys)
                         + f'\n[[listeners]]\nname = "plain"\naddress = "127.0.0.1:{plain}"\n')
    site = ("--cacert", CA, "--resolve", f"alpha.test:{jester.port}:127.0.0.1")
    for flag, target in (("--http1.1", "/one"), ("--http2", "/two")):
        code, head, _ = curl(*site, flag, "-D", "-", "-o", "/dev/null", f"https://alpha.test:{jester.port}{target}")
        assert code == 200
        assert b"strict-transport-security: max-age=31536000; includeSubDomains\r\n" in head.lower().replace(
            b"includesubdomains", b"includeSubDomains"), head
    code, head, _ = curl("-D", "-", "-o", "/dev/null", f"http://127.0.0.1:{plain}/three")
    assert code == 200 and b"strict-transport-security" not in head.lower()
    entries = {}
    wait_for(lambda: entries.update({e["target"]: e for e in jester.access_log()}) or len(entries) == 3,
             what="three access log lines")
    for target, protocol in (("/one", "HTTP/1.1"), ("/two", "HTTP/2.0")):
        entry = entries[target]
        assert entry["protocol"] == protocol and entry["tls_version"] == "TLSv1.3", entry
        assert entry["tls_cipher"].startswith("TLS_") and entry["tls_server_name"] == "alpha.test", entry
        assert "tls_client_subject" not in entry
    assert entries["/three"]["protocol"] == "HTTP/1.1" and "tls_version" not in entries["/three"]


def test_optional_client_certificates_let_anonymous_clients_in(make_jester, keys, upstream):
    shutil.copyfile(FIXTURES / "ca.pem", keys / "clients.pem")
    routes = f'\n[[routes]]\nname = "api"\nupstream = "app"\n\n[upstreams.app]\ntargets = ["{upstream.address}"]\n'
    jester = make_jester(tls_config(
        keys, extra=f'client_certificates = "optional"\nclient_ca = "{keys / "clients.pem"}"\n'
                    'client_subject_header = "X-Client-Subject"', routes=routes))
    code, body, error = curl("--cacert", CA, "-H", "X-Client-Subject: CN=mallory",
                             f"https://127.0.0.1:{jester.port}/echo")
    assert code == 200, error
    headers = [name.lower() for name, _ in json.loads(body)["headers"]]
    assert "x-client-subject" not in headers


def test_plain_http_and_garbage_on_a_tls_port_are_refused_and_logged(make_jester, keys):
    jester = make_jester(tls_config(keys))
    answer = raw_request(jester.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"speaks HTTPS" in answer
    # A broken TLS record gets an alert (or nothing) and a close, never plain text.
    answer = raw_request(jester.port, b"\x16\x03\x01\x00\x05hello", timeout=3)
    assert not answer.startswith(b"HTTP")
    wait_for(lambda: jester.logs().count("TLS handshake failed") >= 1, what="the failures logged")
    code, _, error = curl("--cacert", CA, f"https://127.0.0.1:{jester.port}/")
    assert code == 200, error


def test_validate_reports_tls_problems_with_locations(tmp_path, keys):
    from conftest import JESTER
    config = tmp_path / "bad.toml"
    config.write_text(f"""
[[listeners]]
name = "https"
address = "127.0.0.1:1"
[listeners.tls]
ciphers = "NO-SUCH-CIPHER"
alpn = ["h3"]
[[listeners.tls.certificates]]
cert = "{keys / 'site.pem'}"
key = "{keys / 'missing.key'}"
""")
    result = subprocess.run([JESTER, "config", "validate", str(config)], capture_output=True, text=True)
    assert result.returncode == 1
    assert f"{config}:10:1" in result.stdout + result.stderr and "cannot read" in result.stdout + result.stderr
    assert "'h3' is not a protocol Jester serves" in result.stdout + result.stderr

    # Problems with a key are reported at its 'key' line and name the key file; the certificate's at 'cert'.
    encrypted = keys / "encrypted.key"
    subprocess.run(["openssl", "pkey", "-in", str(keys / "site.key"), "-aes-256-cbc", "-passout", "pass:secret",
                    "-out", str(encrypted)], check=True, capture_output=True)
    assert "ENCRYPTED" in encrypted.read_text()
    not_a_key = keys / "not-a-key.key"
    not_a_key.write_text("not a key\n")
    not_a_certificate = keys / "not-a-certificate.pem"
    shutil.copyfile(keys / "site.key", not_a_certificate)
    cases = [
        ("site.pem", "encrypted.key", 9, "encrypted.key: the private key is encrypted (Jester starts unattended"),
        ("site.pem", "not-a-key.key", 9, "not-a-key.key: no PEM private key can be read"),
        ("site.pem", "beta.key", 9, f"beta.key: the private key does not match the certificate {keys}/site.pem"),
        ("not-a-certificate.pem", "site.key", 8, "not-a-certificate.pem holds no PEM certificate"),
    ]
    for cert, key, line, message in cases:
        config.write_text(f"""
[[listeners]]
name = "https"
address = "127.0.0.1:1"
[listeners.tls]
[[listeners.tls.certificates]]
names = ["alpha.test"]
cert = "{keys / cert}"
key = "{keys / key}"
""")
        result = subprocess.run([JESTER, "config", "validate", str(config)], capture_output=True, text=True)
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert f"{config}:{line}:1: error: {keys}/{message}" in output, output
        assert len(output.strip().splitlines()) == 1, output  # one diagnostic, at one place


def test_testssl_finds_no_vulnerability(make_jester, keys):
    jester = make_jester(tls_config(keys))
    result = subprocess.run(
        ["testssl", "--quiet", "--color", "0", "--warnings", "off", "--openssl", "/usr/bin/openssl", "-U",
         "--ip", "127.0.0.1", f"https://localhost:{jester.port}"],
        capture_output=True, text=True, timeout=600)
    report = result.stdout + result.stderr
    assert "Heartbleed" in report and "LUCKY13" in report, report[-3000:]  # the checks ran
    assert "VULNERABLE" not in report.upper().replace("NOT VULNERABLE", ""), report


# Upstream TLS: Jester as the client of HTTPS targets.

def tls_pool(upstream, tls_settings, extra=""):
    return (f'\n[[routes]]\nname = "api"\nupstream = "secure"\n\n[upstreams.secure]\ntargets = ["{upstream.address}"]\n'
            f"{extra}\n[upstreams.secure.tls]\n{tls_settings}\n")


@pytest.fixture
def https_upstream():
    from conftest import Upstream
    server = Upstream(tls=(str(FIXTURES / "alpha.pem"), str(FIXTURES / "alpha.key")))
    yield server
    server.stop()


def test_upstream_tls_verifies_the_target_and_reuses_sessions(make_jester, https_upstream):
    # max_idle_connections = 0: a new upstream connection per request, so resumption shows.
    jester = make_jester(tls_pool(https_upstream, f'ca = "{CA}"', extra="max_idle_connections = 0"))
    echoes = []
    for _ in range(4):
        code, body, error = curl(f"{jester.url}/echo")
        assert code == 200, (error, jester.logs()[-2000:])
        echoes.append(json.loads(body))
    assert all(echo["tls_version"] in ("TLSv1.3", "TLSv1.2") for echo in echoes)
    assert len({echo["client_port"] for echo in echoes}) == 4  # four connections
    assert echoes[0]["tls_resumed"] is False
    assert all(echo["tls_resumed"] for echo in echoes[1:]), echoes


def test_upstream_tls_refuses_an_untrusted_or_misnamed_certificate(make_jester):
    from conftest import Upstream
    wildcard = Upstream(tls=(str(FIXTURES / "wildcard.pem"), str(FIXTURES / "wildcard.key")))
    try:
        # The system CAs do not know the test CA.
        jester = make_jester(tls_pool(wildcard, ""))
        code, _, _ = curl(f"{jester.url}/echo")
        assert code == 502
        wait_for(lambda: "certificate verify failed" in jester.logs(), what="the verification failure logged")
        # Trusted CA, but the certificate names *.beta.test, not 127.0.0.1.
        jester = make_jester(tls_pool(wildcard, f'ca = "{CA}"'))
        assert curl(f"{jester.url}/echo")[0] == 502
        wait_for(lambda: "upstream TLS handshake failed" in jester.logs(), what="the name mismatch logged")
        # With the name it carries, it is accepted.
        jester = make_jester(tls_pool(wildcard, f'ca = "{CA}"\nserver_name = "api.beta.test"'))
        assert curl(f"{jester.url}/echo")[0] == 200
        # verify = false: the operator vouches for the target.
        jester = make_jester(tls_pool(wildcard, "verify = false"))
        assert curl(f"{jester.url}/echo")[0] == 200
    finally:
        wildcard.stop()


def test_upstream_tls_client_certificate(make_jester):
    from conftest import Upstream
    strict = Upstream(tls=(str(FIXTURES / "alpha.pem"), str(FIXTURES / "alpha.key")), client_ca=CA)
    try:
        jester = make_jester(tls_pool(strict, f'ca = "{CA}"\ncert = "{FIXTURES / "client.pem"}"\n'
                                              f'key = "{FIXTURES / "client.key"}"'))
        code, body, error = curl(f"{jester.url}/echo")
        assert code == 200, error
        assert "commonName=alice" in json.loads(body)["tls_client"]
        jester = make_jester(tls_pool(strict, f'ca = "{CA}"'))
        assert curl(f"{jester.url}/echo")[0] == 502
        wait_for(lambda: "upstream TLS failed" in jester.logs(), what="the refusal logged")
    finally:
        strict.stop()


@pytest.mark.parametrize("protocol", list(ALPN))
def test_routes_match_on_sni_and_client_certificate(make_jester, keys, protocol):
    shutil.copyfile(FIXTURES / "ca.pem", keys / "clients.pem")
    routes = """
[[routes]]
name = "beta"
sni = ["*.beta.test"]
respond = { status = 200, body = "beta" }

[[routes]]
name = "alice"
path_prefix = "/admin"
client_subject = { regex = "CN=alice$" }
respond = { status = 200, body = "welcome alice" }

[[routes]]
name = "admin-refused"
path_prefix = "/admin"
respond = { status = 403, body = "client certificate required" }

[[routes]]
name = "default"
respond = { status = 200, body = "default" }
"""
    jester = make_jester(tls_config(
        keys, extra=f'client_certificates = "optional"\nclient_ca = "{keys / "clients.pem"}"',
        certificates=(("site.pem", "site.key"), ("beta.pem", "beta.key")), routes=routes))
    base = ["--cacert", CA, ALPN[protocol]]
    assert curl(*base, f"https://127.0.0.1:{jester.port}/")[1] == b"default"
    assert curl(*base, "--resolve", f"x.beta.test:{jester.port}:127.0.0.1", f"https://x.beta.test:{jester.port}/")[1] == b"beta"
    # The Host header alone does not make an SNI match.
    assert curl(*base, "-H", "Host: x.beta.test", f"https://127.0.0.1:{jester.port}/")[1] == b"default"
    assert curl(*base, f"https://127.0.0.1:{jester.port}/admin")[0] == 403
    code, body, error = curl(*base, "--cert", str(FIXTURES / "client.pem"), "--key", str(FIXTURES / "client.key"),
                             f"https://127.0.0.1:{jester.port}/admin")
    assert (code, body) == (200, b"welcome alice"), error


def test_proxy_header_before_the_tls_handshake(make_jester, keys, upstream):
    import socket
    import ssl
    routes = f'\n[[routes]]\nname = "api"\nupstream = "app"\n\n[upstreams.app]\ntargets = ["{upstream.address}"]\n'
    jester = make_jester('proxy_protocol_from = ["127.0.0.0/8"]\n' + tls_config(keys, routes=routes))
    context = ssl.create_default_context(cafile=CA)
    with socket.create_connection(("127.0.0.1", jester.port), timeout=5) as plain:
        plain.sendall(b"PROXY TCP4 198.51.100.9 127.0.0.1 40000 443\r\n")
        with context.wrap_socket(plain, server_hostname="alpha.test") as secure:
            secure.sendall(b"GET /echo HTTP/1.1\r\nHost: alpha.test\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := secure.recv(65536):
                answer += chunk
    headers = {name.lower(): value for name, value in json.loads(answer.split(b"\r\n\r\n", 1)[1])["headers"]}
    assert headers["x-forwarded-for"] == "198.51.100.9"
    assert headers["x-forwarded-proto"] == "https"


def make_ocsp_response(directory):
    """A "good" OCSP response for alpha.pem signed by the test CA, made with openssl's own responder."""
    subject = subprocess.run(["openssl", "x509", "-in", str(FIXTURES / "alpha.pem"), "-noout", "-subject",
                              "-nameopt", "compat"], capture_output=True, text=True, check=True).stdout
    serial = subprocess.run(["openssl", "x509", "-in", str(FIXTURES / "alpha.pem"), "-noout", "-serial"],
                            capture_output=True, text=True, check=True).stdout.strip().split("=")[1]
    index = directory / "index.txt"
    index.write_text(f"V\t991231235959Z\t\t{serial}\tunknown\t{subject.split('=', 1)[1].strip()}\n")
    request, response = directory / "request.der", directory / "response.der"
    subprocess.run(["openssl", "ocsp", "-issuer", str(FIXTURES / "ca.pem"), "-cert", str(FIXTURES / "alpha.pem"),
                    "-reqout", str(request), "-no_nonce"], capture_output=True, check=True)
    subprocess.run(["openssl", "ocsp", "-index", str(index), "-rsigner", str(FIXTURES / "ca.pem"), "-rkey",
                    str(FIXTURES / "ca.key"), "-CA", str(FIXTURES / "ca.pem"), "-reqin", str(request),
                    "-respout", str(response), "-ndays", "3650"], capture_output=True, check=True)
    return response


def test_ocsp_response_is_stapled_and_reloaded(make_jester, keys, tmp_path):
    response = make_ocsp_response(tmp_path)
    shutil.copyfile(response, keys / "site.ocsp")
    body = tls_config(keys).replace('key = "' + str(keys / "site.key") + '"',
                                    'key = "' + str(keys / "site.key") + f'"\nocsp_response = "{keys / "site.ocsp"}"')
    jester = make_jester(body)
    text = s_client(jester.port, "-servername", "alpha.test", "-status")
    assert "OCSP Response Status: successful" in text and "Cert Status: good" in text, text[:2000]
    # A damaged file fails the reload, and the old staple stays.
    (keys / "site.ocsp").write_bytes(b"not der")
    result = jester.ctl("reload")
    assert result.returncode == 1 and "not a DER OCSP response" in result.stdout + result.stderr
    assert "Cert Status: good" in s_client(jester.port, "-servername", "alpha.test", "-status")


def test_a_session_from_a_listener_without_client_certificates_does_not_resume_where_one_is_required(
        make_jester, keys, tmp_path):
    """Every listener shares the ticket keys, and a resumed handshake asks for no certificate: a session made on
    a listener that asks none must not resume on one that requires one (or the requirement is skipped). Sessions
    carry their listener's client-certificate policy (OpenSSL's session ID context), so it is a full handshake
    there, which fails without a certificate; between listeners of the same policy sessions still resume."""
    from conftest import free_port
    shutil.copyfile(FIXTURES / "ca.pem", keys / "clients.pem")
    strict_port, twin_port = free_port(), free_port()
    body = tls_config(keys, routes="\n") + f"""
[[listeners]]
name = "strict"
address = "127.0.0.1:{strict_port}"
""" + tls_config(keys, extra=f'client_certificates = "required"\nclient_ca = "{keys / "clients.pem"}"\n',
                 routes="\n") + f"""
[[listeners]]
name = "twin"
address = "127.0.0.1:{twin_port}"
""" + tls_config(keys)
    jester = make_jester(body)
    session = tmp_path / "session.pem"
    first = s_client(jester.port, "-servername", "alpha.test", "-sess_out", str(session))
    assert "New," in first and "200 OK" in first
    # The same policy elsewhere: resumed.
    twin = s_client(twin_port, "-servername", "alpha.test", "-sess_in", str(session))
    assert "Reused," in twin and "200 OK" in twin
    # A client certificate required: no resumption, and without a certificate no answer.
    strict = s_client(strict_port, "-servername", "alpha.test", "-sess_in", str(session))
    assert "Reused," not in strict and "200 OK" not in strict, strict
    with_certificate = s_client(strict_port, "-servername", "alpha.test", "-sess_in", str(session),
                                "-cert", str(FIXTURES / "client.pem"), "-key", str(FIXTURES / "client.key"))
    assert "New," in with_certificate and "200 OK" in with_certificate
