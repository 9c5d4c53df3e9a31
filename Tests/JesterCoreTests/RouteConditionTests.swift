// SPDX-License-Identifier: Apache-2.0
import JesterCore
import Testing

/// Parses `text` as a request head and runs `body` with its bytes.
private func withRequest<T>(_ text: String, _ body: (UnsafeRawBufferPointer, HTTPHead) -> T) -> T {
    let bytes = Array(text.utf8)
    var head = HTTPHead()
    let parser = HTTPHeadParser(limits: .init(maxHeadSize: 8192, maxURILength: 4096, maxFieldCount: 100))
    return bytes.withUnsafeBytes { raw in
        let error = parser.parseRequest(raw, into: &head)
        precondition(error == nil, "\(String(describing: error))")
        return body(raw, head)
    }
}

@Test(arguments: [
    ("10.1.2.3", "10.0.0.0/8", true), ("11.1.2.3", "10.0.0.0/8", false), ("192.168.1.1", "192.168.1.1", true),
    ("::1", "::1", true), ("2001:db8::7", "2001:db8::/32", true), ("2001:db9::7", "2001:db8::/32", false),
    ("::ffff:10.9.9.9", "10.0.0.0/8", true), ("10.0.0.1", "::/0", false), ("1.2.3.4", "0.0.0.0/0", true),
    ("172.16.5.4", "172.16.0.0/12", true), ("172.32.0.1", "172.16.0.0/12", false),
])
func cidrContainment(address: String, network: String, inside: Bool) throws {
    let cidr = try #require(CIDR(network))
    #expect(cidr.contains(try #require(IPAddressBytes(address))) == inside)
}

@Test(arguments: ["10.0.0.0/33", "300.1.1.1", "1.2.3", "01.2.3.4", "::1::2", "2001:db8::/129", "fe80::1/x", ""])
func malformedNetworksAreRejected(text: String) {
    #expect(CIDR(text) == nil)
}

@Test func conditionsCheckMethodsHeadersQueryAndSources() throws {
    var conditions = RouteConditions()
    conditions.methods = [Array("POST".utf8)]
    conditions.headers = [
        .init(name: "x-env", test: .equals(Array("canary".utf8))),
        .init(name: "user-agent", test: .matches(try RoutePattern("(?i)bot"))),
        .init(name: "x-legacy", test: .absent),
    ]
    conditions.query = [.init(name: "v", test: .equals(Array("2".utf8))), .init(name: "debug", test: .present)]
    conditions.sources = [try #require(CIDR("10.0.0.0/8"))]
    let client = IPAddressBytes("10.1.1.1")
    let matching = "POST /x?a=1&v=2&debug HTTP/1.1\r\nHost: h\r\nX-Env: canary\r\nUser-Agent: GoodBot\r\n\r\n"
    #expect(withRequest(matching) { conditions.matches($0, head: $1, client: client) })
    #expect(!withRequest(matching) { conditions.matches($0, head: $1, client: IPAddressBytes("11.0.0.1")) })
    for broken in [
        matching.replacingOccurrences(of: "POST", with: "GET"),
        matching.replacingOccurrences(of: "canary", with: "stable"),
        matching.replacingOccurrences(of: "GoodBot", with: "curl"),
        matching.replacingOccurrences(of: "v=2", with: "v=20"),
        matching.replacingOccurrences(of: "&debug", with: ""),
        matching.replacingOccurrences(of: "\r\n\r\n", with: "\r\nX-Legacy: 1\r\n\r\n"),
    ] {
        #expect(!withRequest(broken) { conditions.matches($0, head: $1, client: client) }, "\(broken)")
    }
}

@Test func theTableFallsThroughRoutesWhoseConditionsFail() {
    // Values are names; "accept" plays the conditions: only names in `allowed` take the request.
    let table = RouteTable<String>([
        .init(hosts: [], pathPrefix: "/", value: "root"),
        .init(hosts: [], pathPrefix: "/api", value: "api-plain"),
        .init(hosts: [], pathPrefix: "/api", value: "api-post", rank: 1),
        .init(hosts: [.exact("a.example")], pathPrefix: "/api", value: "host-api", rank: 1),
    ])
    func route(_ host: String, _ path: String, allowed: Set<String>) -> String? {
        let text = host + path
        return Array(text.utf8).withUnsafeBytes {
            table.match($0, host: 0..<host.utf8.count, path: host.utf8.count..<text.utf8.count) { allowed.contains($0) }
        }
    }
    let everything: Set = ["root", "api-plain", "api-post", "host-api"]
    #expect(route("a.example", "/api/x", allowed: everything) == "host-api")
    #expect(route("b.example", "/api/x", allowed: everything) == "api-post")  // higher rank first
    #expect(route("b.example", "/api/x", allowed: ["root", "api-plain"]) == "api-plain")
    #expect(route("a.example", "/api/x", allowed: ["root"]) == "root")  // down to shorter prefixes and any host
    #expect(route("a.example", "/api/x", allowed: []) == nil)
}

@Test func queryParametersAreFoundUndecoded() {
    withRequest("GET /p?a=1&b=&c&d=x%20y HTTP/1.1\r\nHost: h\r\n\r\n") { bytes, head in
        var conditions = RouteConditions()
        conditions.query = [.init(name: "b", test: .equals([])), .init(name: "c", test: .present),
            .init(name: "d", test: .equals(Array("x%20y".utf8))), .init(name: "e", test: .absent)]
        #expect(conditions.matches(bytes, head: head, client: nil))
    }
}

@Test func pathRewritesKeepTheRestOfThePath() throws {
    func rewrite(_ rewrite: PathRewrite, _ path: String) -> String? {
        Array(path.utf8).withUnsafeBytes { bytes in
            rewrite.rewrite(bytes, path: 0..<bytes.count).map { String(decoding: $0, as: UTF8.self) }
        }
    }
    #expect(rewrite(.replacePrefix(count: 4, replacement: []), "/api/users") == "/users")
    #expect(rewrite(.replacePrefix(count: 4, replacement: []), "/api") == "/")
    #expect(rewrite(.replacePrefix(count: 3, replacement: Array("/v2".utf8)), "/v1/x") == "/v2/x")
    let pattern = try RoutePattern("^/old/([a-z]+)/([0-9]+)$")
    #expect(rewrite(.regex(pattern, template: "/new/$2/$1?$$"), "/old/items/42") == "/new/42/items?$")
    #expect(rewrite(.regex(pattern, template: "/new/$9"), "/old/a/1") == "/new/$9")
    #expect(rewrite(.regex(pattern, template: "/x"), "/other") == nil)
    #expect(rewrite(.none, "/x") == nil)
}

@Test func headerEditsDropSetAndRemovedNamesAndRenderTheRest() {
    let edits = HeaderEdits(set: [("X-Env", "prod")], add: [("X-Added", "1")], remove: ["X-Secret"])
    Array("x-env X-SECRET x-other".utf8).withUnsafeBytes { bytes in
        #expect(edits.drops(bytes, 0..<5))
        #expect(edits.drops(bytes, 6..<14))
        #expect(!edits.drops(bytes, 15..<22))
    }
    #expect(String(decoding: edits.rendered, as: UTF8.self) == "X-Env: prod\r\nX-Added: 1\r\n")
    #expect(HeaderEdits().isEmpty)
    // Values lose the blanks at their ends, which HTTP/2 peers would reset the stream for.
    let padded = HeaderEdits(set: [("X-Lane", " \tpriority one \t")], add: [("X-Empty", "  ")])
    #expect(String(decoding: padded.rendered, as: UTF8.self) == "X-Lane: priority one\r\nX-Empty: \r\n")
    #expect(padded.appended.map { [$0.name, $0.value] } == [["x-lane", "priority one"], ["x-empty", ""]])
}

@Test func proxyProtocolHeadersRoundTripAndBadOnesAreRefused() throws {
    let addresses = ProxyProtocol.Addresses(
        source: try #require(IPAddressBytes("203.0.113.7")), sourcePort: 40000,
        destination: try #require(IPAddressBytes("192.0.2.1")), destinationPort: 443)
    let v1 = ProxyProtocol.encodeV1(addresses)
    #expect(String(decoding: v1, as: UTF8.self) == "PROXY TCP4 203.0.113.7 192.0.2.1 40000 443\r\n")
    #expect(ProxyProtocol.parse(v1 + Array("GET".utf8)) == .header(length: v1.count, addresses: addresses))
    let v2 = ProxyProtocol.encodeV2(addresses)
    #expect(v2.count == 28 && ProxyProtocol.parse(v2) == .header(length: 28, addresses: addresses))
    let six = ProxyProtocol.Addresses(
        source: try #require(IPAddressBytes("2001:db8::1")), sourcePort: 1,
        destination: try #require(IPAddressBytes("::1")), destinationPort: 2)
    #expect(ProxyProtocol.parse(ProxyProtocol.encodeV2(six)) == .header(length: 52, addresses: six))
    #expect(ProxyProtocol.parse(ProxyProtocol.encodeV1(six)) == .header(length: ProxyProtocol.encodeV1(six).count,
        addresses: six))
    // Incomplete headers ask for more; garbage, overlong and mixed families are refused.
    #expect(ProxyProtocol.parse(v1.prefix(10)) == .needMoreBytes)
    #expect(ProxyProtocol.parse(v2.prefix(20)) == .needMoreBytes)
    #expect(ProxyProtocol.parse(Array("PRO".utf8)) == .needMoreBytes)
    #expect(ProxyProtocol.parse(Array("PROXY UNKNOWN\r\n".utf8)) == .header(length: 15, addresses: nil))
    for bad in ["GET / HTTP/1.1\r\n", "PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
        "PROXY TCP4 " + String(repeating: "1", count: 120) + "\r\n"]
    {
        guard case .invalid = ProxyProtocol.parse(Array(bad.utf8)) else {
            Issue.record("accepted \(bad)")
            continue
        }
    }
}

@Test func tlsConditionsCheckServerNameAndClientSubject() throws {
    var byName = RouteConditions()
    byName.serverNames = [HostPattern("api.example.com"), HostPattern("*.internal.example")]
    let request = "GET / HTTP/1.1\r\nHost: anything\r\n\r\n"
    func check(_ conditions: RouteConditions, _ tls: TLSRouteFacts?) -> Bool {
        withRequest(request) { conditions.matches($0, head: $1, client: nil, tls: tls) }
    }
    #expect(check(byName, TLSRouteFacts(serverName: "API.example.com", clientSubject: nil)))
    #expect(check(byName, TLSRouteFacts(serverName: "db.internal.example", clientSubject: nil)))
    #expect(!check(byName, TLSRouteFacts(serverName: "internal.example", clientSubject: nil)))
    #expect(!check(byName, TLSRouteFacts(serverName: nil, clientSubject: nil)))
    #expect(!check(byName, nil))  // plain text never matches an sni condition

    var admins = RouteConditions()
    admins.clientSubject = .matches(try RoutePattern("^O=Example,CN=(alice|bob)$"))
    #expect(check(admins, TLSRouteFacts(serverName: nil, clientSubject: "O=Example,CN=alice")))
    #expect(!check(admins, TLSRouteFacts(serverName: nil, clientSubject: "O=Example,CN=mallory")))
    #expect(!check(admins, TLSRouteFacts(serverName: nil, clientSubject: nil)))
    var anonymous = RouteConditions()
    anonymous.clientSubject = .absent
    #expect(check(anonymous, TLSRouteFacts(serverName: nil, clientSubject: nil)))
    #expect(!check(anonymous, TLSRouteFacts(serverName: nil, clientSubject: "CN=x")))
    #expect(admins.specificity > RouteConditions().specificity)
}

@Test(arguments: [
    ("10.0.0.1", "10.0.0.1"), ("::1", "::1"), ("2001:DB8:0:0:0:0:0:42", "2001:db8::42"), ("::", "::"),
    ("2001:db8:0:1:0:0:0:1", "2001:db8:0:1::1"), ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2:3:4:5:6"),
    ("fe80:0:0:1:0:0:0:0", "fe80:0:0:1::"), ("::ffff:10.1.2.3", "::ffff:a01:203"),
])
func addressesPrintInCanonicalForm(text: String, canonical: String) throws {
    #expect(try #require(IPAddressBytes(text)).description == canonical)
}

@Test(arguments: ["0.0.0.0", "127.0.0.1", "10.20.30.40", "255.255.255.255", "192.168.100.9", "1.99.100.255"])
func dottedQuadsPrintLikeTheParserReadsThem(text: String) throws {
    let bytes = try #require(IPAddressBytes(text)).bytes
    let address = bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
    #expect(IPAddressBytes.dottedQuad(address) == text)
}

@Test func bodyPeekDecodesWithoutConsumingAndStopsAtTheLimit() throws {
    func peek(_ text: String, _ framing: BodyFraming, limit: Int) throws -> BodyPeek? {
        try Array(text.utf8).withUnsafeBytes { try BodyPeek.peek($0, framing: framing, limit: limit) }
    }
    #expect(try peek("hello", .length(5), limit: 100) == BodyPeek(bytes: Array("hello".utf8), isComplete: true))
    #expect(try peek("hel", .length(5), limit: 100) == nil)  // more bytes needed
    #expect(try peek("hel", .length(5), limit: 3) == BodyPeek(bytes: Array("hel".utf8), isComplete: false))
    #expect(try peek("5\r\nhello\r\n0\r\n\r\n", .chunked, limit: 100) == BodyPeek(bytes: Array("hello".utf8), isComplete: true))
    #expect(try peek("5\r\nhello\r\n", .chunked, limit: 100) == nil)
    #expect(try peek("5\r\nhello\r\n", .chunked, limit: 4) == BodyPeek(bytes: Array("hell".utf8), isComplete: false))
    #expect(throws: HTTPParseError.self) { try peek("zz\r\nhello\r\n", .chunked, limit: 100) }
}

@Test func bodyConditionsMatchRegexAndJSONFields() throws {
    var conditions = RouteConditions()
    conditions.bodyLimit = 256
    conditions.bodyJSON = [(path: ["user", "tier"], value: "gold"), (path: ["items", "1", "qty"], value: "2"),
        (path: ["express"], value: "true")]
    let request = "POST /orders HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n"
    func check(_ conditions: RouteConditions, _ body: String, complete: Bool = true) -> Bool {
        withRequest(request) {
            conditions.matches($0, head: $1, client: nil, body: BodyPeek(bytes: Array(body.utf8), isComplete: complete))
        }
    }
    let gold = #"{"user":{"tier":"gold"},"items":[{"qty":1},{"qty":2}],"express":true}"#
    #expect(check(conditions, gold))
    #expect(!check(conditions, gold.replacingOccurrences(of: "gold", with: "silver")))
    #expect(!check(conditions, gold.replacingOccurrences(of: "true", with: "1")))  // a number is not a boolean
    #expect(!check(conditions, gold, complete: false))  // a cut document is never judged
    #expect(!check(conditions, "not json"))
    var byRegex = RouteConditions()
    byRegex.bodyLimit = 8
    byRegex.bodyPattern = try RoutePattern("^<\\?xml")
    #expect(check(byRegex, "<?xml version=\"1.0\"?><a/>", complete: false))
    #expect(!check(byRegex, "{\"a\":1}"))
    #expect(byRegex.needsBody && !RouteConditions().needsBody)
}
