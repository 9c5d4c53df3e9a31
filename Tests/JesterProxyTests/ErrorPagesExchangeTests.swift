// SPDX-License-Identifier: Apache-2.0
import Foundation
import NIOCore
import Testing

@testable import JesterProxy

/// `error_pages.intercept` in the embedded tier (HTTP/1.1): an intercepted upstream answer is dropped with its
/// connection before any of it reaches the client, which gets the route's answer on a connection that stays;
/// a status the route does not intercept is forwarded as it came. (Both protocols on the wire: test_error_pages.)

private let route = """
    retries = 0
    error_pages = { format = "problem+json", intercept = ["503"] }
    """

@Test func anInterceptedAnswerIsReplacedAndItsConnectionClosed() throws {
    let harness = try ExchangeHarness(proxying(route: route, targets: #""127.0.0.1:9001""#))
    try harness.send("GET /a HTTP/1.1\r\nHost: x\r\nX-Request-Id: embedded-1\r\n\r\n")
    let upstream = try harness.onlyUpstream()
    _ = try upstream.received()
    // The head and the start of a body that should never be seen.
    try upstream.send("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 40\r\nX-Secret: 1\r\n\r\nupstream-internal")
    let received = try harness.received()
    #expect(received.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"))
    #expect(received.contains("Content-Type: application/problem+json\r\n"))
    #expect(!received.contains("upstream-internal") && !received.contains("X-Secret"))
    let body = try #require(received.components(separatedBy: "\r\n\r\n").last)
    let problem = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
    #expect(problem?["status"] as? Int == 503 && problem?["request_id"] as? String == "embedded-1")
    #expect(!upstream.isActive)  // its unread body goes with it
    #expect(harness.client.isActive)
    // The next request on the same client connection goes out on a new upstream connection.
    try harness.send("GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    let next = try #require(harness.connector.upstreams.last)
    #expect(next !== upstream)
    #expect(try next.received().hasPrefix("GET /b HTTP/1.1\r\n"))
    try next.send(okResponse)
    #expect(try harness.received().hasSuffix("\r\n\r\nok\n"))
}

@Test func aStatusTheRouteDoesNotInterceptIsForwarded() throws {
    let harness = try ExchangeHarness(proxying(route: route, targets: #""127.0.0.1:9001""#))
    try harness.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    let upstream = try harness.onlyUpstream()
    _ = try upstream.received()
    try upstream.send("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 9\r\n\r\nupstream\n")
    let received = try harness.received()
    #expect(received.hasPrefix("HTTP/1.1 502 Bad Gateway\r\n") && received.hasSuffix("\r\n\r\nupstream\n"))
}
