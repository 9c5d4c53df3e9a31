// SPDX-License-Identifier: Apache-2.0
@testable import JesterCore
import Testing

/// CORS: origin parsing, the allow-list patterns (by table, with the look-alike hosts that must never match), and
/// `CORSPolicy`'s decisions for preflights and actual requests.
@Suite struct CORSPolicyTests {
    // MARK: Origins

    @Test(arguments: [
        ("https://app.example.com", "https", "app.example.com", nil),
        ("http://localhost:3000", "http", "localhost", 3000),
        ("HTTPS://App.Example.COM", "https", "app.example.com", nil),
        ("https://app.example.com:443", "https", "app.example.com", nil),
        ("http://app.example.com:443", "http", "app.example.com", 443),
        ("https://app.example.com:80", "https", "app.example.com", 80),
        ("http://127.0.0.1:8080", "http", "127.0.0.1", 8080),
        ("http://[::1]:8080", "http", "[::1]", 8080),
        ("https://[2001:db8::1]", "https", "[2001:db8::1]", nil),
        ("chrome-extension://abcdefghij", "chrome-extension", "abcdefghij", nil),
        ("https://xn--bcher-kva.example", "https", "xn--bcher-kva.example", nil),
        ("https://under_score.example.com", "https", "under_score.example.com", nil),
    ] as [(String, String, String, Int?)])
    func originsParse(text: String, scheme: String, host: String, port: Int?) throws {
        let origin = try CORSOrigin(parsing: text)
        #expect(origin == CORSOrigin(scheme: scheme, host: host, port: port))
    }

    @Test(arguments: [
        "", "null", "app.example.com", "https:/app.example.com", "https://", "://app.example.com",
        "https://app.example.com/", "https://app.example.com/path", "https://app.example.com?q",
        "https://app.example.com#x", "https://user@app.example.com", "https://user:pw@app.example.com",
        "https://app.example.com.", "https://app..example.com", "https://.example.com", "https://app.example.com:",
        "https://app.example.com:0", "https://app.example.com:65536", "https://app.example.com:0443",
        "https://app.example.com:+443", "https://app.example.com:44x", "https://app example.com",
        "https://app.example.com ", " https://app.example.com", "https://app%2eexample.com",
        "https://bücher.example", "https://[::1", "https://[]", "https://[xyz]", "1https://a.com",
        "https://a.com, https://b.com", "https://evil.com\\.example.com", "https://a.com\r\n",
    ])
    func nonOriginsAreRefused(text: String) {
        #expect(throws: CORSOrigin.ParseError.self) { try CORSOrigin(parsing: text) }
    }

    @Test func anOriginIsWrittenAsBrowsersWriteIt() throws {
        #expect(try CORSOrigin(parsing: "HTTPS://App.Example.com:443").description == "https://app.example.com")
        #expect(try CORSOrigin(parsing: "http://a.example:8080").description == "http://a.example:8080")
    }

    // MARK: Patterns

    /// (pattern, origin, matches)
    @Test(arguments: [
        ("https://app.example.com", "https://app.example.com", true),
        ("https://app.example.com", "https://app.example.com:443", true),
        ("https://App.Example.com", "https://app.example.com", true),
        ("https://app.example.com", "http://app.example.com", false),
        ("https://app.example.com", "https://app.example.com:8443", false),
        ("https://app.example.com:8443", "https://app.example.com:8443", true),
        ("https://app.example.com:8443", "https://app.example.com", false),
        ("https://app.example.com", "https://www.app.example.com", false),
        ("https://app.example.com", "https://app.example.com.evil.net", false),
        ("https://*.example.com", "https://app.example.com", true),
        ("https://*.example.com", "https://a.b.example.com", true),
        ("https://*.example.com", "https://APP.example.com", true),
        ("https://*.example.com", "https://example.com", false),
        ("https://*.example.com", "https://evil-example.com", false),
        ("https://*.example.com", "https://evilexample.com", false),
        ("https://*.example.com", "https://example.com.evil.net", false),
        ("https://*.example.com", "https://app.example.com.evil.net", false),
        ("https://*.example.com", "https://app.example.co", false),
        ("https://*.example.com", "https://app.example.comm", false),
        ("https://*.example.com", "http://app.example.com", false),
        ("https://*.example.com", "https://app.example.com:8443", false),
        ("https://*.example.com", "https://app.example.com/.example.com", false),
        ("https://*.example.com", "https://evil.com/.example.com", false),
        ("https://*.example.com", "https://evil.com#.example.com", false),
        ("https://*.example.com", "https://evil.com?.example.com", false),
        ("https://*.example.com", "https://evil.com@x.example.com", false),
        ("https://*.example.com", "https://.example.com", false),
        ("https://*.example.com", "null", false),
        ("https://*.example.com:8443", "https://app.example.com:8443", true),
        ("https://*.example.com:8443", "https://app.example.com", false),
        ("http://*.example.com", "http://app.example.com:80", true),
        ("https://*.co.uk", "https://evil.co.uk", true),
    ])
    func patternsMatchExactly(pattern: String, origin: String, matches: Bool) throws {
        let parsed = try CORSOriginPattern(parsing: pattern)
        let allowed = (try? CORSOrigin(parsing: origin)).map(parsed.matches) ?? false
        #expect(allowed == matches, "\(pattern) against \(origin)")
    }

    /// (entry, what the message says)
    @Test(arguments: [
        ("null", "sandboxed"),
        ("*", "whole leftmost labels"),
        ("https://*", "whole leftmost labels"),
        ("https://app.*.com", "whole leftmost labels"),
        ("https://a*.example.com", "whole leftmost labels"),
        ("*.example.com", "whole leftmost labels"),
        ("https://*.*.example.com", "whole leftmost labels"),
        ("https://*.com", "at least two labels"),
        ("https://*.127.0.0.1", "at least two labels"),
        ("https://*.[::1]", "at least two labels"),
        ("https://app.example.com/", "valid host"),
        ("app.example.com", "not an origin"),
        ("https://*.example.com/", "valid host"),
    ])
    func badPatternsSayWhy(entry: String, message: String) {
        do {
            _ = try CORSOriginPattern(parsing: entry)
            Issue.record("accepted \(entry)")
        } catch {
            #expect(error.message.contains(message), "\(entry): \(error.message)")
        }
    }

    @Test func patternsAreWrittenBack() throws {
        #expect(try CORSOriginPattern(parsing: "HTTPS://*.Example.com:443").description == "https://*.example.com")
        #expect(try CORSOriginPattern(parsing: "https://*.example.com:8443").description
            == "https://*.example.com:8443")
    }

    // MARK: Decisions

    private let listed = CORSPolicy(
        origins: .listed([
            try! CORSOriginPattern(parsing: "https://app.example.com"),
            try! CORSOriginPattern(parsing: "https://*.example.org"),
        ]),
        methods: .listed(["GET", "POST", "PATCH"]), headers: .listed(["Content-Type", "X-Request-Id"]),
        exposedHeaders: .listed(["X-Total-Count"]), allowsCredentials: true, maxAgeSeconds: 600)

    private func fields(_ decision: CORSPolicy.Decision) -> [String] {
        switch decision {
        case .proceed(let fields), .answerPreflight(let fields), .refusePreflight(_, let fields):
            return fields.map(\.description)
        }
    }

    @Test func anAllowedOriginGetsItsOriginBackWithCredentialsExposedHeadersAndVary() {
        let decision = listed.decide(.init(method: "GET", origin: "https://app.example.com"))
        #expect(decision == .proceed(fields: [
            .init("Access-Control-Allow-Origin", "https://app.example.com"),
            .init("Access-Control-Allow-Credentials", "true"),
            .init("Access-Control-Expose-Headers", "X-Total-Count"),
            .init("Vary", "Origin"),
        ]))
        // A subdomain's own origin is echoed, never the pattern.
        #expect(fields(listed.decide(.init(method: "POST", origin: "https://api.eu.example.org"))).first
            == "Access-Control-Allow-Origin: https://api.eu.example.org")
    }

    @Test func refusedOriginsAndRequestsWithoutOneGoOnWithVaryOnly() {
        for origin in [nil, "https://evil.com", "https://app.example.com.evil.net", "null", "garbage",
            "https://app.example.com, https://evil.com"]
        {
            #expect(listed.decide(.init(method: "GET", origin: origin)) == .proceed(fields: [.init("Vary", "Origin")]),
                "\(origin ?? "no origin")")
        }
        // OPTIONS without Access-Control-Request-Method is not a preflight: an actual request like any other.
        #expect(fields(listed.decide(.init(method: "OPTIONS", origin: "https://app.example.com"))).first
            == "Access-Control-Allow-Origin: https://app.example.com")
    }

    @Test func anyOriginWithoutCredentialsIsTheSameOnEveryResponseAndNeverVaries() {
        let any = CORSPolicy(origins: .any, exposedHeaders: .any)
        let expected = CORSPolicy.Decision.proceed(fields: [
            .init("Access-Control-Allow-Origin", "*"), .init("Access-Control-Expose-Headers", "*"),
        ])
        for origin in [nil, "https://anyone.example", "null"] {
            #expect(any.decide(.init(method: "GET", origin: origin)) == expected)
        }
    }

    @Test func anAllowedPreflightIsAnsweredWithEverythingItNeeds() {
        let decision = listed.decide(.init(
            method: "OPTIONS", origin: "https://app.example.com", requestMethod: "PATCH",
            requestHeaders: "content-type,x-request-id"))
        #expect(fields(decision) == [
            "Access-Control-Allow-Origin: https://app.example.com",
            "Access-Control-Allow-Credentials: true",
            "Access-Control-Allow-Methods: GET, POST, PATCH",
            "Access-Control-Allow-Headers: Content-Type, X-Request-Id",
            "Access-Control-Max-Age: 600",
            "Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ])
        guard case .answerPreflight = decision else {
            Issue.record("not answered: \(decision)")
            return
        }
    }

    /// (origin, method, headers, private network, the refusal's reason)
    @Test(arguments: [
        ("https://evil.com", "GET", nil, false, "origin https://evil.com is not allowed"),
        ("https://example.org", "GET", nil, false, "origin https://example.org is not allowed"),
        ("https://app.example.com", "DELETE", nil, false, "method DELETE is not allowed"),
        ("https://app.example.com", "patch", nil, false, "method patch is not allowed"),
        ("https://app.example.com", "GET POST", nil, false, "Access-Control-Request-Method is not a method"),
        ("https://app.example.com", "", nil, false, "Access-Control-Request-Method is not a method"),
        ("https://app.example.com", "GET", "authorization", false, "header authorization is not allowed"),
        ("https://app.example.com", "GET", "content-type, x-api-key", false, "header x-api-key is not allowed"),
        ("https://app.example.com", "GET", "content type", false,
            "Access-Control-Request-Headers is not a list of names"),
        ("https://app.example.com", "GET", nil, true, "private network access is not allowed"),
    ] as [(String, String, String?, Bool, String)])
    func preflightsAskingForMoreThanAllowedAreRefused(
        origin: String, method: String, headers: String?, privateNetwork: Bool, reason: String
    ) {
        let decision = listed.decide(.init(
            method: "OPTIONS", origin: origin, requestMethod: method, requestHeaders: headers,
            requestsPrivateNetwork: privateNetwork))
        #expect(decision == .refusePreflight(reason: reason, fields: [
            .init("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
        ]))
    }

    @Test func aRefusalReasonNeverCarriesALongClientValueWhole() {
        let long = "https://" + String(repeating: "a", count: 300) + ".com"
        guard case .refusePreflight(let reason, _) = listed.decide(
            .init(method: "OPTIONS", origin: long, requestMethod: "GET"))
        else {
            Issue.record("not refused")
            return
        }
        #expect(reason.utf8.count < 140 && reason.contains("…"), "\(reason)")
    }

    @Test func wildcardMethodsAndHeadersEchoWhatWasAskedFor() {
        let open = CORSPolicy(
            origins: .listed([try! CORSOriginPattern(parsing: "https://app.example.com")]), methods: .any,
            headers: .any, allowsCredentials: true)
        let decision = open.decide(.init(
            method: "OPTIONS", origin: "https://app.example.com", requestMethod: "PURGE",
            requestHeaders: " Authorization , ,X-Custom"))
        #expect(fields(decision) == [
            "Access-Control-Allow-Origin: https://app.example.com",
            "Access-Control-Allow-Credentials: true",
            "Access-Control-Allow-Methods: PURGE",
            "Access-Control-Allow-Headers: authorization, x-custom",
            "Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ])
        // Nothing asked for: no Allow-Headers at all.
        #expect(!fields(open.decide(.init(method: "OPTIONS", origin: "https://app.example.com", requestMethod: "GET")))
            .contains { $0.hasPrefix("Access-Control-Allow-Headers") })
    }

    @Test func anyOriginPreflightsAnswerStarAndPrivateNetworkWhenAllowed() {
        let any = CORSPolicy(origins: .any, allowsPrivateNetwork: true)
        let decision = any.decide(.init(
            method: "OPTIONS", origin: "https://anyone.example", requestMethod: "POST", requestsPrivateNetwork: true))
        #expect(fields(decision) == [
            "Access-Control-Allow-Origin: *",
            "Access-Control-Allow-Methods: GET, HEAD, POST",
            "Access-Control-Allow-Private-Network: true",
            "Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers, "
                + "Access-Control-Request-Private-Network",
        ])
        // Allowed, but not asked for: not sent.
        #expect(!fields(any.decide(.init(method: "OPTIONS", origin: "https://a.example", requestMethod: "GET")))
            .contains { $0.hasPrefix("Access-Control-Allow-Private-Network") })
        // Header names are compared in any case, and none asked for is fine with an empty list.
        #expect(fields(any.decide(.init(method: "OPTIONS", origin: "https://a.example", requestMethod: "GET",
            requestHeaders: ""))).first == "Access-Control-Allow-Origin: *")
    }

    @Test func headerNamesOfARequestList() {
        #expect(CORSPolicy.headerNames("") == [])
        #expect(CORSPolicy.headerNames("Content-Type") == ["content-type"])
        #expect(CORSPolicy.headerNames("a,b , \tc\t,,") == ["a", "b", "c"])
        #expect(CORSPolicy.headerNames("a b") == nil)
        #expect(CORSPolicy.headerNames("a,\"b\"") == nil)
        #expect(CORSPolicy.headerNames("a:b") == nil)
    }
}
