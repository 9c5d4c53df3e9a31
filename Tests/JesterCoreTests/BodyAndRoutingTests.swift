// SPDX-License-Identifier: Apache-2.0
import JesterCore
import Testing

private func decodeChunked(_ text: String) throws -> (body: String, complete: Bool) {
    var reader = BodyReader(.chunked)
    let bytes = Array(text.utf8)
    var body: [UInt8] = []
    var index = 0
    try bytes.withUnsafeBytes { raw in
        while let range = try reader.next(raw, &index) { body += bytes[range] }
    }
    return (String(decoding: body, as: UTF8.self), reader.isComplete)
}

@Test func decodesChunkedBodies() throws {
    let result = try decodeChunked("5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n")
    #expect(result.body == "hello world")
    #expect(result.complete)
    #expect(try decodeChunked("5\r\nhel").complete == false)
}

@Test func acceptsBlanksBeforeAChunkExtension() throws {
    // RFC 9112 §7.1.1's BWS before ";" is the only whitespace allowed on a size line.
    #expect(try decodeChunked("5 ;a=1\r\nhello\r\n0\t \t;b\r\n\r\n").body == "hello")
}

@Test(arguments: [
    "zz\r\n", "5\nhello\r\n", "5\r\nhelloXX", "-1\r\n", "1234567890abcdef0\r\n", "0\r\nbad\u{1}\r\n\r\n",
    // Whitespace after the size with no extension (jester-http(7): none before the CRLF).
    "5  \r\nhello\r\n", "5\t\r\nhello\r\n", "0 \r\n\r\n", " 5\r\nhello\r\n",
])
func rejectsMalformedChunks(text: String) {
    #expect(throws: HTTPParseError.badChunk) { try decodeChunked(text) }
}

@Test func forwardsOneContentLengthAndNoneOnA204() {
    var head = HTTPHead()
    head.status = 200
    head.contentLength = 5
    #expect(head.forwardedContentLength == 5)
    head.status = 204
    #expect(head.forwardedContentLength == nil)
    head.status = 200
    head.isChunked = true
    #expect(head.forwardedContentLength == nil)
}

@Test func readsContentLengthBodies() throws {
    var reader = BodyReader(.length(4))
    let bytes = Array("abcdefg".utf8)
    var index = 0
    let range = try bytes.withUnsafeBytes { raw in try reader.next(raw, &index) }
    #expect(range == 0..<4)
    #expect(reader.isComplete)
}

private func route(_ table: RouteTable<String>, host: String, path: String) -> String? {
    let text = Array((host + path).utf8)
    return text.withUnsafeBytes { table.match($0, host: 0..<host.utf8.count, path: host.utf8.count..<text.count) }
}

@Test func routesByHostThenLongestPrefix() {
    let table = RouteTable<String>([
        .init(hosts: [], pathPrefix: "/", value: "default"),
        .init(hosts: [], pathPrefix: "/api", value: "api"),
        .init(hosts: [HostPattern("shop.example.com")], pathPrefix: "/", value: "shop"),
        .init(hosts: [HostPattern("*.example.com")], pathPrefix: "/", value: "wildcard"),
        .init(hosts: [HostPattern("*.eu.example.com")], pathPrefix: "/", value: "eu"),
    ])
    #expect(route(table, host: "other.test", path: "/x") == "default")
    #expect(route(table, host: "other.test", path: "/api/v1") == "api")
    #expect(route(table, host: "SHOP.example.com:8080", path: "/x") == "shop")
    #expect(route(table, host: "blog.example.com", path: "/x") == "wildcard")
    #expect(route(table, host: "a.eu.example.com", path: "/x") == "eu")
    #expect(route(table, host: "example.com", path: "/x") == "default")
}

@Test func requestIDsAreHexAndDistinct() {
    var generator = RequestIDGenerator(seed: 42)
    let ids = (0..<100).map { _ in generator.nextID() }
    #expect(Set(ids).count == 100)
    #expect(ids.allSatisfy { $0.count == 32 && $0.allSatisfy(\.isHexDigit) })
}

@Test(arguments: [
    ("GET", true, false, true), ("HEAD", true, true, true), ("PUT", true, false, false),
    ("DELETE", true, false, false), ("OPTIONS", true, false, true), ("TRACE", true, false, true),
    ("POST", false, false, false), ("PATCH", false, false, false), ("get", false, false, false),
    ("head", false, false, false), ("GETS", false, false, false), ("CONNECT", false, false, false),
])
func classifiesRequestMethods(method: String, idempotent: Bool, head: Bool, safe: Bool) {
    let bytes = Array(method.utf8)
    bytes.withUnsafeBytes { raw in
        #expect(RequestMethod.isSafe(raw, 0..<raw.count) == safe)
        #expect(RequestMethod.isIdempotent(raw, 0..<raw.count) == idempotent)
        #expect(RequestMethod.isHead(raw, 0..<raw.count) == head)
    }
}

/// The hashed prefix lookup against the obvious definition (longest matching prefix, first route on ties),
/// over many routes of many lengths and paths that share, extend and miss them.
@Test func longestPrefixMatchesABruteForceReference() {
    var generator = SystemRandomNumberGenerator()
    let alphabet = Array("ab/".utf8)
    func randomPath(_ length: Int) -> String {
        "/" + String(decoding: (0..<length).map { _ in alphabet.randomElement(using: &generator)! }, as: UTF8.self)
    }
    let prefixes = (0..<300).map { _ in randomPath(Int.random(in: 0...6, using: &generator)) }
    let table = RouteTable<String>(prefixes.enumerated().map { .init(hosts: [], pathPrefix: $1, value: "\($0)") })
    for _ in 0..<2000 {
        let path = randomPath(Int.random(in: 0...9, using: &generator))
        let expected = prefixes.enumerated()
            .filter { path.hasPrefix($0.element) }
            .max { $0.element.count < $1.element.count || ($0.element.count == $1.element.count && $0.offset > $1.offset) }
            .map { "\($0.offset)" }
        #expect(route(table, host: "x", path: path) == expected, "path \(path)")
    }
}

@Test func aThousandRoutesStillFindTheirOwn() {
    let table = RouteTable<String>((0..<1000).map { .init(hosts: [], pathPrefix: "/r\($0)/", value: "r\($0)") }
        + [.init(hosts: [], pathPrefix: "/", value: "default")])
    #expect(route(table, host: "x", path: "/r999/x") == "r999")
    #expect(route(table, host: "x", path: "/r99/x") == "r99")
    #expect(route(table, host: "x", path: "/r9999/x") == "default")
}
