// SPDX-License-Identifier: Apache-2.0
import JesterCore
import Testing

/// Parses `text` as a request head; returns the head or the error.
private func parseRequest(_ text: String, limits: HTTPHeadParser.Limits = .init()) -> (HTTPHead?, HTTPParseError?) {
    var parser = HTTPHeadParser(limits: limits)
    let bytes = Array(text.utf8)
    return bytes.withUnsafeBytes { raw in
        switch parser.findEnd(raw, isRequest: true) {
        case .needMoreBytes: return (nil, nil)
        case .failed(let error): return (nil, error)
        case .complete(let length):
            var head = HTTPHead()
            let error = parser.parseRequest(UnsafeRawBufferPointer(rebasing: raw[0..<length]), into: &head)
            return (error == nil ? head : nil, error)
        }
    }
}

@Test func parsesAPlainRequestInPlace() {
    let text = "GET /a/b?c=d HTTP/1.1\r\nHost: example.com:8080\r\nX-Thing:  value  \r\nContent-Length: 0\r\n\r\n"
    let (head, error) = parseRequest(text)
    #expect(error == nil)
    guard let head else { return }
    let bytes = Array(text.utf8)
    #expect(String(decoding: bytes[head.method], as: UTF8.self) == "GET")
    #expect(String(decoding: bytes[head.path], as: UTF8.self) == "/a/b")
    #expect(head.fields.count == 3)
    #expect(String(decoding: bytes[head.fields[1].value], as: UTF8.self) == "value")
    #expect(head.contentLength == 0)
    #expect(head.isPersistent)
}

@Test(arguments: [
    ("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", HTTPParseError.conflictingFraming),
    ("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", .badContentLength),
    ("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", .badContentLength),
    ("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", .unsupportedTransferEncoding),
    ("GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n folded\r\n\r\n", .obsoleteLineFolding),
    ("GET / HTTP/1.1\r\nHost : x\r\n\r\n", .badField),
    ("GET / HTTP/1.1\r\n\r\n", .badHost),
    ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", .badHost),
    ("GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n", .badHost),
    ("GET / HTTP/2.0\r\nHost: x\r\n\r\n", .versionNotSupported),
    ("GET / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n", .unsupportedExpectation),
    ("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", .methodNotAllowed),
    ("GET * HTTP/1.1\r\nHost: x\r\n\r\n", .badTarget),
    ("G@T / HTTP/1.1\r\nHost: x\r\n\r\n", .badRequestLine),
])
func rejectsAmbiguousRequests(text: String, expected: HTTPParseError) {
    #expect(parseRequest(text).1 == expected)
}

@Test func rejectsControlBytesAndBareLineFeeds() {
    #expect(parseRequest("GET / HTTP/1.1\r\nHost: x\r\nX: a\u{0}b\r\n\r\n").1 == .badField)
    #expect(parseRequest("GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n").1 == .badField)
}

@Test func enforcesSizeLimits() {
    let limits = HTTPHeadParser.Limits(maxHeadSize: 256, maxURILength: 64, maxFieldCount: 2)
    #expect(parseRequest("GET /" + String(repeating: "a", count: 100) + " HTTP/1.1\r\nHost: x\r\n\r\n", limits: limits).1 == .uriTooLong)
    #expect(parseRequest("GET / HTTP/1.1\r\nHost: x\r\nA: " + String(repeating: "b", count: 300) + "\r\n\r\n", limits: limits).1 == .headTooLarge)
    #expect(parseRequest("GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n", limits: limits).1 == .tooManyFields)
}

@Test func findsTheEndAcrossReads() {
    var parser = HTTPHeadParser()
    let text = Array("GET / HTTP/1.1\r\nHost: x\r\n\r\nBODY".utf8)
    for split in 1..<27 {
        let first = text[0..<split].withUnsafeBytes { parser.findEnd($0, isRequest: true) }
        #expect(first == .needMoreBytes)
        let whole = text.withUnsafeBytes { parser.findEnd($0, isRequest: true) }
        #expect(whole == .complete(length: 27))
        parser.reset()
    }
}

@Test func marksFieldsNamedByConnectionAsHopByHop() {
    let text = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nX-Kept: 2\r\n\r\n"
    guard let head = parseRequest(text).0 else {
        Issue.record("did not parse")
        return
    }
    #expect(head.connectionClose)
    #expect(!head.isPersistent)
    #expect(head.fields.map(\.isHopByHop) == [false, true, true, false])
}

@Test func parsesResponses() {
    var parser = HTTPHeadParser()
    var head = HTTPHead()
    let text = Array("HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
    let error = text.withUnsafeBytes { parser.parseResponse($0, into: &head) }
    #expect(error == nil)
    #expect(head.status == 204)
    #expect(BodyFraming.response(head, requestWasHead: false) == .none)
}

@Test func aBareLineFeedFailsAtOnceInsteadOfWaitingForATimeout() {
    // Incomplete heads, but already wrong: no need to wait for the end that a strict origin would see elsewhere.
    #expect(parseRequest("GET / HTTP/1.1\nHost: x\n").1 == .badField)
    #expect(parseRequest("GET / HTTP/1.1\r\nHost: x\nX: y\r\n").1 == .badField)
    #expect(parseRequest("GET / HTTP/1.1\r\nHost: x\r\n").1 == nil)  // merely incomplete
}

@Test func fragmentsAreNotPartOfARequestTarget() {
    #expect(parseRequest("GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n").1 == .badRequestLine)
}

@Test func fieldsRememberUnderscoresInTheirNames() {
    let (head, error) = parseRequest("GET / HTTP/1.1\r\nHost: x\r\nX_Y: 1\r\nX-Y: 2\r\n\r\n")
    #expect(error == nil)
    #expect(head?.fields.map(\.hasUnderscore) == [false, true, false])
}

private func parseResponse(_ text: String) -> HTTPParseError? {
    var parser = HTTPHeadParser(limits: .init())
    let bytes = Array(text.utf8)
    return bytes.withUnsafeBytes { raw in
        switch parser.findEnd(raw, isRequest: false) {
        case .needMoreBytes: return nil
        case .failed(let error): return error
        case .complete(let length):
            var head = HTTPHead()
            return parser.parseResponse(UnsafeRawBufferPointer(rebasing: raw[0..<length]), into: &head)
        }
    }
}

@Test(arguments: [
    "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 099 Low\r\n\r\n", "hello world",
    "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
])
func rejectsInvalidResponseHeads(text: String) {
    #expect(parseResponse(text) != nil)
}

@Test func acceptsResponsesWithoutAReasonPhrase() {
    #expect(parseResponse("HTTP/1.1 204\r\n\r\n") == nil)
    #expect(parseResponse("HTTP/1.1 200 \r\nContent-Length: 2, 2\r\n\r\n") == nil)
}

/// Found by Tests/Fuzz (regressions/http1/response-prefix-split): the answer must not depend on how the bytes
/// of a head are split between reads.
@Test func aResponsePrefixIsJudgedTheSameWhateverTheSplit() {
    let bytes = Array("0\n+\u{5}THT".utf8)
    bytes.withUnsafeBytes { raw in
        var whole = HTTPHeadParser(limits: .init())
        var split = HTTPHeadParser(limits: .init())
        let first = split.findEnd(UnsafeRawBufferPointer(rebasing: raw[0..<3]), isRequest: false)
        #expect(whole.findEnd(raw, isRequest: false) == .failed(.badStatusLine))
        #expect(first == .failed(.badStatusLine))
    }
}
