# SPDX-License-Identifier: Apache-2.0
"""The control plane (`jester control-plane`, issue 25) as a real process: its REST API with tokens and roles,
changes refused at the field, If-Match, history, diff, rollback and the audit log; versions that survive a
kill -9; one process per store; a document it serves that a data plane loads; and schemathesis holding the live
API to Docs/control-plane-openapi.yaml."""

import http.client
import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import JESTER, ROOT, free_port, wait_for
from test_admin_api import SCHEMATHESIS

WRITE = "cp-write-token-0123456789abcdef"
READ = "cp-read-token-0123456789abcdef"


class ControlPlane:
    """One `jester control-plane` on loopback with its own store (or a given one)."""

    def __init__(self, data_dir=None, tokens=True, extra=(), grpc_port=None):
        self.directory = tempfile.TemporaryDirectory(prefix="jester-cp-")
        self.data_dir = data_dir or os.path.join(self.directory.name, "store")
        self.port = free_port()
        self.grpc_port = grpc_port or free_port()
        arguments = [JESTER, "control-plane", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir,
                     "--grpc-listen", f"127.0.0.1:{self.grpc_port}"]
        if tokens:
            path = Path(self.directory.name) / "tokens"
            path.write_text(f"write {WRITE} alice\nread {READ} viewer\n")
            os.chmod(path, 0o600)
            arguments += ["--tokens-file", str(path)]
        self.log = open(Path(self.directory.name) / "log", "w+")
        self.process = subprocess.Popen([*arguments, *extra], stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.process.poll() is not None or self.request("GET", "/healthz")[0] == 200,
                 what="the control plane to answer")
        assert self.process.poll() is None, self.logs()
        # The stream binds after the REST API: a test that starts data planes needs it bound.
        wait_for(lambda: self.process.poll() is not None or "serving the data planes' stream" in self.logs(),
                 what="the stream to listen")
        assert self.process.poll() is None, self.logs()

    def request(self, method, path, body=None, token=WRITE, headers=None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        fields = dict(headers or {})
        if token:
            fields["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            fields.setdefault("Content-Type", "application/json")
        connection.request(method, path, body=data, headers=fields)
        response = connection.getresponse()
        raw = response.read()
        connection.close()
        parsed = json.loads(raw) if raw and response.getheader("content-type", "").startswith("application/json") \
            else raw
        return response.status, {k.lower(): v for k, v in response.getheaders()}, parsed

    def logs(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self, sig=signal.SIGTERM):
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=15)
        return self.process.returncode

    def close(self):
        self.stop(signal.SIGKILL)
        self.log.close()
        self.directory.cleanup()


@pytest.fixture
def control_plane():
    plane = ControlPlane()
    yield plane
    plane.close()


UPSTREAM = {"targets": ["127.0.0.1:9"], "connect_timeout": "2s"}
ROUTE = {"path_prefix": "/api/", "upstream": "app"}


def test_changes_make_versions_that_are_served_back_with_their_etag(control_plane):
    status, headers, result = control_plane.request("PUT", "/api/v1/upstreams/app", UPSTREAM)
    assert status == 201 and headers["etag"] == '"v1"' and headers["location"] == "/api/v1/upstreams/app", result
    # The first upstream also takes the kind over from the data planes' bootstrap files.
    assert [c["summary"] for c in result["changes"]] == ["upstreams set by the control plane", "upstream 'app' added"]
    status, headers, result = control_plane.request("PUT", "/api/v1/routes/api", ROUTE)
    assert status == 201 and result["version"] == 2
    status, headers, route = control_plane.request("GET", "/api/v1/routes/api", token=READ)
    assert status == 200 and headers["etag"] == '"v2"' and route == {"name": "api", **ROUTE}
    assert control_plane.request("GET", "/api/v1/routes/api", headers={"If-None-Match": '"v2"'})[0] == 304
    status, _, listed = control_plane.request("GET", "/api/v1/upstreams")
    assert status == 200 and listed == {"version": 2, "set": True, "upstreams": {"app": UPSTREAM}}
    status, _, listed = control_plane.request("GET", "/api/v1/filters")
    assert listed == {"version": 2, "set": False, "filters": {}}


def test_a_bad_change_is_refused_at_the_field_and_nothing_changes(control_plane):
    control_plane.request("PUT", "/api/v1/upstreams/app", UPSTREAM)
    status, _, error = control_plane.request("PUT", "/api/v1/routes/api", {"path_prefix": "/", "upstream": "nope"})
    assert status == 422 and error["status"] == 422, error
    assert any(p.get("pointer") == "/upstream" and p["document_pointer"] == "/routes/0/upstream"
               and "nope" in p["message"] for p in error["problems"]), error
    status, _, error = control_plane.request("PUT", "/api/v1/upstreams/app", {"targets": ["127.0.0.1:9"],
                                                                              "conect_timeout": "1s"})
    assert status == 422 and any("connect_timeout" in p["message"] for p in error["problems"]), error
    assert control_plane.request("PUT", "/api/v1/upstreams/app", b"{not json")[0] == 400
    assert control_plane.request("GET", "/api/v1/versions")[2]["current"] == 1
    # A stale If-Match: someone else changed it first.
    status, headers, error = control_plane.request("PUT", "/api/v1/upstreams/app", UPSTREAM,
                                                   headers={"If-Match": '"v0"'})
    assert status == 412 and headers["etag"] == '"v1"', error


def test_roles_and_the_audit_log_say_who_did_what(control_plane):
    assert control_plane.request("GET", "/api/v1/snapshot", token=None)[0] == 401
    assert control_plane.request("GET", "/api/v1/snapshot", token="not-a-token-at-all-xxxx")[0] == 401
    assert control_plane.request("PUT", "/api/v1/upstreams/app", UPSTREAM, token=READ)[0] == 403
    assert control_plane.request("PUT", "/api/v1/upstreams/app", UPSTREAM)[0] == 201
    status, _, audit = control_plane.request("GET", "/api/v1/audit", token=READ)
    assert status == 200
    records = audit["records"]
    assert [(r["actor"], r["outcome"], r["status"]) for r in records] == [("viewer", "refused", 403),
                                                                          ("alice", "accepted", 201)], records
    log = Path(control_plane.data_dir, "audit.log").read_text().splitlines()
    assert [json.loads(line)["actor"] for line in log] == ["viewer", "alice"]


def test_history_diff_and_rollback(control_plane):
    control_plane.request("PUT", "/api/v1/upstreams/app", UPSTREAM)
    control_plane.request("PUT", "/api/v1/routes/api", ROUTE)
    control_plane.request("DELETE", "/api/v1/routes/api")
    _, _, history = control_plane.request("GET", "/api/v1/versions")
    assert [v["version"] for v in history["versions"]] == [3, 2, 1]
    assert [v["action"] for v in history["versions"]] == ["delete", "put", "put"]
    _, _, diff = control_plane.request("GET", "/api/v1/diff?from=2&to=3")
    assert [c["summary"] for c in diff["changes"]] == ["route 'api' removed"]
    status, headers, result = control_plane.request("POST", "/api/v1/versions/2/rollback",
                                                    headers={"If-Match": '"v3"'})
    assert status == 200 and result["version"] == 4 and headers["etag"] == '"v4"', result
    _, _, snapshot = control_plane.request("GET", "/api/v1/snapshot")
    assert snapshot["action"] == "rollback" and snapshot["rolled_back_to"] == 2
    assert snapshot["document"]["routes"] == [{"name": "api", **ROUTE}]


def test_versions_survive_a_kill_and_a_second_process_cannot_share_the_store():
    first = ControlPlane()
    try:
        first.request("PUT", "/api/v1/upstreams/app", UPSTREAM)
        first.request("PUT", "/api/v1/routes/api", ROUTE)
        # The store's lock: a second control plane on the same directory would reuse version numbers.
        second = subprocess.run([JESTER, "control-plane", "--listen", f"127.0.0.1:{free_port()}",
                                 "--grpc-listen", "off", "--data-dir", first.data_dir],
                                capture_output=True, text=True, timeout=30)
        assert second.returncode == 1 and "in use by another control plane" in second.stderr, second.stderr
        first.stop(signal.SIGKILL)
        again = ControlPlane(data_dir=first.data_dir)
        try:
            _, headers, snapshot = again.request("GET", "/api/v1/snapshot")
            assert snapshot["version"] == 2 and headers["etag"] == '"v2"'
            assert snapshot["document"]["routes"] == [{"name": "api", **ROUTE}]
            assert [r["outcome"] for r in again.request("GET", "/api/v1/audit")[2]["records"]] == ["accepted"] * 2
            assert again.stop() == 0  # SIGTERM: a clean exit
        finally:
            again.close()
    finally:
        first.close()


def test_a_store_with_a_missing_version_is_refused_with_the_file_named(tmp_path):
    plane = ControlPlane(data_dir=str(tmp_path / "store"))
    try:
        for n in range(3):
            plane.request("PUT", f"/api/v1/upstreams/u{n}", UPSTREAM)
    finally:
        plane.close()
    os.unlink(tmp_path / "store" / "versions" / "00000002.json")
    result = subprocess.run([JESTER, "control-plane", "--listen", f"127.0.0.1:{free_port()}", "--grpc-listen", "off",
                             "--data-dir", str(tmp_path / "store")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "00000003.json: version 2 is missing" in result.stderr, result.stderr


def test_without_tokens_it_listens_on_loopback_only(tmp_path):
    result = subprocess.run([JESTER, "control-plane", "--listen", f"0.0.0.0:{free_port()}", "--grpc-listen", "off",
                             "--data-dir", str(tmp_path / "store")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "not a loopback address" in result.stderr, result.stderr
    plane = ControlPlane(tokens=False)
    try:
        assert plane.request("PUT", "/api/v1/upstreams/app", UPSTREAM, token=None)[0] == 201
        assert plane.request("GET", "/api/v1/audit", token=None)[2]["records"][0]["actor"] == "anonymous"
    finally:
        plane.close()


def test_a_data_plane_loads_the_document_the_control_plane_serves(control_plane, tmp_path):
    control_plane.request("PUT", "/api/v1/upstreams/app", UPSTREAM)
    control_plane.request("PUT", "/api/v1/routes/api", ROUTE)
    _, _, snapshot = control_plane.request("GET", "/api/v1/snapshot")
    document = tmp_path / "snapshot.json"
    document.write_text(json.dumps(snapshot["document"]))
    bootstrap = tmp_path / "jester.toml"
    bootstrap.write_text(f'[[listeners]]\nname = "public"\naddress = "127.0.0.1:{free_port()}"\n')
    result = subprocess.run([JESTER, "config", "validate", "-c", str(bootstrap), "--snapshot", str(document)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_changes_are_checked_over_the_bootstrap_file_it_is_given(tmp_path):
    bootstrap = tmp_path / "fleet.toml"
    bootstrap.write_text('[[listeners]]\nname = "edge"\naddress = "127.0.0.1:1"\nupstream = "l4"\nprotocol = "tcp"\n'
                         '[upstreams.l4]\ntargets = ["127.0.0.1:9"]\n')
    plane = ControlPlane(extra=["--bootstrap", str(bootstrap)])
    try:
        # The fleet's listener uses upstream l4: a snapshot cannot redefine it.
        status, _, error = plane.request("PUT", "/api/v1/upstreams/l4", UPSTREAM)
        assert status == 422 and any("bootstrap file's" in p["message"] for p in error["problems"]), error
    finally:
        plane.close()


@pytest.mark.skipif(not SCHEMATHESIS.exists(), reason="schemathesis is not installed (Packaging/setup.sh --test)")
def test_the_live_api_conforms_to_its_openapi_document(control_plane):
    control_plane.request("PUT", "/api/v1/upstreams/app", UPSTREAM)
    result = subprocess.run(
        [str(SCHEMATHESIS), "run", str(ROOT / "Docs" / "control-plane-openapi.yaml"),
         "--url", f"http://127.0.0.1:{control_plane.port}", "-H", f"Authorization: Bearer {WRITE}",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                     "response_schema_conformance",
         "--max-examples", "10", "--seed", "1", "--no-shrink", "--request-timeout", "20"],
        capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
