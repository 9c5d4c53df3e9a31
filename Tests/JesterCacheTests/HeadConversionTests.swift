// SPDX-License-Identifier: Apache-2.0
@testable import JesterCache
import JesterCore
import Testing

/// A parsed HTTP/1 head (JesterCore's parser) as the cache's request and fields.
@Suite struct HeadConversionTests {
    /// The cache's view of `text` parsed as a request head.
    private func request(_ text: String, scheme: String = "https", authority: String? = nil) -> CacheRequest? {
        var parser = HTTPHeadParser()
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { raw -> CacheRequest? in
            guard case .complete(let length) = parser.findEnd(raw, isRequest: true) else { return nil }
            let headBytes = UnsafeRawBufferPointer(rebasing: raw[0..<length])
            var head = HTTPHead()
            guard parser.parseRequest(headBytes, into: &head) == nil else { return nil }
            return CacheRequest(head: head, bytes: headBytes, scheme: scheme, authority: authority)
        }
    }

    @Test func anOriginFormRequest() throws {
        let parsed = try #require(
            request("GET /a/b?c=d HTTP/1.1\r\nHost: Example.com:443\r\nAccept:  text/html \r\nConnection: x-hop\r\n"
                + "X-Hop: 1\r\nKeep-Alive: 5\r\n\r\n"))
        #expect(parsed.method == "GET" && parsed.path == "/a/b" && parsed.query == "c=d")
        #expect(parsed.authority == "Example.com:443")
        #expect(parsed.fields == [("Host", "Example.com:443"), ("Accept", "text/html")])
        #expect(!parsed.hasBody)
        #expect(CacheKey(request: parsed, policy: .init()).text == "GET https://example.com/a/b?c=d")
    }

    @Test func anAbsoluteFormRequestAndTheRoutesAuthority() throws {
        let absolute = try #require(request("GET http://Origin.example/x?y HTTP/1.1\r\nHost: origin.example\r\n\r\n",
            scheme: "http"))
        #expect(absolute.authority == "Origin.example" && absolute.path == "/x" && absolute.query == "y")
        let bare = try #require(request("GET http://origin.example?q HTTP/1.1\r\nHost: origin.example\r\n\r\n"))
        #expect(bare.path == "" && bare.query == "q")
        #expect(CacheKey(request: bare, policy: .init()).uri == "https://origin.example/?q")
        let routed = try #require(request("GET / HTTP/1.1\r\nHost: a.example\r\n\r\n", authority: "b.example"))
        #expect(routed.authority == "b.example")
    }

    @Test func bodiesAreSeenWhateverTheirFraming() throws {
        let length = try #require(request("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n"))
        #expect(length.hasBody && length.classify(policy: .init()) == .bypass(.requestBody))
        let chunked = try #require(request("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"))
        #expect(chunked.hasBody)
        let empty = try #require(request("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"))
        #expect(!empty.hasBody)
    }
}
