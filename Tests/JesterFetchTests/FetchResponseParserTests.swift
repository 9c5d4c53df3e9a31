// SPDX-License-Identifier: Apache-2.0
import JesterFetch
import Testing

/// Feeds `text` to a parser in pieces of `piece` bytes, then (optionally) closes; returns the last progress.
private func parse(_ text: String, piece: Int = .max, close: Bool = false, limit: Int = 1024) -> FetchResponseParser.Progress {
    var parser = FetchResponseParser(maximumBodySize: limit)
    let bytes = Array(text.utf8)
    var index = 0
    var progress = FetchResponseParser.Progress.needMoreBytes
    while index < bytes.count {
        let end = min(bytes.count, index + min(piece, bytes.count))
        progress = parser.received(bytes[index..<end])
        if case .needMoreBytes = progress {} else { return progress }
        index = end
    }
    return close ? parser.closed() : progress
}

private func response(_ progress: FetchResponseParser.Progress) -> FetchResponse? {
    if case .complete(let response) = progress { return response }
    return nil
}

private func errorCode(_ progress: FetchResponseParser.Progress) -> FetchError.Code? {
    if case .failed(let error) = progress { return error.code }
    return nil
}

@Test func readsAContentLengthResponseSplitAnywhere() throws {
    let text = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: public, max-age=60\r\n"
        + "Content-Length: 11\r\n\r\n{\"keys\":[]}"
    for piece in [1, 2, 7, 40, .max] {
        let answer = try #require(response(parse(text, piece: piece)))
        #expect(answer.status == 200 && String(decoding: answer.body, as: UTF8.self) == "{\"keys\":[]}")
        #expect(answer.field("cache-control") == "public, max-age=60")
    }
}

@Test func readsChunkedAndCloseDelimitedBodiesAndSkipsInterimResponses() throws {
    let chunked = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + "4\r\n{\"ke\r\n7\r\nys\":[]}\r\n0\r\n\r\n"
    for piece in [1, 5, .max] {
        #expect(response(parse(chunked, piece: piece)).map { String(decoding: $0.body, as: UTF8.self) } == "{\"keys\":[]}")
    }
    let untilClose = "HTTP/1.0 200 OK\r\n\r\nabc"
    #expect(response(parse(untilClose)) == nil)
    #expect(response(parse(untilClose, close: true))?.body == Array("abc".utf8))
}

@Test func refusesOversizedBrokenAndCutResponses() {
    #expect(errorCode(parse("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n", limit: 100)) == .tooLarge)
    let long = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + String(repeating: "10\r\n0123456789abcdef\r\n", count: 8)
    #expect(errorCode(parse(long, piece: 3, limit: 100)) == .tooLarge)
    #expect(errorCode(parse("HTTP/1.1 200 OK\r\n\r\n" + String(repeating: "x", count: 200), limit: 100)) == .tooLarge)
    #expect(errorCode(parse("SSH-2.0-OpenSSH\r\n\r\n")) == .badResponse)
    #expect(errorCode(parse("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")) == .badResponse)
    #expect(errorCode(parse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", close: true)) == .closedEarly)
    #expect(errorCode(parse("HTTP/1.1 200 O", close: true)) == .closedEarly)
    #expect(errorCode(parse("HTTP/1.1 101 Switching Protocols\r\n\r\n")) == .badResponse)
}

@Test func readsURLsTheLoaderAccepts() throws {
    let plain = try #require(FetchURL("http://127.0.0.1:8080/keys.json?v=1#frag"))
    #expect(plain.scheme == .http && plain.host == "127.0.0.1" && plain.port == 8080 && plain.target == "/keys.json?v=1")
    #expect(plain.authority == "127.0.0.1:8080")
    let secure = try #require(FetchURL("HTTPS://idp.example.com"))
    #expect(secure.scheme == .https && secure.port == 443 && secure.target == "/" && secure.authority == "idp.example.com")
    let v6 = try #require(FetchURL("http://[::1]:9000/jwks"))
    #expect(v6.host == "::1" && v6.port == 9000 && v6.authority == "[::1]:9000")
    for bad in ["ftp://x/", "https://", "https://user@idp/", "https://idp:0/", "https://idp:99999/", "idp/jwks",
        "https://idp/a b", "http://[::1/"]
    {
        #expect(FetchURL(bad) == nil, "\(bad)")
    }
}
