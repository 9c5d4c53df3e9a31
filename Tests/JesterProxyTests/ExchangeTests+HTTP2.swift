// SPDX-License-Identifier: Apache-2.0
import JesterCore
import JesterHTTP2
import NIOCore
import NIOEmbedded
import Testing

@testable import JesterProxy

// The exchange's scenarios for an HTTP/2 client (prior knowledge on a listener with http2 = true: the
// connection starts as a `DownstreamConnection`, which hands it to `HTTP2Connection` on the preface), and for an
// HTTP/1.1 client to an h2 pool. The client or target is nghttp2 itself (`HTTP2Peer`).

/// An HTTP/2 client on the harness's client channel.
private final class H2Client {
    let harness: ExchangeHarness
    let peer: HTTP2Peer
    private var events: [HTTP2Event] = []

    init(_ body: String) throws {
        harness = try ExchangeHarness(body, listener: "http2 = true")
        peer = try HTTP2Peer(.client)
    }

    /// Opens a stream with a GET of `path` (and `fields`), and carries the frames.
    func get(_ path: String, _ fields: [HTTP2Field] = []) throws -> Int32 {
        let base = [HTTP2Field(":method", "GET"), HTTP2Field(":scheme", "http"), HTTP2Field(":authority", "x"),
            HTTP2Field(":path", path)]
        let stream = try #require(peer.session.request(fields: base + fields, hasBody: false))
        try pump()
        return stream
    }

    /// Opens a stream with a POST of `body` to `path` (no content-length), ended with `trailers`.
    func post(_ path: String, body: String, trailers: [HTTP2Field]) throws -> Int32 {
        let fields = [HTTP2Field(":method", "POST"), HTTP2Field(":scheme", "http"), HTTP2Field(":authority", "x"),
            HTTP2Field(":path", path)]
        let stream = try #require(peer.session.request(fields: fields, hasBody: true))
        peer.session.sendBody(stream: stream, ByteBuffer(string: body))
        peer.session.finishBody(stream: stream, trailers: trailers)
        try pump()
        return stream
    }

    /// Carries frames both ways until both sides are quiet.
    func pump() throws {
        try peer.exchange(with: harness.client, loop: harness.loop) { try harness.client.writeInbound($0) }
        events += peer.takeEvents()
    }

    /// What `stream` received so far.
    func response(_ stream: Int32) throws -> HTTP2Peer.Message {
        try pump()
        return HTTP2Peer.message(stream, in: events)
    }
}

@Test func anHTTP2RequestGoesUpstreamAsHTTP1AndItsResponseComesBackEdited() throws {
    let client = try H2Client(proxying(route: """
        response_headers = { set = { "Cache-Control" = "no-store" }, remove = ["X-Internal"] }
        """))
    let stream = try client.get("/a?b=1", [HTTP2Field("x-forwarded-for", "10.1.1.1"), HTTP2Field("accept", "*/*")])
    let upstream = try client.harness.onlyUpstream()
    let request = try upstream.received()
    #expect(request.hasPrefix("GET /a?b=1 HTTP/1.1\r\n"))
    for field in ["host: x", "accept: */*", "X-Forwarded-For: 10.1.1.1, 127.0.0.9", "X-Forwarded-Proto: http",
        "X-Forwarded-Host: x", "X-Request-Id: "]
    {
        #expect(request.contains("\r\n\(field)"), "\(field)")
    }
    try upstream.send("HTTP/1.1 200 OK\r\nX-Internal: secret\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n")
    let response = try client.response(stream)
    #expect(response.field(":status") == "200")
    #expect(response.field("content-type") == "text/plain" && response.field("cache-control") == "no-store")
    #expect(response.field("x-internal") == nil)
    #expect(response.body == "ok\n" && response.ended)
}

@Test func anHTTP2ClientsStreamsReuseTheIdleUpstreamConnection() throws {
    let client = try H2Client(proxying(targets: #""127.0.0.1:9001""#))
    let first = try client.get("/one")
    let upstream = try client.harness.onlyUpstream()
    #expect(try upstream.received().hasPrefix("GET /one HTTP/1.1\r\n"))
    try upstream.send(okResponse)
    #expect(try client.response(first).body == "ok\n")
    let second = try client.get("/two")
    #expect(try upstream.received().hasPrefix("GET /two HTTP/1.1\r\n"))
    try upstream.send(okResponse)
    #expect(try client.response(second).ended)
    #expect(client.harness.connector.attempts == [9001])
}

@Test func anHTTP2ClientsRequestIsReplayedAfterAStaleUpstreamConnection() throws {
    let client = try H2Client(proxying(targets: #""127.0.0.1:9001""#))
    let first = try client.get("/one")
    let stale = try client.harness.onlyUpstream()
    _ = try stale.received()
    try stale.send(okResponse)
    _ = try client.response(first)
    let second = try client.get("/two")
    #expect(try stale.received().hasPrefix("GET /two HTTP/1.1\r\n"))
    stale.close()
    try client.pump()
    let fresh = try client.harness.upstream(9001)
    #expect(fresh !== stale)
    #expect(try fresh.received().hasPrefix("GET /two HTTP/1.1\r\n"))
    try fresh.send(okResponse)
    #expect(try client.response(second).field(":status") == "200")
}

@Test func anHTTP2ClientsRequestIsRetriedOnTheOtherTargetAfterA503() throws {
    let client = try H2Client(proxying(route: """
        retries = 1
        retry_on = ["503"]
        """))
    let stream = try client.get("/")
    let first = try client.harness.onlyUpstream()
    try first.send("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
    #expect(try client.response(stream).fields.isEmpty)
    client.harness.loop.advanceTime(by: .seconds(1))
    let second = try #require(client.harness.connector.upstreams.last)
    #expect(second.port != first.port)
    #expect(try second.received().hasPrefix("GET / HTTP/1.1\r\n"))
    try second.send(okResponse)
    #expect(try client.response(stream).field(":status") == "200")
}

@Test func anHTTP2ClientGets504WhenTheResponseTimesOut() throws {
    let client = try H2Client(proxying(pool: #"response_timeout = "2s""#))
    let stream = try client.get("/")
    client.harness.loop.advanceTime(by: .milliseconds(1900))
    #expect(try client.response(stream).fields.isEmpty)
    client.harness.loop.advanceTime(by: .milliseconds(200))
    #expect(try client.response(stream).field(":status") == "504")
}

@Test func anHTTP2FilterRefusalOpensNoUpstreamConnection() throws {
    let client = try H2Client(
        """
        [filters.office]
        kind = "ip_rules"
        allow = ["10.0.0.0/8"]

        """ + proxying(route: #"filters = ["office"]"#))
    let stream = try client.get("/")
    #expect(try client.response(stream).field(":status") == "403")
    #expect(client.harness.connector.attempts.isEmpty)
}

@Test func aResponseCutShortReachesAnHTTP2ClientAsItsStartThenAReset() throws {
    // Head, part of the body and the close in one read: the client must still see the head and the part that came
    // (as an HTTP/1.1 client does), then the reset that says it is incomplete, rather than a bare reset.
    let client = try H2Client(proxying(targets: #""127.0.0.1:9001""#))
    let stream = try client.get("/partial")
    let upstream = try client.harness.onlyUpstream()
    _ = try upstream.received()
    try upstream.send("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    upstream.close()
    let response = try client.response(stream)
    #expect(response.field(":status") == "200")
    #expect(response.body == "abc")
    #expect(response.reset == 2)
}

@Test func anHTTP2ClientsRequestTrailersGoToAnHTTP1TargetAfterTheLastChunk() throws {
    let client = try H2Client(proxying(targets: #""127.0.0.1:9001""#))
    let stream = try client.post(
        "/up", body: "hello", trailers: [HTTP2Field("x-checksum", "abc"), HTTP2Field("authorization", "secret")])
    let upstream = try client.harness.onlyUpstream()
    let request = try upstream.received()
    #expect(request.hasPrefix("POST /up HTTP/1.1\r\n"))
    #expect(request.contains("\r\nTransfer-Encoding: chunked\r\n") || request.contains("\r\ntransfer-encoding: chunked\r\n"))
    // The trailer section follows the last chunk; fields that framing or authorization depend on never come from it.
    #expect(request.hasSuffix("\r\n\r\n5\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n"), "\(request)")
    try upstream.send(okResponse)
    #expect(try client.response(stream).field(":status") == "200")
}

// MARK: An HTTP/2 client to an h2 pool

/// A target of an h2 pool, played by nghttp2 on the upstream channel `upstream`.
private func answer(
    _ target: HTTP2Peer, on upstream: EmbeddedUpstream, loop: EmbeddedEventLoop,
    _ respond: (Int32, HTTP2Peer.Message) -> Void
) throws {
    try target.exchange(with: upstream.channel, loop: loop) { try upstream.send($0) }
    let events = target.takeEvents()
    for case .headers(let stream, _, _) in events {
        respond(stream, HTTP2Peer.message(stream, in: events))
    }
    try target.exchange(with: upstream.channel, loop: loop) { try upstream.send($0) }
}

@Test func anHTTP2ClientGetsAnH2TargetsFieldsAndTrailersAsTheyCame() throws {
    let client = try H2Client(proxying(pool: #"protocol = "h2""#, targets: #""127.0.0.1:9001""#))
    let stream = try client.post("/svc/Call", body: "req", trailers: [HTTP2Field("x-request-end", "1")])
    let upstream = try client.harness.onlyUpstream()
    let target = try HTTP2Peer(.server)
    var request = HTTP2Peer.Message()
    try answer(target, on: upstream, loop: client.harness.loop) { id, message in
        request = message
        target.session.respond(
            stream: id, fields: [HTTP2Field(":status", "200"), HTTP2Field("content-type", "application/grpc")],
            hasBody: true)
        target.session.sendBody(stream: id, ByteBuffer(string: "resp"))
        target.session.finishBody(stream: id, trailers: [HTTP2Field("grpc-status", "0")])
    }
    #expect(request.field(":method") == "POST" && request.field(":path") == "/svc/Call")
    #expect(request.field("te") == "trailers" && request.field("x-forwarded-for") == "127.0.0.9")
    #expect(request.body == "req" && request.trailers == [HTTP2Field("x-request-end", "1")])
    let response = try client.response(stream)
    #expect(response.field(":status") == "200" && response.field("content-type") == "application/grpc")
    // No framing made up for HTTP/1.1 reaches an HTTP/2 client.
    #expect(response.field("content-length") == nil && response.field("transfer-encoding") == nil)
    #expect(response.body == "resp" && response.trailers == [HTTP2Field("grpc-status", "0")])
}

@Test func anHTTP2ClientGets502WhenTheH2TargetResetsItsStream() throws {
    let client = try H2Client(proxying(pool: #"protocol = "h2""#, targets: #""127.0.0.1:9001""#))
    let stream = try client.get("/")
    let upstream = try client.harness.onlyUpstream()
    let target = try HTTP2Peer(.server)
    try answer(target, on: upstream, loop: client.harness.loop) { id, _ in
        target.session.reset(stream: id, errorCode: 2)
    }
    // (A reset is retried by default; with no other target, the retry answers with what the attempt got.)
    client.harness.loop.advanceTime(by: .seconds(1))
    let response = try client.response(stream)
    #expect(response.field(":status") == "502")
}

// MARK: An HTTP/1.1 client to an h2 pool

@Test func anHTTP1RequestGoesToAnH2TargetAsAStream() throws {
    let harness = try ExchangeHarness(proxying(pool: #"protocol = "h2""#, targets: #""127.0.0.1:9001""#))
    try harness.send("GET /a HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.1.1.1\r\n\r\n")
    let upstream = try harness.onlyUpstream()
    #expect(upstream.kind == .http2)
    let target = try HTTP2Peer(.server)
    try target.exchange(with: upstream.channel, loop: harness.loop) { try upstream.send($0) }
    let events = target.takeEvents()
    guard case .headers(let stream, _, _)? = events.first(where: { if case .headers = $0 { true } else { false } })
    else {
        Issue.record("no request reached the target: \(events)")
        return
    }
    let request = HTTP2Peer.message(stream, in: events)
    #expect(request.field(":method") == "GET" && request.field(":path") == "/a")
    #expect(request.field(":authority") == "x" || request.field("host") == "x")
    #expect(request.field("x-forwarded-for") == "10.1.1.1, 127.0.0.9")
    #expect(request.ended)
    target.session.respond(
        stream: stream, fields: [HTTP2Field(":status", "200"), HTTP2Field("content-length", "3")], hasBody: true)
    target.session.sendBody(stream: stream, ByteBuffer(string: "ok\n"))
    target.session.finishBody(stream: stream)
    try target.exchange(with: upstream.channel, loop: harness.loop) { try upstream.send($0) }
    let response = try harness.received()
    #expect(response.hasPrefix("HTTP/1.1 200 OK\r\n") && response.hasSuffix("\r\n\r\nok\n"))
    #expect(response.contains("Content-Length: 3\r\n"))
}

@Test func responseBytesAClientLeftUntakenAreGivenBackToTheSharedH2Connection() throws {
    // Clients that stop reading and leave mid-response: what the target sent them and they never took must still
    // be acknowledged on the shared connection, whose window (65,535 bytes) every stream on it draws from.
    let harness = try ExchangeHarness(proxying(pool: #"protocol = "h2""#, targets: #""127.0.0.1:9001""#))
    let target = try HTTP2Peer(.server)
    var upstream: EmbeddedUpstream?
    /// Sends a GET from `client` and has the target answer with `size` bytes, ending the response when `ends`.
    func exchange(_ client: EmbeddedChannel, size: Int, ends: Bool) throws {
        try client.writeInbound(ByteBuffer(string: "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"))
        if upstream == nil { upstream = try harness.onlyUpstream() }
        let upstream = try #require(upstream)
        try target.exchange(with: upstream.channel, loop: harness.loop) { try upstream.send($0) }
        guard case .headers(let stream, _, _)? = target.takeEvents().last(where: {
            if case .headers = $0 { true } else { false }
        }) else {
            Issue.record("no request reached the target")
            return
        }
        target.session.respond(stream: stream, fields: [HTTP2Field(":status", "200")], hasBody: true)
        target.session.sendBody(stream: stream, ByteBuffer(repeating: UInt8(ascii: "z"), count: size))
        if ends { target.session.finishBody(stream: stream) }
        try target.exchange(with: upstream.channel, loop: harness.loop) { try upstream.send($0) }
    }
    func newClient() throws -> EmbeddedChannel {
        let client = EmbeddedChannel(
            handler: DownstreamConnection(runtime: harness.runtime, listener: "main"), loop: harness.loop)
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.9", port: 40001)).wait()
        return client
    }
    for round in 0..<2 {
        let client = round == 0 ? harness.client : try newClient()
        // A client that cannot take more: Jester holds back its acknowledgements (backpressure) ...
        client.isWritable = false
        client.pipeline.fireChannelWritabilityChanged()
        try exchange(client, size: 30_000, ends: false)
        // ... and then leaves.
        _ = try? client.close().wait()
        harness.loop.run()
    }
    // 60,000 bytes went to clients that left: without giving them back, this answer could not pass.
    let last = try newClient()
    try exchange(last, size: 30_000, ends: true)
    var text = ""
    while let buffer = try last.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
    #expect(text.hasPrefix("HTTP/1.1 200 OK\r\n"))
    #expect(text.hasSuffix(String(repeating: "z", count: 1000) + "\r\n0\r\n\r\n"), "the whole body arrived")
}
