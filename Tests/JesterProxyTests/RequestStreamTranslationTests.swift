// SPDX-License-Identifier: Apache-2.0
import JesterHTTP2
import NIOCore
@testable import JesterProxy
import Testing

/// HTTP/2 requests as the HTTP/1.1 heads routing and upstreams see (RFC 9113 §8.3).

@Test func pseudoHeadersBecomeTheRequestLineAndHost() {
    let text = RequestStream.translate([
        HTTP2Field(":method", "POST"), HTTP2Field(":scheme", "https"), HTTP2Field(":authority", "api.test:8443"),
        HTTP2Field(":path", "/v1/items?x=1"), HTTP2Field("cookie", "a=1"), HTTP2Field("content-type", "text/plain"),
        HTTP2Field("cookie", "b=2"),
    ], hasBody: true, allocator: ByteBufferAllocator()).map(String.init(buffer:))
    #expect(text == "POST /v1/items?x=1 HTTP/1.1\r\nhost: api.test:8443\r\ncontent-type: text/plain\r\n"
        + "cookie: a=1; b=2\r\ntransfer-encoding: chunked\r\n\r\n")
}

@Test func aKnownLengthIsKeptAndAHostFieldStandsInForAuthority() {
    let text = RequestStream.translate([
        HTTP2Field(":method", "PUT"), HTTP2Field(":scheme", "http"), HTTP2Field(":path", "/x"),
        HTTP2Field("host", "h.test"), HTTP2Field("content-length", "5"),
    ], hasBody: true, allocator: ByteBufferAllocator()).map(String.init(buffer:))
    #expect(text == "PUT /x HTTP/1.1\r\nhost: h.test\r\ncontent-length: 5\r\n\r\n")
}

@Test func incompleteOrConnectRequestsAreRefused() {
    #expect(RequestStream.translate([HTTP2Field(":method", "GET"), HTTP2Field(":path", "/")], hasBody: false, allocator: ByteBufferAllocator()) == nil)
    #expect(RequestStream.translate([
        HTTP2Field(":method", "CONNECT"), HTTP2Field(":authority", "x:443"),
    ], hasBody: false, allocator: ByteBufferAllocator()) == nil)
}

@Test func renderedFieldsSplitIntoHTTP2Fields() {
    #expect(RequestStream.fields(ofRendered: "X-One: 1\r\nContent-Type:  text/plain \r\n")
        == [HTTP2Field("x-one", "1"), HTTP2Field("content-type", "text/plain")])
}
