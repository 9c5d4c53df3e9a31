// SPDX-License-Identifier: Apache-2.0
import JesterHTTP2
import NIOCore
import Testing

/// The nghttp2 wrapper, a client and a server session connected in memory.

private let allocator = ByteBufferAllocator()

/// Moves frames both ways until both are quiet; returns what each side received.
@discardableResult
private func exchange(_ client: HTTP2Session, _ server: HTTP2Session) -> (client: [HTTP2Event], server: [HTTP2Event]) {
    var toClient: [HTTP2Event] = []
    var toServer: [HTTP2Event] = []
    for _ in 0..<50 {
        var moved = false
        if let bytes = client.takeOutput(allocator: allocator) {
            moved = true
            toServer += (try? server.receive(bytes).get()) ?? []
        }
        if let bytes = server.takeOutput(allocator: allocator) {
            moved = true
            toClient += (try? client.receive(bytes).get()) ?? []
        }
        if !moved { break }
    }
    return (toClient, toServer)
}

private func requestFields(_ method: String = "GET", path: String = "/", extra: [HTTP2Field] = []) -> [HTTP2Field] {
    [HTTP2Field(":method", method), HTTP2Field(":scheme", "https"), HTTP2Field(":authority", "example.test"),
     HTTP2Field(":path", path)] + extra
}

@Test func requestAndResponseWithBodiesAndTrailers() throws {
    let client = try HTTP2Session(role: .client)
    let server = try HTTP2Session(role: .server)
    let stream = try #require(client.request(fields: requestFields("POST", extra: [HTTP2Field("content-type", "text/plain")]), hasBody: true))
    client.sendBody(stream: stream, ByteBuffer(string: "hello "))
    client.sendBody(stream: stream, ByteBuffer(string: "world"))
    client.finishBody(stream: stream)
    let first = exchange(client, server).server
    guard case .headers(let id, let fields, let endStream) = first.first else {
        Issue.record("no request: \(first)")
        return
    }
    #expect(id == stream && !endStream)
    #expect(fields.contains(HTTP2Field(":method", "POST")) && fields.contains(HTTP2Field("content-type", "text/plain")))
    let body = first.compactMap { event -> String? in
        if case .data(_, let bytes) = event { return String(buffer: bytes) } else { return nil }
    }.joined()
    #expect(body == "hello world")
    #expect(first.contains(.endStream(stream: stream)))
    server.consumed(stream: stream, count: 11)

    server.respond(stream: stream, fields: [HTTP2Field(":status", "200"), HTTP2Field("grpc-encoding", "identity")], hasBody: true)
    server.sendBody(stream: stream, ByteBuffer(string: "answer"))
    server.finishBody(stream: stream, trailers: [HTTP2Field("grpc-status", "0")])
    let answer = exchange(client, server).client
    #expect(answer.contains { if case .headers(stream, let fields, false) = $0 { fields.first == HTTP2Field(":status", "200") } else { false } })
    #expect(answer.contains(.data(stream: stream, ByteBuffer(string: "answer"))))
    #expect(answer.contains(.trailers(stream: stream, fields: [HTTP2Field("grpc-status", "0")])))
    #expect(answer.contains(.streamClosed(stream: stream, errorCode: 0)))
}

@Test func aBodyWaitsForItsBytesAndTheWindow() throws {
    var small = HTTP2Session.Settings()
    small.initialWindowSize = 1000
    let client = try HTTP2Session(role: .client)
    let server = try HTTP2Session(role: .server, settings: small)
    exchange(client, server)  // settings first
    let stream = try #require(client.request(fields: requestFields("PUT"), hasBody: true))
    client.sendBody(stream: stream, ByteBuffer(repeating: 0x61, count: 5000))
    client.finishBody(stream: stream)
    func received(_ events: [HTTP2Event]) -> Int {
        events.reduce(0) { if case .data(_, let bytes) = $1 { $0 + bytes.readableBytes } else { $0 } }
    }
    // Nothing is acknowledged: only the window's worth arrives, the rest waits in the client.
    let first = exchange(client, server).server
    #expect(received(first) == 1000)
    #expect(client.bufferedBody(stream: stream) == 4000)
    server.consumed(stream: stream, count: 1000)
    #expect(received(exchange(client, server).server) == 1000)
    // Acknowledging the rest lets it all through, and the stream ends.
    var total = 2000
    for _ in 0..<10 where total < 5000 {
        server.consumed(stream: stream, count: 1000)
        let events = exchange(client, server).server
        total += received(events)
    }
    #expect(total == 5000)
}

@Test func malformedRequestsAreResetByTheLibraryNeverDelivered() throws {
    let client = try HTTP2Session(role: .client)
    let server = try HTTP2Session(role: .server)
    // Connection-specific fields and CR/LF in values are forbidden in HTTP/2 (RFC 9113 §8.2.2, §8.2.1).
    // (Uppercase names cannot be sent from here: nghttp2's client lowercases them; the live tests send raw frames.)
    for field in [HTTP2Field("connection", "keep-alive"), HTTP2Field("te", "gzip"), HTTP2Field("bad", "a\r\nb"),
        HTTP2Field("transfer-encoding", "chunked"), HTTP2Field("upgrade", "h2c")]
    {
        let stream = try #require(client.request(fields: requestFields(extra: [field]), hasBody: false))
        let (toClient, toServer) = exchange(client, server)
        #expect(!toServer.contains { if case .headers = $0 { true } else { false } }, "\(field): \(toServer)")
        #expect(toClient.contains { if case .streamClosed(stream, let code) = $0 { code != 0 } else { false } }, "\(field)")
    }
    // A well-formed one still goes through on the same connection.
    _ = try #require(client.request(fields: requestFields(extra: [HTTP2Field("te", "trailers")]), hasBody: false))
    #expect(exchange(client, server).server.contains { if case .headers(_, _, true) = $0 { true } else { false } })
}

@Test func gracefulShutdownAnnouncesThenServesNoNewStream() throws {
    let client = try HTTP2Session(role: .client)
    let server = try HTTP2Session(role: .server)
    let first = try #require(client.request(fields: requestFields(), hasBody: false))
    exchange(client, server)
    server.announceShutdown()
    let notice = exchange(client, server).client
    #expect(notice.contains { if case .goAway(let last, 0) = $0 { last == Int32.max } else { false } })
    server.goAway()
    let final = exchange(client, server).client
    #expect(final.contains(.goAway(lastStream: first, errorCode: 0)))
    // The stream in flight is still answered.
    server.respond(stream: first, fields: [HTTP2Field(":status", "204")], hasBody: false)
    #expect(exchange(client, server).client.contains { if case .headers(first, _, true) = $0 { true } else { false } })
    // A stream opened after the GOAWAY is refused, never served.
    _ = client.request(fields: requestFields(), hasBody: false)
    #expect(!exchange(client, server).server.contains { if case .headers = $0 { true } else { false } })
}

@Test func garbageIsAConnectionError() throws {
    let server = try HTTP2Session(role: .server)
    #expect(throws: HTTP2Error.self) { try server.receive(ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n")).get() }
    // The GOAWAY it queued goes out.
    #expect(server.takeOutput(allocator: allocator) != nil)
}

/// A stream closes when the side that ends it last sends its END_STREAM: on the server, that is in `takeOutput`,
/// and the close must be reported then, not when the client next sends something (it may never).
@Test func aStreamClosedBySendingItsLastFrameIsReportedByTakeEvents() throws {
    let client = try HTTP2Session(role: .client)
    let server = try HTTP2Session(role: .server)
    let stream = try #require(client.request(fields: requestFields(), hasBody: false))
    let request = exchange(client, server).server
    #expect(request.contains { if case .headers(stream, _, true) = $0 { true } else { false } })
    #expect(!request.contains(.streamClosed(stream: stream, errorCode: 0)))
    #expect(server.takeEvents().isEmpty)

    server.respond(stream: stream, fields: [HTTP2Field(":status", "204")], hasBody: false)
    let output = try #require(server.takeOutput(allocator: allocator))
    #expect(server.takeEvents() == [.streamClosed(stream: stream, errorCode: 0)])
    #expect(server.takeEvents().isEmpty, "taken once")
    let answer = try client.receive(output).get()
    #expect(answer.contains(.streamClosed(stream: stream, errorCode: 0)))
}

@Test func aHeaderBlockLowercasesHTTP1NamesAndArrivesAsSent() throws {
    var block = HTTP2HeaderBlock(reservingBytes: 64, fields: 4)
    block.append(":status", "200")
    let name = Array("Content-Type".utf8)
    let value = Array("text/HTML; charset=UTF-8".utf8)
    name.withUnsafeBytes { name in value.withUnsafeBytes { block.append(lowercasing: name, value: $0) } }
    block.append("x-empty", "")
    #expect(block.count == 3)
    #expect(block.fields == [HTTP2Field(":status", "200"), HTTP2Field("content-type", "text/HTML; charset=UTF-8"),
        HTTP2Field("x-empty", "")])
    #expect(HTTP2HeaderBlock(block.fields) == block)

    let client = try HTTP2Session(role: .client)
    let server = try HTTP2Session(role: .server)
    let stream = try #require(client.request(fields: requestFields(), hasBody: false))
    exchange(client, server)
    server.respond(stream: stream, headers: block, hasBody: false)
    let answer = exchange(client, server).client
    #expect(answer.contains(.headers(stream: stream, fields: block.fields, endStream: true)))
}

@Test func neverIndexedFieldsStayOutOfTheCompressionTable() throws {
    let client = try HTTP2Session(role: .client)
    let server = try HTTP2Session(role: .server)
    var streams: [Int32] = []
    for index in 0..<3 {
        streams.append(try #require(client.request(fields: requestFields(path: "/\(index)"), hasBody: false)))
    }
    exchange(client, server)
    // A request id is each response's own: remembering it would only evict the fields that repeat.
    for (index, stream) in streams.prefix(2).enumerated() {
        var block = HTTP2HeaderBlock()
        block.append(":status", "200")
        block.append("x-request-id", "0123456789abcdef0123456789abcde\(index)", neverIndexed: true)
        server.respond(stream: stream, headers: block, hasBody: false)
        let answer = exchange(client, server).client
        #expect(answer.contains(.headers(stream: stream, fields: block.fields, endStream: true)))
        #expect(server.encoderTableSize == 0)
    }
    // (The same field indexed takes its place in the table.)
    var indexed = HTTP2HeaderBlock()
    indexed.append(":status", "200")
    indexed.append("x-request-id", "fedcba9876543210fedcba9876543210")
    server.respond(stream: streams[2], headers: indexed, hasBody: false)
    exchange(client, server)
    #expect(server.encoderTableSize > 0)
}

@Test func skippedClientStreamIDsAreRefusedAndUsedOnesAreNot() {
    var ids = ClientStreamIDs()
    // Trailers on a stream in use, and a used stream (maybe reset by us: nghttp2 decides) are allowed.
    let answers = [5, 1, 3, 5, 7, 13, 9, 11, 7].map { ids.headersArrived(on: Int32($0)) }
    #expect(answers == [true, false, false, true, true, true, false, false, true])
    #expect(ids.highest == 13)
}

/// The frames of a client that opens stream 5 and then stream 3 (RFC 9113 §5.1.1: 3 is closed by then).
private func lowerStreamAfterHigher() -> ByteBuffer {
    func frame(_ type: UInt8, _ flags: UInt8, _ stream: UInt32, _ payload: [UInt8]) -> [UInt8] {
        let length = UInt32(payload.count)
        return [UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF), type, flags,
                UInt8(stream >> 24), UInt8(stream >> 16 & 0xFF), UInt8(stream >> 8 & 0xFF), UInt8(stream & 0xFF)] + payload
    }
    // HPACK: :method GET (static 2), :scheme http (6), :path / (4), :authority x (literal, indexed name 1).
    let block: [UInt8] = [0x82, 0x86, 0x84, 0x41, 0x01, UInt8(ascii: "x")]
    let bytes = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + frame(0x4, 0, 0, []) + frame(0x1, 0x5, 5, block)
        + frame(0x1, 0x5, 3, block)
    return ByteBuffer(bytes: bytes)
}

@Test func headersOnASkippedStreamEndTheSessionWithProtocolError() throws {
    let server = try HTTP2Session(role: .server)
    let events = try server.receive(lowerStreamAfterHigher()).get()
    #expect(events.contains { if case .headers(5, _, _) = $0 { true } else { false } })
    #expect(!events.contains { if case .headers(3, _, _) = $0 { true } else { false } })
    var output: [UInt8] = []
    while let bytes = server.takeOutput(allocator: allocator) { output += bytes.readableBytesView }
    // The last frame out is GOAWAY (type 7) with PROTOCOL_ERROR (1), and then the session is done.
    var index = 0
    var last: (type: UInt8, payload: ArraySlice<UInt8>)?
    while index + 9 <= output.count {
        let length = Int(output[index]) << 16 | Int(output[index + 1]) << 8 | Int(output[index + 2])
        last = (output[index + 3], output[(index + 9)..<(index + 9 + length)])
        index += 9 + length
    }
    #expect(last?.type == 7)
    #expect(last.map { Array($0.payload.dropFirst(4).prefix(4)) } == [0, 0, 0, 1])
    _ = server.takeEvents()
    #expect(!server.isActive)
}

@Test func anInterimResponseGoesBeforeTheFinalOne() throws {
    // RFC 9113 §8.1: a server may send 1xx heads before the final one (a 100 for `expect: 100-continue`).
    let client = try HTTP2Session(role: .client)
    let server = try HTTP2Session(role: .server)
    let fields = requestFields("POST", extra: [HTTP2Field("expect", "100-continue")])
    let stream = try #require(client.request(fields: fields, hasBody: true))
    #expect(exchange(client, server).server.contains { if case .headers(stream, _, false) = $0 { true } else { false } })
    server.respondInterim(stream: stream, status: 100)
    let interim = exchange(client, server).client
    #expect(interim == [.headers(stream: stream, fields: [HTTP2Field(":status", "100")], endStream: false)])
    client.sendBody(stream: stream, ByteBuffer(string: "body"))
    client.finishBody(stream: stream)
    #expect(exchange(client, server).server.contains(.endStream(stream: stream)))
    server.respond(stream: stream, fields: [HTTP2Field(":status", "200")], hasBody: true)
    server.sendBody(stream: stream, ByteBuffer(string: "answer"))
    server.finishBody(stream: stream)
    // The final head is reported as the response it is (nghttp2 files it under the HEADERS category), not dropped.
    let final = exchange(client, server).client
    #expect(final.first == .headers(stream: stream, fields: [HTTP2Field(":status", "200")], endStream: false))
    #expect(final.contains(.data(stream: stream, ByteBuffer(string: "answer"))))
    #expect(final.contains(.streamClosed(stream: stream, errorCode: 0)))
}
