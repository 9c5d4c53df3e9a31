// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import NIOCore
import NIOEmbedded
import Testing

@testable import JesterProxy

/// The embedded tier: a client connection's handler driven byte by byte through EmbeddedChannel, with the
/// embedded loop's clock standing in for time. Local routes only (proxying needs real sockets: the live tier).
private final class Harness {
    let loop = EmbeddedEventLoop()
    let channel: EmbeddedChannel

    init(http: String = "") throws {
        let configuration = try ConfigLoader(environment: [:]).load(text: """
            [http]
            client_header_timeout = "2s"
            keepalive_timeout = "5s"
            \(http)

            [[listeners]]
            name = "main"
            address = "127.0.0.1:8080"

            [[routes]]
            path_prefix = "/"
            respond = { status = 200, body = "hello\\n" }

            [[routes]]
            path_prefix = "/moved"
            redirect = { location = "/new", status = 301 }
            """, file: "test.toml")
        let runtime = WorkerRuntime(configuration: configuration, eventLoop: loop, slot: 0)
        channel = EmbeddedChannel(handler: DownstreamConnection(runtime: runtime, listener: "main"), loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
    }

    func send(_ text: String) throws {
        try channel.writeInbound(ByteBuffer(string: text))
    }

    /// Everything the handler wrote so far, as text.
    func received() throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }
}

@Test func answersALocalRouteAndKeepsTheConnection() throws {
    let harness = try Harness()
    try harness.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    let response = try harness.received()
    #expect(response.hasPrefix("HTTP/1.1 200 OK\r\n"))
    #expect(response.hasSuffix("\r\n\r\nhello\n"))
    #expect(!response.contains("Connection: close"))
    #expect(harness.channel.isActive)
}

@Test func answersPipelinedRequestsInOrder() throws {
    let harness = try Harness()
    try harness.send("GET /moved HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    let response = try harness.received()
    let statuses = response.components(separatedBy: "HTTP/1.1 ").dropFirst().map { String($0.prefix(3)) }
    #expect(statuses == ["301", "200", "200"])
    #expect(response.hasSuffix("\r\n\r\n"))  // the HEAD answer has no body
}

@Test func aHeadArrivingInPiecesIsParsedOnce() throws {
    let harness = try Harness()
    for piece in ["GE", "T / HT", "TP/1.1\r", "\nHost: x\r\n", "\r", "\n"] { try harness.send(piece) }
    #expect(try harness.received().hasPrefix("HTTP/1.1 200 OK\r\n"))
}

@Test func aMalformedRequestGets400AndTheConnectionCloses() throws {
    let harness = try Harness()
    try harness.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
    harness.loop.run()
    let response = try harness.received()
    #expect(response.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
    #expect(response.contains("Connection: close\r\n"))
    #expect(!harness.channel.isActive)
}

@Test func aSlowHeadGets408AfterTheHeaderTimeout() throws {
    let harness = try Harness()
    try harness.send("GET / HTTP/1.1\r\nHost: x\r\n")
    harness.loop.advanceTime(by: .milliseconds(1900))
    #expect(try harness.received().isEmpty)
    harness.loop.advanceTime(by: .milliseconds(200))
    #expect(try harness.received().hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
    #expect(!harness.channel.isActive)
}

@Test func anIdleKeepAliveConnectionClosesAfterTheKeepaliveTimeout() throws {
    let harness = try Harness()
    try harness.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    _ = try harness.received()
    harness.loop.advanceTime(by: .milliseconds(4900))
    #expect(harness.channel.isActive)
    harness.loop.advanceTime(by: .milliseconds(200))
    #expect(!harness.channel.isActive)
}

@Test func aRequestWithABodyOnALocalRouteEndsTheConnection() throws {
    let harness = try Harness()
    try harness.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    harness.loop.run()
    #expect(try harness.received().contains("Connection: close\r\n"))
    #expect(!harness.channel.isActive)
}

@Test func underscoreFieldsCanBeRejected() throws {
    let harness = try Harness(http: "underscores_in_headers = \"reject\"")
    try harness.send("GET / HTTP/1.1\r\nHost: x\r\nX_Y: 1\r\n\r\n")
    harness.loop.run()
    #expect(try harness.received().hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
}
