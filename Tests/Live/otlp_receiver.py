#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A real OTLP/HTTP trace receiver for Jester's live tests: parses each export with opentelemetry-proto's own
classes (ExportTraceServiceRequest), so a wrong field number or wire type in Jester's encoder fails the test.

  otlp_receiver.py PORT [--fail-first N] [--hang]

POST /v1/traces   takes an export (application/x-protobuf) and answers ExportTraceServiceResponse; the first N
                  get 503 with Retry-After: 0 (--fail-first), or no answer at all (--hang: a collector that
                  accepted the connection and stalls)
GET /spans        every span received so far, as JSON (ids in hex, attributes as a dict)
GET /requests     how many exports arrived (503s included)

Prints "ready" once listening. Runs under the interpreter of Packaging/setup.sh --test's venv, which has
opentelemetry-proto over Debian's python3-protobuf."""

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

lock = threading.Lock()
spans = []
requests = 0


def any_value(value):
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def attributes(pairs):
    return {pair.key: any_value(pair.value) for pair in pairs}


def record(request):
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append({
                    "resource": resource,
                    "scope": {"name": scope_spans.scope.name, "version": scope_spans.scope.version},
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex() or None,
                    "trace_state": span.trace_state,
                    "name": span.name,
                    "kind": span.kind,
                    "start": span.start_time_unix_nano,
                    "end": span.end_time_unix_nano,
                    "attributes": attributes(span.attributes),
                    "events": [{"name": event.name, "time": event.time_unix_nano} for event in span.events],
                    "status": {"code": span.status.code, "message": span.status.message},
                    "flags": span.flags,
                })


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, content_type, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with lock:
            body = json.dumps(spans if self.path == "/spans" else {"requests": requests}).encode()
        self.answer(200, body, "application/json")

    def do_POST(self):
        global requests
        payload = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with lock:
            requests += 1
            number = requests
        if options.hang:
            time.sleep(3600)
            return
        if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
            self.answer(415, b"", "text/plain")
            return
        if number <= options.fail_first:
            self.answer(503, b"", "text/plain", [("Retry-After", "0")])
            return
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(payload)
        with lock:
            record(request)
        response = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.answer(200, response, "application/x-protobuf")


parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("--fail-first", type=int, default=0)
parser.add_argument("--hang", action="store_true")
options = parser.parse_args()
server = ThreadingHTTPServer(("127.0.0.1", options.port), Handler)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
