// SPDX-License-Identifier: Apache-2.0
import JesterHTTP3
import NIOCore
import Testing

/// Bad requests close their stream with the right HTTP/3 error and leave the connection serving.

@Test(arguments: [
    // RFC 9114 §4.3.1: :path is required for a non-CONNECT request.
    [HTTP3Field(":method", "GET"), HTTP3Field(":scheme", "https"), HTTP3Field(":authority", "localhost")],
    // §4.2: TE may only say "trailers".
    requestFields(extra: [HTTP3Field("te", "gzip")]),
    // §4.2: connection-specific fields are malformed.
    requestFields(extra: [HTTP3Field("connection", "keep-alive")]),
    // §4.3: pseudo-header fields come before regular ones.
    [HTTP3Field(":method", "GET"), HTTP3Field("x-a", "1"), HTTP3Field(":scheme", "https"), HTTP3Field(":path", "/")],
])
func aMalformedRequestIsResetWithMessageErrorAndTheConnectionServesOn(fields: [HTTP3Field]) throws {
    let pair = try QUICPair()
    pair.pump()
    let bad = try #require(pair.client.request(fields: fields, hasBody: false))
    pair.pump()
    // The server's caller never sees the request; the client learns why.
    #expect(QUICPair.headers(pair.serverEvents, stream: bad) == nil)
    #expect(pair.clientEvents.contains(.streamReset(stream: bad, errorCode: HTTP3ErrorCode.messageError)))

    let good = try #require(pair.client.request(fields: requestFields(), hasBody: false))
    pair.pump()
    try pair.server!.respond(stream: good, fields: [HTTP3Field(":status", "200")], hasBody: false)
    pair.pump()
    #expect(pair.client.connection.state == .established)
    #expect(QUICPair.headers(pair.clientEvents, stream: good)?[":status"] == "200")
}

@Test func aContentLengthThatTheBodyContradictsIsAMessageError() throws {
    let pair = try QUICPair()
    pair.pump()
    let stream = try #require(
        pair.client.request(
            fields: requestFields("POST", extra: [HTTP3Field("content-length", "3")]),
            hasBody: true
        )
    )
    pair.client.sendBody(stream: stream, ByteBuffer(bytes: pattern(10)))
    pair.client.finishBody(stream: stream)
    pair.pump()
    #expect(pair.clientEvents.contains(.streamReset(stream: stream, errorCode: HTTP3ErrorCode.messageError)))
    #expect(pair.serverEvents.contains(.streamReset(stream: stream, errorCode: HTTP3ErrorCode.messageError)))
    #expect(!pair.serverEvents.contains(.endStream(stream: stream)))
}

@Test func aFieldSectionOverTheLimitIsRefusedWithExcessiveLoad() throws {
    var settings = HTTP3Session.Settings()
    settings.maxFieldSectionSize = 1024
    let pair = try QUICPair(serverSettings: settings)
    pair.pump()
    let big = try #require(
        pair.client.request(
            fields: requestFields(extra: [HTTP3Field("x-big", String(repeating: "a", count: 2000))]),
            hasBody: false
        )
    )
    let small = try #require(pair.client.request(fields: requestFields(), hasBody: false))
    pair.pump()
    #expect(QUICPair.headers(pair.serverEvents, stream: big) == nil)
    #expect(pair.serverEvents.contains(.streamReset(stream: big, errorCode: HTTP3ErrorCode.excessiveLoad)))
    #expect(pair.clientEvents.contains(.streamReset(stream: big, errorCode: HTTP3ErrorCode.excessiveLoad)))
    #expect(QUICPair.headers(pair.serverEvents, stream: small) != nil)
}

@Test func theClientsStreamLimitHoldsAndClosedStreamsAreReplaced() throws {
    var transport = QUICTransportSettings()
    transport.maxBidirectionalStreams = 2
    let pair = try QUICPair(transport: transport)
    pair.pump()
    let first = try #require(pair.client.request(fields: requestFields(), hasBody: false))
    let second = try #require(pair.client.request(fields: requestFields(), hasBody: false))
    // A third is over the server's limit: the client cannot open it yet.
    #expect(pair.client.request(fields: requestFields(), hasBody: false) == nil)
    pair.pump()
    for stream in [first, second] {
        try pair.server!.respond(stream: stream, fields: [HTTP3Field(":status", "200")], hasBody: false)
    }
    pair.pump()
    // Both finished, so the server let the client open two more.
    #expect(pair.client.request(fields: requestFields(), hasBody: false) != nil)
}

@Test func aPeerResetReachesTheOtherSide() throws {
    let pair = try QUICPair()
    pair.pump()
    let stream = try #require(pair.client.request(fields: requestFields("POST"), hasBody: true))
    pair.client.sendBody(stream: stream, ByteBuffer(bytes: pattern(100)))
    pair.pump()
    pair.client.reset(stream: stream, errorCode: HTTP3ErrorCode.requestCancelled)
    pair.pump()
    #expect(pair.serverEvents.contains(.streamReset(stream: stream, errorCode: HTTP3ErrorCode.requestCancelled)))
    #expect(pair.serverEvents.contains { if case .streamClosed(stream, _) = $0 { true } else { false } })
}
