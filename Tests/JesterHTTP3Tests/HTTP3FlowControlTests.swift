// SPDX-License-Identifier: Apache-2.0
import JesterHTTP3
import NIOCore
import Testing

/// Flow control as backpressure: a receiver that does not consume holds the sender at its window, and consuming
/// lets the rest through; a body source that has nothing yet does not stall other streams.

@Test func anUnconsumedRequestBodyStopsAtTheStreamWindowAndResumesWhenConsumed() throws {
    var transport = QUICTransportSettings()
    transport.maxStreamData = 64 * 1024
    transport.maxData = 256 * 1024
    let pair = try QUICPair(transport: transport)
    pair.pump()
    let body = pattern(1 << 20)
    let stream = try #require(pair.client.request(fields: requestFields("PUT", "/big"), hasBody: true))
    pair.client.sendBody(stream: stream, ByteBuffer(bytes: body))
    pair.client.finishBody(stream: stream)
    pair.pump()

    // Not consumed: the server has at most one window of body, and the client still holds the rest.
    let first = QUICPair.body(pair.serverEvents, stream: stream).count
    #expect(first > 0)
    #expect(first <= 64 * 1024)
    #expect(pair.client.bufferedBody(stream: stream) >= body.count - 64 * 1024)

    // Consuming in steps lets it all through, in order.
    var consumed = 0
    for _ in 0..<200 {
        let received = QUICPair.body(pair.serverEvents, stream: stream).count
        if received > consumed {
            pair.server!.consumed(stream: stream, count: received - consumed)
            consumed = received
        }
        pair.pump()
        if pair.serverEvents.contains(.endStream(stream: stream)) { break }
    }
    #expect(QUICPair.body(pair.serverEvents, stream: stream) == body)
    #expect(pair.serverEvents.contains(.endStream(stream: stream)))
}

@Test func aBodyWithNothingYetWaitsAndOtherStreamsGoOn() throws {
    let pair = try QUICPair()
    pair.pump()
    let slow = try #require(pair.client.request(fields: requestFields("GET", "/slow"), hasBody: false))
    let fast = try #require(pair.client.request(fields: requestFields("GET", "/fast"), hasBody: false))
    pair.pump()
    let server = try #require(pair.server)
    try server.respond(stream: slow, fields: [HTTP3Field(":status", "200")], hasBody: true)
    try server.respond(stream: fast, fields: [HTTP3Field(":status", "204")], hasBody: false)
    pair.pump()
    // The slow stream's head went out, its body is "not yet"; the fast one finished.
    #expect(QUICPair.headers(pair.clientEvents, stream: slow)?[":status"] == "200")
    #expect(pair.clientEvents.contains(.headers(stream: fast, fields: [HTTP3Field(":status", "204")], endStream: true)))
    #expect(!pair.clientEvents.contains(.endStream(stream: slow)))
    // More comes later, and resumes the stream.
    server.sendBody(stream: slow, ByteBuffer(bytes: pattern(10)))
    server.finishBody(stream: slow)
    pair.pump()
    #expect(QUICPair.body(pair.clientEvents, stream: slow) == pattern(10))
    #expect(pair.clientEvents.contains(.endStream(stream: slow)))
}

@Test func aSessionThatGoesAwayDiscardsItsConnectionBeforeFreeingTheBody() throws {
    let pair = try QUICPair()
    pair.pump()
    let stream = try #require(pair.client.request(fields: requestFields(), hasBody: false))
    pair.pump()
    var server: HTTP3Session? = try #require(pair.server)
    try server!.respond(stream: stream, fields: [HTTP3Field(":status", "200")], hasBody: true)
    server!.sendBody(stream: stream, ByteBuffer(bytes: pattern(100_000)))
    let connection = server!.connection
    // Body bytes are in flight, unacknowledged: ngtcp2 points at them for retransmission.
    #expect(!connection.pendingDatagrams(now: pair.now).isEmpty)
    #expect(server!.bufferedBody(stream: stream) > 0)
    pair.server = nil
    server = nil
    // The connection outlives its session here (the routing table holds it), but is finished and sends nothing.
    #expect(connection.state == .closed)
    #expect(connection.takeEvents().last == .closed)
    #expect(connection.pendingDatagrams(now: pair.now.adding(milliseconds: 500)).isEmpty)
    #expect(connection.nextDeadline == nil)
    connection.handleExpiry(now: pair.now.adding(milliseconds: 1_000))
    connection.receive(datagram: [0x40, 1, 2, 3], local: pair.serverAddress, peer: pair.clientAddress, now: pair.now)
}
