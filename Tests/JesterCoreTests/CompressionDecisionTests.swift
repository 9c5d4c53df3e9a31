// SPDX-License-Identifier: Apache-2.0
import JesterCore
import Testing

/// An HTML response's Content-Type, as servers send it.
private let html = "text/html; charset=utf-8"

/// When a response is compressed, and the field edits that follow, as a table of responses and decisions.
@Suite struct CompressionDecisionTests {
    typealias Response = CompressionDecision.Response
    static let policy = CompressionPolicy()
    static let browser = AcceptEncoding("gzip, deflate, br, zstd")

    static func decide(
        _ response: Response, accept: AcceptEncoding = browser, head: Bool = false, policy: CompressionPolicy = policy
    ) -> CompressionDecision {
        CompressionDecision(policy: policy, isHEAD: head, accept: accept, response: response)
    }

    @Test(arguments: [
        // The usual case: coded with the route's first accepted coding, at its level.
        (Response(status: 200, contentType: html, contentLength: 5000),
            CompressionDecision.Outcome.encode(.br, level: 4)),
        (Response(status: 200, contentType: "application/json"), .encode(.br, level: 4)),
        (Response(status: 404, contentType: "text/plain", contentLength: 2000), .encode(.br, level: 4)),
        (Response(status: 500, contentType: "text/css"), .encode(.br, level: 4)),
        (Response(status: 301, contentType: "text/html", contentLength: 1024), .encode(.br, level: 4)),
        (Response(status: 200, contentType: "image/svg+xml"), .encode(.br, level: 4)),
        (Response(status: 200, contentType: "TEXT/HTML"), .encode(.br, level: 4)),
        (Response(status: 200, contentType: " text/javascript ;charset=utf-8"), .encode(.br, level: 4)),
        // Without a body.
        (Response(status: 204, contentType: html), .pass(.noContent)),
        (Response(status: 205, contentType: html), .pass(.noContent)),
        (Response(status: 101), .pass(.noContent)),
        (Response(status: 103, contentType: html), .pass(.noContent)),
        // Ranges of the identity body.
        (Response(status: 206, contentType: html, contentLength: 5000, contentRange: "bytes 0-4999/9000"),
            .pass(.range)),
        (Response(status: 200, contentType: html, contentRange: "bytes 0-9/10"), .pass(.range)),
        // Already coded: never a second coding.
        (Response(status: 200, contentType: html, contentEncoding: "gzip"), .pass(.alreadyEncoded)),
        (Response(status: 200, contentType: html, contentEncoding: "br"), .pass(.alreadyEncoded)),
        (Response(status: 200, contentType: html, contentEncoding: "identity, gzip"), .pass(.alreadyEncoded)),
        (Response(status: 200, contentType: html, contentEncoding: "x-custom"), .pass(.alreadyEncoded)),
        (Response(status: 200, contentType: html, contentEncoding: "identity"), .encode(.br, level: 4)),
        (Response(status: 200, contentType: html, contentEncoding: ""), .encode(.br, level: 4)),
        // no-transform, found among other directives and not inside quoted values.
        (Response(status: 200, contentType: html, cacheControl: "no-transform"), .pass(.noTransform)),
        (Response(status: 200, contentType: html, cacheControl: "public, max-age=60, No-Transform"),
            .pass(.noTransform)),
        (Response(status: 200, contentType: html, cacheControl: "max-age=60 , no-transform ,private"),
            .pass(.noTransform)),
        (Response(status: 200, contentType: html, cacheControl: "private=\"a, no-transform\", max-age=5"),
            .encode(.br, level: 4)),
        (Response(status: 200, contentType: html, cacheControl: "no-transformx"), .encode(.br, level: 4)),
        (Response(status: 200, contentType: html, cacheControl: "x=no-transform"), .encode(.br, level: 4)),
        // Types outside the list, or none.
        (Response(status: 200, contentType: "image/png"), .pass(.type)),
        (Response(status: 200, contentType: "application/octet-stream"), .pass(.type)),
        (Response(status: 200, contentType: "text/htmlx"), .pass(.type)),
        (Response(status: 200, contentType: "text"), .pass(.type)),
        (Response(status: 200, contentType: "text/html/x"), .pass(.type)),
        (Response(status: 200), .pass(.type)),
        // Size: under min_size or empty; unknown length is compressed.
        (Response(status: 200, contentType: html, contentLength: 1023), .pass(.tooSmall)),
        (Response(status: 200, contentType: html, contentLength: 0), .pass(.tooSmall)),
        (Response(status: 200, contentType: html, contentLength: 1024), .encode(.br, level: 4)),
    ])
    func decidesTheOutcome(response: Response, expected: CompressionDecision.Outcome) {
        #expect(Self.decide(response).outcome == expected, "\(response)")
    }

    @Test func aCodedResponseVariesLosesItsLengthAndRangesAndItsStrongTag() {
        let decision = Self.decide(Response(status: 200, contentType: html, contentLength: 5000, etag: "\"v1\""))
        #expect(decision.contentEncoding == .br)
        #expect(decision.removesLengthAndRanges)
        #expect(decision.vary == "Accept-Encoding")
        #expect(decision.etag == .replace("W/\"v1\""))
    }

    @Test(arguments: [
        (nil, CompressionDecision.ETagEdit.keep), ("\"abc\"", .replace("W/\"abc\"")), ("W/\"abc\"", .keep),
        (" \"abc\" ", .replace("W/\"abc\"")), ("\"\"", .replace("W/\"\"")), ("abc", .remove), ("\"abc", .remove),
        ("w/\"abc\"", .remove),
    ] as [(String?, CompressionDecision.ETagEdit)])
    func entityTagsAreWeakenedOrDropped(etag: String?, expected: CompressionDecision.ETagEdit) {
        let decision = Self.decide(Response(status: 200, contentType: html, etag: etag))
        #expect(decision.etag == expected, "\(String(describing: etag))")
    }

    @Test(arguments: [
        (nil, "Accept-Encoding"), ("Origin", "Origin, Accept-Encoding"),
        ("origin, cookie", "origin, cookie, Accept-Encoding"), ("Accept-Encoding", nil),
        ("Origin, accept-encoding", nil), ("*", nil), (" , Origin ,", "Origin, Accept-Encoding"),
        ("", "Accept-Encoding"),
    ] as [(String?, String?)])
    func varyIsMergedNotDuplicated(vary: String?, expected: String?) {
        let decision = Self.decide(Response(status: 200, contentType: html, vary: vary))
        #expect(decision.vary == expected, "\(String(describing: vary))")
    }

    @Test func aClientThatAcceptsNoneGetsTheBodyAsItIsWithVary() {
        for accept in [AcceptEncoding.absent, AcceptEncoding("identity"), AcceptEncoding("compress"), .init("")] {
            let decision = Self.decide(Response(status: 200, contentType: html, etag: "\"v1\""), accept: accept)
            #expect(decision.outcome == .pass(.notAccepted))
            #expect(decision.vary == "Accept-Encoding")  // another client would get a coded body
            #expect(decision.etag == .keep)  // this body is the upstream's, byte for byte
            #expect(!decision.removesLengthAndRanges)
        }
    }

    @Test func responsesThatAreNeverCodedGetNoEdits() {
        for response in [
            Response(status: 204, contentType: html),
            Response(status: 206, contentType: html, contentRange: "bytes 0-1/2"),
            Response(status: 200, contentType: html, contentEncoding: "gzip", etag: "\"v\""),
            Response(status: 200, contentType: html, cacheControl: "no-transform"),
            Response(status: 200, contentType: "image/png"),
            Response(status: 200, contentType: html, contentLength: 10),
        ] {
            let decision = Self.decide(response)
            #expect(decision.vary == nil && decision.etag == .keep && decision.contentEncoding == nil, "\(response)")
        }
    }

    @Test func headGetsTheFieldsOfACodedGetButNoBodyToCode() {
        let decision = Self.decide(
            Response(status: 200, contentType: html, contentLength: 5000, etag: "\"v1\""), head: true)
        #expect(decision.outcome == .describe(.br))
        #expect(decision.contentEncoding == .br && decision.removesLengthAndRanges)
        #expect(decision.vary == "Accept-Encoding" && decision.etag == .replace("W/\"v1\""))
        // A HEAD a GET would not code for is left as it is.
        #expect(Self.decide(Response(status: 200, contentType: "image/png"), head: true).outcome == .pass(.type))
    }

    @Test func notModifiedCarriesTheVaryAndTagOfTheResponseItStandsFor() {
        let coded = Self.decide(Response(status: 304, etag: "\"v1\""))
        #expect(coded.outcome == .pass(.notModified))
        #expect(coded.vary == "Accept-Encoding" && coded.etag == .replace("W/\"v1\""))
        #expect(coded.contentEncoding == nil)
        // A client that gets identity kept the strong tag.
        let plain = Self.decide(Response(status: 304, etag: "\"v1\""), accept: .absent)
        #expect(plain.vary == "Accept-Encoding" && plain.etag == .keep)
        // A 304 for a type that is never coded: nothing.
        let image = Self.decide(Response(status: 304, contentType: "image/png", etag: "\"v1\""))
        #expect(image.vary == nil && image.etag == .keep)
        let noTransform = Self.decide(Response(status: 304, cacheControl: "no-transform", etag: "\"v1\""))
        #expect(noTransform.vary == nil && noTransform.etag == .keep)
    }

    @Test func theRoutesSettingsDecide() {
        var policy = CompressionPolicy(
            codings: [.gzip, .zstd], minimumSize: 0, types: ["text/*", "*/*"].compactMap(MediaRange.init))
        policy.levels.gzip = 9
        func outcome(_ type: String, length: Int64? = nil, accept: AcceptEncoding = Self.browser)
            -> CompressionDecision.Outcome
        {
            Self.decide(Response(status: 200, contentType: type, contentLength: length), accept: accept, policy: policy)
                .outcome
        }
        #expect(outcome("application/pdf", length: 1) == .encode(.gzip, level: 9))
        #expect(outcome("text/x", length: 0) == .pass(.tooSmall))
        #expect(outcome("text/x", accept: AcceptEncoding("br, zstd")) == .encode(.zstd, level: 3))
        policy.types = ["text/*"].compactMap(MediaRange.init)
        #expect(outcome("text/csv") == .encode(.gzip, level: 9))
        #expect(outcome("application/csv") == .pass(.type))
    }

    @Test(arguments: [
        ("text/html", true), ("text/*", true), ("*/*", true), ("Image/SVG+XML", true),
        ("application/vnd.api+json", true),
        ("*/html", false), ("text", false), ("text/", false), ("/html", false), ("text/html; charset=utf-8", false),
        ("te xt/html", false), ("", false),
    ])
    func mediaRangesAreParsed(text: String, valid: Bool) {
        #expect((MediaRange(text) != nil) == valid, "\(text)")
    }

    @Test(arguments: [
        // (route decodes, Content-Encoding, expected)
        (true, nil, RequestDecompression.forward), (true, "identity", .forward),
        (true, "gzip", .decode(.gzip, limit: 10 << 20)),
        (true, " BR ", .decode(.br, limit: 10 << 20)), (true, "x-gzip", .decode(.gzip, limit: 10 << 20)),
        (true, "zstd, identity", .decode(.zstd, limit: 10 << 20)), (true, "gzip, br", .unsupported),
        (true, "compress", .unsupported), (false, "gzip", .forward), (false, "compress", .forward),
    ] as [(Bool, String?, RequestDecompression)])
    func requestBodiesAreDecodedOnlyWhereTheRouteAsks(
        decodes: Bool, encoding: String?, expected: RequestDecompression
    ) {
        var policy = CompressionPolicy()
        policy.decompressRequests = decodes
        #expect(
            RequestDecompression(policy: policy, contentEncoding: encoding) == expected,
            "\(String(describing: encoding))")
        #expect(RequestDecompression(policy: nil, contentEncoding: encoding) == .forward)
        #expect(RequestDecompression.acceptedCodings == "gzip, deflate, br, zstd")
    }
}

/// The rules over parsed heads: the fields read from them and the edits made to them.
@Suite struct CompressionHeadTests {
    /// `text` parsed as a response (or request) head, and its bytes.
    static func parse(_ text: String, request: Bool = false) -> (HTTPHead, [UInt8]) {
        let bytes = Array(text.utf8)
        var head = HTTPHead()
        let parser = HTTPHeadParser()
        let error = bytes.withUnsafeBytes {
            request ? parser.parseRequest($0, into: &head) : parser.parseResponse($0, into: &head)
        }
        #expect(error == nil, "\(text)")
        return (head, bytes)
    }

    @Test func theRequestsFieldLinesMakeOneList() {
        let (head, bytes) = Self.parse(
            "GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: br;q=0\r\naccept-encoding: gzip\r\n\r\n", request: true)
        let accept = bytes.withUnsafeBytes { AcceptEncoding(head: head, bytes: $0) }
        #expect(accept.isPresent && accept.weight(of: .br) == 0 && accept.preferredCoding(among: [.br, .gzip]) == .gzip)
        let (plain, plainBytes) = Self.parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n", request: true)
        #expect(!plainBytes.withUnsafeBytes { AcceptEncoding(head: plain, bytes: $0) }.isPresent)
    }

    @Test func aResponseHeadIsReadAndEdited() {
        let (head, bytes) = Self.parse(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 4096\r\nETag: \"v7\"\r\n"
                + "Vary: Origin\r\nvary: Cookie\r\nAccept-Ranges: bytes\r\nCache-Control: max-age=60\r\n"
                + "Content-Encoding: identity\r\nX-Other: 1\r\n\r\n")
        let response = bytes.withUnsafeBytes { CompressionDecision.Response(head: head, bytes: $0) }
        #expect(response == CompressionDecision.Response(
            status: 200, contentType: "text/html", contentEncoding: "identity", contentLength: 4096,
            cacheControl: "max-age=60", etag: "\"v7\"", vary: "Origin, Cookie"))
        let decision = CompressionDecision(
            policy: CompressionPolicy(), isHEAD: false, accept: AcceptEncoding("gzip"), response: response)
        #expect(decision.outcome == .encode(.gzip, level: 6))
        let kept = bytes.withUnsafeBytes { raw in
            head.fields.filter { !decision.drops($0, in: raw) }.map { String(decoding: bytes[$0.name], as: UTF8.self) }
        }
        #expect(kept == ["Content-Type", "Cache-Control", "X-Other"])
        #expect(decision.addedFields.map { "\($0.name): \($0.value)" }
            == ["Content-Encoding: gzip", "Vary: Origin, Cookie, Accept-Encoding", "ETag: W/\"v7\""])
    }

    @Test func aResponseLeftAloneLosesNoField() {
        let (head, bytes) = Self.parse(
            "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 4096\r\nETag: \"v7\"\r\n\r\n")
        let decision = bytes.withUnsafeBytes {
            CompressionDecision(
                policy: CompressionPolicy(), isHEAD: false, accept: AcceptEncoding("gzip"),
                response: CompressionDecision.Response(head: head, bytes: $0))
        }
        #expect(decision.outcome == .pass(.type) && decision.addedFields.isEmpty)
        #expect(bytes.withUnsafeBytes { raw in head.fields.allSatisfy { !decision.drops($0, in: raw) } })
    }

    @Test func aChunkedResponseHasNoDeclaredLength() {
        let (head, bytes) = Self.parse(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n")
        let response = bytes.withUnsafeBytes { CompressionDecision.Response(head: head, bytes: $0) }
        #expect(response.contentLength == nil && response.contentType == "text/html")
    }
}
