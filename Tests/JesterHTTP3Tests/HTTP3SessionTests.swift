// SPDX-License-Identifier: Apache-2.0
import JesterHTTP3
import NIOCore
import Testing

/// HTTP/3 over QUIC, client and server connected in memory (QUICPair): requests, responses, bodies, trailers,
/// flow control, malformed input and GOAWAY, with every datagram moved by the test.

@Test func handshakeCompletesWithTheCallersConnectionIDs() throws {
    let pair = try QUICPair()
    pair.pump()
    #expect(pair.client.connection.state == .established)
    #expect(pair.server?.connection.state == .established)
    #expect(pair.serverConnectionEvents.contains(.handshakeCompleted))
    #expect(pair.clientConnectionEvents.contains(.handshakeCompleted))
    // Every ID the server handed out came from the factory (the prefix a worker's slot will take).
    #expect(pair.issuedIDs.count >= 2)
    for id in pair.issuedIDs {
        #expect(id.bytes.count == 16)
        #expect(Array(id.bytes.prefix(2)) == [0x4a, 0x07])
    }
}

@Test func requestAndResponseWithBodiesAndTrailersRoundTrip() throws {
    let pair = try QUICPair()
    pair.pump()
    let requestBody = pattern(5000)
    let stream = try #require(pair.client.request(fields: requestFields("POST", "/upload"), hasBody: true))
    pair.client.sendBody(stream: stream, ByteBuffer(bytes: requestBody))
    pair.client.finishBody(stream: stream, trailers: [HTTP3Field("x-checksum", "abc")])
    pair.pump()

    let server = try #require(pair.server)
    let head = try #require(QUICPair.headers(pair.serverEvents, stream: stream))
    #expect(head[":method"] == "POST")
    #expect(head[":path"] == "/upload")
    #expect(QUICPair.body(pair.serverEvents, stream: stream) == requestBody)
    #expect(QUICPair.trailers(pair.serverEvents, stream: stream) == [HTTP3Field("x-checksum", "abc")])
    server.consumed(stream: stream, count: requestBody.count)

    let responseBody = pattern(70_000)
    try server.respond(
        stream: stream,
        fields: [HTTP3Field(":status", "200"), HTTP3Field("content-type", "a/b")],
        hasBody: true
    )
    server.sendBody(stream: stream, ByteBuffer(bytes: responseBody))
    server.finishBody(stream: stream, trailers: [HTTP3Field("grpc-status", "0")])
    for _ in 0..<20 {
        pair.pump()
        pair.client.consumed(stream: stream, count: QUICPair.body(pair.clientEvents, stream: stream).count)
    }
    let response = try #require(QUICPair.headers(pair.clientEvents, stream: stream))
    #expect(response[":status"] == "200")
    #expect(response["content-type"] == "a/b")
    #expect(QUICPair.body(pair.clientEvents, stream: stream) == responseBody)
    #expect(QUICPair.trailers(pair.clientEvents, stream: stream) == [HTTP3Field("grpc-status", "0")])
    #expect(pair.serverEvents.contains(.streamClosed(stream: stream, errorCode: HTTP3ErrorCode.noError)))
    // Acknowledged bytes are released.
    #expect(server.bufferedBody(stream: stream) == 0)
}

@Test func anInterimResponseComesBeforeTheFinalOne() throws {
    let pair = try QUICPair()
    pair.pump()
    let stream = try #require(
        pair.client.request(
            fields: requestFields("POST", extra: [HTTP3Field("expect", "100-continue")]),
            hasBody: true
        )
    )
    pair.pump()
    let server = try #require(pair.server)
    server.respondInterim(stream: stream, status: 100)
    pair.pump()
    #expect(pair.clientEvents == [.headers(stream: stream, fields: [HTTP3Field(":status", "100")], endStream: false)])
    pair.client.sendBody(stream: stream, ByteBuffer(bytes: pattern(10)))
    pair.client.finishBody(stream: stream)
    pair.pump()
    #expect(QUICPair.body(pair.serverEvents, stream: stream) == pattern(10))
    try server.respond(stream: stream, fields: [HTTP3Field(":status", "201")], hasBody: false)
    pair.pump()
    let heads = pair.clientEvents.compactMap { if case .headers(stream, let fields, _) = $0 { fields } else { nil } }
    #expect(heads == [[HTTP3Field(":status", "100")], [HTTP3Field(":status", "201")]])
}
