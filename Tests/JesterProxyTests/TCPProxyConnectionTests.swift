// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import NIOCore
import NIOEmbedded
import Testing

@testable import JesterProxy

/// A tcp listener's relay on `EmbeddedChannel`: the client side is a `TCPProxyConnection`, the target an
/// `EmbeddedConnector` channel of kind `.stream` (reads only when asked).
private final class Relay {
    let loop = EmbeddedEventLoop()
    let connector: EmbeddedConnector
    let client: EmbeddedChannel

    init(answers: [Int: EmbeddedConnector.Answer] = [:]) throws {
        let configuration = try ConfigLoader(environment: [:]).load(text: """
            [log]
            access_log = false

            [[listeners]]
            name = "db"
            address = "127.0.0.1:6380"
            protocol = "tcp"
            upstream = "db"

            [upstreams.db]
            targets = ["127.0.0.1:9001", "127.0.0.1:9002"]
            """, file: "test.toml")
        connector = EmbeddedConnector(loop: loop)
        connector.answers = answers
        let runtime = WorkerRuntime(configuration: configuration, eventLoop: loop, slot: 0, connector: connector)
        let listener = try #require(configuration.listeners.first)
        let pool = try #require(runtime.pools["db"])
        client = EmbeddedChannel(
            handler: TCPProxyConnection(runtime: runtime, listener: listener, pool: pool), loop: loop)
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.9", port: 40000)).wait()
    }

    func received() throws -> String {
        var text = ""
        while let buffer = try client.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }
}

@Test func aTCPRelayCarriesBytesBothWays() throws {
    let relay = try Relay()
    let upstream = try #require(relay.connector.upstreams.first)
    #expect(upstream.kind == .stream)
    try relay.client.writeInbound(ByteBuffer(string: "PING\r\n"))
    #expect(try upstream.received() == "PING\r\n")
    try upstream.send("+PONG\r\n")
    #expect(try relay.received() == "+PONG\r\n")
    try relay.client.writeInbound(ByteBuffer(string: "GET k\r\n"))
    #expect(try upstream.received() == "GET k\r\n")
    try upstream.send("$1\r\nv\r\n")
    #expect(try relay.received() == "$1\r\nv\r\n")
    // The target goes away: so does the client's connection.
    upstream.close()
    relay.loop.run()
    #expect(!relay.client.isActive)
}

@Test func aTCPRelayTriesTheOtherTargetWhenOneRefuses() throws {
    let relay = try Relay(answers: [9001: .refuse])
    #expect(relay.connector.attempts == [9001, 9002])
    #expect(relay.connector.upstreams.count == 1 && relay.connector.upstreams[0].port == 9002)
    try relay.client.writeInbound(ByteBuffer(string: "PING\r\n"))
    #expect(try relay.connector.upstreams[0].received() == "PING\r\n")
}
