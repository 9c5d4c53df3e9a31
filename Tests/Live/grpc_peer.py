# SPDX-License-Identifier: Apache-2.0
"""A real gRPC server and client (Debian's python3-grpcio) for Jester's live tests, without protobuf: the
methods carry raw bytes.

  grpc_peer.py server PORT [CERT KEY]  serves /jester.Test/{Unary,ServerStream,ClientStream,Bidi,Slow,Fail,Who,
                                    Request} on 127.0.0.1:PORT (plain HTTP/2, or TLS with CERT and KEY), prints "ready"
  grpc_peer.py client TARGET [CA]   calls every method through TARGET (host:port; over TLS with CA) and prints
                                    one JSON object with the results
"""

import json
import sys
import time
from concurrent import futures

import grpc

IDENTITY = dict(request_serializer=None, response_deserializer=None)


def unary(request, context):
    context.set_trailing_metadata((("x-trailer", "unary"),))
    return b"echo:" + request


def server_stream(request, context):
    for index in range(int(request or b"3")):
        yield b"part-%d" % index


def client_stream(requests, context):
    return b"+".join(requests)


def bidi(requests, context):
    for request in requests:
        yield request.upper()


def slow(request, context):
    # Reports the deadline it saw, after sleeping past it if the client set a short one.
    remaining = context.time_remaining()
    time.sleep(float(request or b"2"))
    return b"slept, remaining was %.1f" % (remaining or -1)


def fail(request, context):
    context.abort(grpc.StatusCode.PERMISSION_DENIED, "no entry")


def describe(request, context, port):
    time.sleep(float(request or b"0"))
    return json.dumps({"port": port, "fields": dict(context.invocation_metadata())}).encode()


def serve(port, cert=None, key=None):
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        # Answers at once, before the client has finished sending (an early response).
        "Early": grpc.stream_unary_rpc_method_handler(lambda requests, context: b"early"),
        # Which server answered (balancing and sticky sessions on h2 pools).
        "Who": grpc.unary_unary_rpc_method_handler(lambda request, context: b"port:%d" % port),
        # After sleeping as many seconds as the message says (if any): which server answered, and the request's
        # fields (what the proxy added upstream).
        "Request": grpc.unary_unary_rpc_method_handler(lambda request, context: describe(request, context, port)),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("jester.Test", handlers),))
    if cert:
        credentials = grpc.ssl_server_credentials([(open(key, "rb").read(), open(cert, "rb").read())])
        server.add_secure_port(f"127.0.0.1:{port}", credentials)
    else:
        server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def call(target, ca=None):
    if ca:
        credentials = grpc.ssl_channel_credentials(root_certificates=open(ca, "rb").read())
        channel = grpc.secure_channel(target, credentials, options=(("grpc.ssl_target_name_override", "localhost"),))
    else:
        channel = grpc.insecure_channel(target)
    results = {}
    with channel:
        unary_call = channel.unary_unary("/jester.Test/Unary")
        response, call_info = unary_call.with_call(b"hello", timeout=10)
        results["unary"] = response.decode()
        results["unary_trailer"] = dict(call_info.trailing_metadata()).get("x-trailer")
        results["server_stream"] = [r.decode() for r in channel.unary_stream("/jester.Test/ServerStream")(b"4", timeout=10)]
        results["client_stream"] = channel.stream_unary("/jester.Test/ClientStream")(iter([b"a", b"b", b"c"]), timeout=10).decode()
        results["bidi"] = [r.decode() for r in channel.stream_stream("/jester.Test/Bidi")(iter([b"x", b"yz"]), timeout=10)]
        big = b"z" * (3 << 20)
        results["big_unary"] = len(channel.unary_unary("/jester.Test/Unary")(big, timeout=20))
        try:
            channel.unary_unary("/jester.Test/Fail")(b"", timeout=10)
            results["fail"] = "no error"
        except grpc.RpcError as error:
            results["fail"] = [error.code().name, error.details()]
        started = time.monotonic()
        try:
            channel.unary_unary("/jester.Test/Slow")(b"3", timeout=0.5)
            results["deadline"] = "no error"
        except grpc.RpcError as error:
            results["deadline"] = error.code().name
        results["deadline_seconds"] = round(time.monotonic() - started, 2)
        results["slow_ok"] = channel.unary_unary("/jester.Test/Slow")(b"0.1", timeout=5).decode()
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(int(sys.argv[2]), *sys.argv[3:5])
    else:
        call(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
