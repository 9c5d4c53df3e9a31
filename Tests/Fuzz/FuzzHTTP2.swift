// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the HTTP/2 server path (JesterHTTP2's HTTP2Session over nghttp2, as HTTP2Connection drives
// it), built by Tests/Fuzz/run.sh.
//
// Bytes from a client, after a valid preface and SETTINGS, go in in pieces the input chooses; every event comes
// out; requests are answered (head, body, trailers) and their DATA acknowledged, as the proxy would, so the
// response and flow-control paths run too. Checks beyond "no crash": requests arrive on client-initiated (odd)
// streams; no event follows a stream's close, and a stream closes once; nothing follows a failed receive;
// what the session writes is whole frames.

import JesterHTTP2
import NIOCore

private let allocator = ByteBufferAllocator()
private let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + [0, 0, 0, 4, 0, 0, 0, 0, 0]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTP2(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    guard let session = try? HTTP2Session(role: .server) else { return 0 }
    var closed: Set<Int32> = []
    var failed = false
    // The first byte chooses the piece size, so the same frames arrive split in many ways.
    let piece = max(1, Int(input.first ?? 1) % 64 + 1)
    var bytes = preface + input.dropFirst()
    while !bytes.isEmpty {
        let chunk = Array(bytes.prefix(piece))
        bytes.removeFirst(chunk.count)
        switch session.receive(ByteBuffer(bytes: chunk)) {
        case .failure:
            failed = true
        case .success(let events):
            precondition(!failed || events.isEmpty, "events after the session failed")
            handle(events, session, &closed)
        }
        if failed { break }
        drain(session, &closed)
    }
    drain(session, &closed)
    return 0
}

private func handle(_ events: [HTTP2Event], _ session: HTTP2Session, _ closed: inout Set<Int32>) {
    for event in events {
        switch event {
        case .headers(let stream, _, let endStream):
            precondition(stream & 1 == 1, "a request on a server-initiated stream \(stream)")
            precondition(!closed.contains(stream), "a request on closed stream \(stream)")
            session.respond(stream: stream, fields: [HTTP2Field(":status", "200")], hasBody: true)
            session.sendBody(stream: stream, ByteBuffer(string: endStream ? "done" : "streaming"))
            session.finishBody(stream: stream, trailers: [HTTP2Field("x-trailer", "1")])
        case .data(let stream, let body):
            precondition(!closed.contains(stream), "DATA on closed stream \(stream)")
            session.consumed(stream: stream, count: body.readableBytes)
        case .endStream(let stream), .trailers(let stream, _):
            precondition(!closed.contains(stream), "an end on closed stream \(stream)")
        case .streamClosed(let stream, _):
            precondition(closed.insert(stream).inserted, "stream \(stream) closed twice")
        case .goAway:
            break
        }
    }
}

/// Takes what the session writes (checking it is whole frames) and the events that writing caused.
private func drain(_ session: HTTP2Session, _ closed: inout Set<Int32>) {
    var output: [UInt8] = []
    while let bytes = session.takeOutput(allocator: allocator) { output += bytes.readableBytesView }
    var index = 0
    while index < output.count {
        precondition(index + 9 <= output.count, "a partial frame header in the output")
        let length = Int(output[index]) << 16 | Int(output[index + 1]) << 8 | Int(output[index + 2])
        index += 9 + length
    }
    precondition(index == output.count, "a partial frame in the output")
    handle(session.takeEvents(), session, &closed)
}
