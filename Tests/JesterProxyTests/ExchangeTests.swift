// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterCore
import NIOCore
import NIOEmbedded
import Testing

@testable import JesterProxy

// MARK: The request upstream

@Test func theUpstreamRequestIsOriginFormWithForwardingFieldsAndTheRoutesEdits() throws {
    let harness = try ExchangeHarness("""
        [upstreams.app]
        targets = ["127.0.0.1:9001"]

        [[routes]]
        path_prefix = "/api/"
        upstream = "app"
        strip_prefix = true
        request_headers = { set = { "X-Gateway" = "jester" }, remove = ["X-Debug"] }
        """)
    var ids = RequestIDGenerator(seed: 7)
    harness.runtime.requestIDs = ids
    let id = ids.withNextID { String(decoding: $0, as: UTF8.self) }
    try harness.send(
        "GET http://shop.example/api/items?page=2 HTTP/1.1\r\nHost: shop.example\r\n"
            + "Connection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\nTE: trailers\r\n"
            + "X-Forwarded-For: 10.1.1.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n"
            + "X-Debug: 1\r\nX-Gateway: client\r\nAccept: */*\r\n\r\n")
    let upstream = try harness.onlyUpstream()
    #expect(upstream.port == 9001)
    #expect(try upstream.received() == """
        GET /items?page=2 HTTP/1.1\r
        Host: shop.example\r
        Accept: */*\r
        X-Gateway: jester\r
        X-Forwarded-For: 10.1.1.1, 127.0.0.9\r
        X-Forwarded-Proto: http\r
        X-Forwarded-Host: shop.example\r
        X-Request-Id: \(id)\r
        \r

        """)
}

@Test func aClientsRequestIdGoesUpstreamAsItCame() throws {
    let harness = try ExchangeHarness(proxying())
    try harness.send("GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc-123\r\n\r\n")
    let request = try harness.onlyUpstream().received()
    #expect(request.contains("X-Request-Id: abc-123\r\n"))
    #expect(request.components(separatedBy: "X-Request-Id").count == 2)
}

@Test func aFiltersForwardedFieldReplacesTheClients() throws {
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../Fixtures/auth")
        .standardized
    let tokens = try JSONDecoder().decode(
        [String: String].self, from: Data(contentsOf: fixtures.appendingPathComponent("tokens.json")))
    let token = try #require(tokens["ES256"])
    let harness = try ExchangeHarness(
        """
        [filters.token]
        kind = "jwt"
        algorithms = ["ES256"]
        issuers = ["https://id.example"]
        audiences = ["jester"]
        jwks_file = "\(fixtures.appendingPathComponent("jwks.json").path)"
        forward_claims = { sub = "X-User" }

        """ + proxying(route: #"filters = ["token"]"#))
    try harness.send("GET / HTTP/1.1\r\nHost: x\r\nX-User: mallory\r\nAuthorization: Bearer \(token)\r\n\r\n")
    let request = try harness.onlyUpstream().received()
    #expect(request.contains("X-User: alice\r\n"))
    #expect(!request.contains("mallory"))
}

@Test func aRequestBodyFollowsTheHead() throws {
    let harness = try ExchangeHarness(proxying())
    try harness.send("POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")
    let upstream = try harness.onlyUpstream()
    var request = try upstream.received()
    #expect(request.hasPrefix("POST /form HTTP/1.1\r\n"))
    #expect(request.contains("Content-Length: 5\r\n") && request.hasSuffix("\r\n\r\nab"))
    try harness.send("cde")
    request = try upstream.received()
    #expect(request == "cde")
    try upstream.send(okResponse)
    #expect(try harness.received().hasPrefix("HTTP/1.1 200 OK\r\n"))
}

// MARK: The response back

@Test func theRequestIDGoesUpstreamAndBackOnce() throws {
    let harness = try ExchangeHarness(proxying())
    try harness.send("GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: from-the-client\r\n\r\n")
    let upstream = try harness.onlyUpstream()
    #expect(try upstream.received().components(separatedBy: "X-Request-Id: from-the-client\r\n").count == 2)
    // The upstream echoes it (in its own spelling): the client still sees it once, as Jester writes it.
    try upstream.send("HTTP/1.1 200 OK\r\nx-request-id: from-the-client\r\nContent-Length: 3\r\n\r\nok\n")
    let response = try harness.received()
    #expect(response.lowercased().components(separatedBy: "x-request-id").count == 2)
    #expect(response.contains("X-Request-Id: from-the-client\r\n"))
}

@Test func theResponseStreamsBackWithTheRoutesEdits() throws {
    let harness = try ExchangeHarness(proxying(route: """
        response_headers = { set = { "Cache-Control" = "no-store" }, remove = ["X-Internal"] }
        """))
    try harness.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    let upstream = try harness.onlyUpstream()
    _ = try upstream.received()
    try upstream.send(
        "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=9\r\nX-Hop: 1\r\n"
            + "X-Internal: secret\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    // The head and the first chunk reach the client before the target has sent the rest; every response
    // carries the request's id.
    let received = try harness.received()
    let idLine = try #require(received.firstRange(of: /X-Request-Id: [0-9a-f]{32}\r\n/))
    #expect(received.replacingCharacters(in: idLine, with: "") == """
        HTTP/1.1 200 OK\r
        Content-Type: text/plain\r
        Cache-Control: no-store\r
        Transfer-Encoding: chunked\r
        \r
        5\r
        hello\r

        """)
    // Having passed that on, Jester reads again (the client can take more): the rest follows as it comes.
    try upstream.send("6\r\n world\r\n0\r\n\r\n")
    #expect(try harness.received() == "6\r\n world\r\n0\r\n\r\n")
    #expect(harness.client.isActive && upstream.isActive)
}

@Test func aHeadAnswerHasNoBodyAndTheConnectionStays() throws {
    let harness = try ExchangeHarness(proxying(targets: #""127.0.0.1:9001""#))
    try harness.send("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    let upstream = try harness.onlyUpstream()
    #expect(try upstream.received().hasPrefix("HEAD / HTTP/1.1\r\n"))
    try upstream.send("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    let response = try harness.received()
    #expect(response.hasPrefix("HTTP/1.1 200 OK\r\n") && response.contains("Content-Length: 1000\r\n"))
    #expect(response.hasSuffix("\r\n\r\n"))
    // The connection took the HEAD answer as complete: the next request reuses it.
    try harness.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    harness.loop.run()
    #expect(harness.connector.attempts.count == 1)
    #expect(try upstream.received().hasPrefix("GET / HTTP/1.1\r\n"))
}

// MARK: Keep-alive

@Test func theNextRequestReusesTheIdleUpstreamConnection() throws {
    let harness = try ExchangeHarness(proxying(targets: #""127.0.0.1:9001""#))
    try harness.send("GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
    let upstream = try harness.onlyUpstream()
    #expect(try upstream.received().hasPrefix("GET /one HTTP/1.1\r\n"))
    try upstream.send(okResponse)
    #expect(try harness.received().hasSuffix("\r\n\r\nok\n"))
    harness.loop.run()
    try harness.send("GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
    harness.loop.run()
    #expect(try upstream.received().hasPrefix("GET /two HTTP/1.1\r\n"))
    try upstream.send(okResponse)
    harness.loop.run()
    #expect(try harness.received().hasSuffix("\r\n\r\nok\n"))
    #expect(harness.connector.attempts == [9001])
}

@Test func aResponseThatClosesItsConnectionIsNotReused() throws {
    let harness = try ExchangeHarness(proxying(targets: #""127.0.0.1:9001""#))
    try harness.send("GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
    let first = try harness.onlyUpstream()
    try first.send("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nok\n")
    // The target's Connection: close is hop-by-hop: the client's connection stays.
    let response = try harness.received()
    #expect(response.hasSuffix("\r\n\r\nok\n") && !response.contains("Connection: close"))
    harness.loop.run()
    #expect(!first.isActive)
    try harness.send("GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
    harness.loop.run()
    #expect(harness.connector.attempts == [9001, 9001])
    #expect(try harness.upstream(9001).received().hasPrefix("GET /two HTTP/1.1\r\n"))
}

@Test func aReusedConnectionThatClosesBeforeAnsweringIsReplayedOnAFreshOne() throws {
    let harness = try ExchangeHarness(proxying(targets: #""127.0.0.1:9001""#))
    try harness.send("GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
    let stale = try harness.onlyUpstream()
    _ = try stale.received()
    try stale.send(okResponse)
    _ = try harness.received()
    harness.loop.run()
    try harness.send("GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
    harness.loop.run()
    #expect(try stale.received().hasPrefix("GET /two HTTP/1.1\r\n"))
    // The target had closed it meanwhile (its keep-alive timeout): nothing was answered, so the request goes
    // again, on a new connection, and the client never knows.
    stale.close()
    harness.loop.run()
    #expect(harness.connector.attempts == [9001, 9001])
    let fresh = try harness.upstream(9001)
    #expect(fresh !== stale)
    #expect(try fresh.received().hasPrefix("GET /two HTTP/1.1\r\n"))
    try fresh.send(okResponse)
    #expect(try harness.received().hasPrefix("HTTP/1.1 200 OK\r\n"))
    #expect(harness.runtime.counters.upstreamReplays == 1)
}

@Test func aFreshConnectionThatClosesBeforeAnsweringIsRetriedNotReplayed() throws {
    // (The default policy: one retry, on "reset" among others.)
    let harness = try ExchangeHarness(proxying())
    try harness.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    let first = try harness.onlyUpstream()
    first.close()
    harness.loop.run()
    // Not a stale keep-alive connection (it never answered anything): the target's failure, so the request goes
    // to the other target after the retry backoff, and counts as a retry, not a replay.
    #expect(try harness.received().isEmpty)
    harness.loop.advanceTime(by: .seconds(1))
    let second = try #require(harness.connector.upstreams.last)
    #expect(second.port != first.port)
    #expect(try second.received().hasPrefix("GET / HTTP/1.1\r\n"))
    try second.send(okResponse)
    #expect(try harness.received().hasPrefix("HTTP/1.1 200 OK\r\n"))
    #expect(harness.runtime.counters.upstreamReplays == 0 && harness.runtime.counters.upstreamRetries == 1)
}

@Test func aTargetThatClosesWithoutAnsweringGets502WhenNoRetryHelps() throws {
    let harness = try ExchangeHarness(proxying(targets: #""127.0.0.1:9001""#))
    try harness.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    try harness.onlyUpstream().close()
    harness.loop.advanceTime(by: .seconds(1))
    // The retry found no other target: the client gets what the failed attempt got, not "no target" (503).
    #expect(try harness.received().hasPrefix("HTTP/1.1 502 Bad Gateway\r\n"))
    #expect(harness.connector.attempts == [9001])
}

// MARK: Retries and failures

@Test func a503IsRetriedOnTheOtherTarget() throws {
    let harness = try ExchangeHarness(proxying(route: """
        retries = 1
        retry_on = ["503"]
        """))
    try harness.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    let first = try harness.onlyUpstream()
    _ = try first.received()
    try first.send("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
    // The 503 is not forwarded; after the backoff the request goes to the target that did not fail it.
    #expect(try harness.received().isEmpty)
    harness.loop.advanceTime(by: .seconds(1))
    #expect(!first.isActive)
    #expect(harness.connector.upstreams.count == 2)
    let second = harness.connector.upstreams[1]
    #expect(second.port != first.port)
    #expect(try second.received().hasPrefix("GET / HTTP/1.1\r\n"))
    try second.send(okResponse)
    #expect(try harness.received().hasPrefix("HTTP/1.1 200 OK\r\n"))
    #expect(harness.runtime.counters.upstreamRetries == 1)
}

@Test func aStatusTheRouteDoesNotRetryIsForwarded() throws {
    let harness = try ExchangeHarness(proxying(route: """
        retries = 1
        retry_on = ["502"]
        """))
    try harness.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    try harness.onlyUpstream().send("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
    #expect(try harness.received().hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"))
    #expect(harness.connector.upstreams.count == 1)
}

@Test func noResponseWithinTheResponseTimeoutGets504() throws {
    let harness = try ExchangeHarness(proxying(pool: #"response_timeout = "2s""#))
    try harness.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    let upstream = try harness.onlyUpstream()
    harness.loop.advanceTime(by: .milliseconds(1900))
    #expect(try harness.received().isEmpty)
    harness.loop.advanceTime(by: .milliseconds(200))
    #expect(try harness.received().hasPrefix("HTTP/1.1 504 Gateway Timeout\r\n"))
    harness.loop.run()
    #expect(!upstream.isActive)
}

@Test func aSilentTargetGets504AfterTheConnectTimeout() throws {
    let harness = try ExchangeHarness(proxying(pool: #"connect_timeout = "1s""#, targets: #""127.0.0.1:9001""#))
    harness.connector.answers[9001] = .silent
    try harness.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    harness.loop.advanceTime(by: .milliseconds(900))
    #expect(try harness.received().isEmpty)
    harness.loop.advanceTime(by: .milliseconds(200))
    #expect(try harness.received().hasPrefix("HTTP/1.1 504 Gateway Timeout\r\n"))
}

@Test func aRefusedConnectionIsTriedOnTheOtherTarget() throws {
    let harness = try ExchangeHarness(proxying(pool: "connect_attempts = 2"))
    harness.connector.answers = [9001: .refuse, 9002: .refuse]
    try harness.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    // Both refused: nothing was sent, so trying the other one was safe; then 502.
    #expect(Set(harness.connector.attempts) == [9001, 9002])
    #expect(try harness.received().hasPrefix("HTTP/1.1 502 Bad Gateway\r\n"))
    // One accepts: the request gets there.
    harness.connector.answers = [9001: .refuse]
    try harness.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    harness.loop.run()
    let upstream = try harness.upstream(9002)
    #expect(try upstream.received().hasPrefix("GET / HTTP/1.1\r\n"))
}

// MARK: Filters

@Test func aFilterRefusalOpensNoUpstreamConnection() throws {
    let harness = try ExchangeHarness(
        """
        [filters.office]
        kind = "ip_rules"
        allow = ["10.0.0.0/8"]

        """ + proxying(route: #"filters = ["office"]"#))
    try harness.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(try harness.received().hasPrefix("HTTP/1.1 403 Forbidden\r\n"))
    #expect(harness.connector.attempts.isEmpty)
    #expect(harness.client.isActive)
}

// MARK: Backpressure

@Test func theUpstreamIsNotReadWhileTheClientCannotTakeMore() throws {
    let harness = try ExchangeHarness(proxying(targets: #""127.0.0.1:9001""#))
    try harness.send("GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    let upstream = try harness.onlyUpstream()
    // The client's socket fills up while the first bytes of the response come in (the read asked for with the
    // request delivers them).
    harness.client.isWritable = false
    harness.client.pipeline.fireChannelWritabilityChanged()
    try upstream.send("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc")
    #expect(try harness.received().hasSuffix("\r\n\r\nabc"))
    // No more is read from the target until the client drains: the rest stays there, not in Jester.
    try upstream.send("def")
    harness.loop.run()
    #expect(try harness.received().isEmpty)
    harness.client.isWritable = true
    harness.client.pipeline.fireChannelWritabilityChanged()
    harness.loop.run()
    #expect(try harness.received() == "def")
}
