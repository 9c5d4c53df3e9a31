// SPDX-License-Identifier: Apache-2.0
import JesterTracing
import Testing

// The `[tracing] endpoint` URL and the retry schedule of exports (OTLP/HTTP "Failures" and "Throttling").

@Test(arguments: [
    ("http://127.0.0.1:4318/v1/traces", "127.0.0.1", 4318, "/v1/traces"),
    ("http://collector", "collector", 4318, "/v1/traces"),
    ("HTTP://collector:80", "collector", 80, "/v1/traces"),
    ("http://[::1]:9999/custom/path", "::1", 9999, "/custom/path"),
    ("http://[::1]", "::1", 4318, "/v1/traces"),
])
func endpointsParse(url: String, host: String, port: Int, path: String) throws {
    let endpoint = try OTLPEndpoint(parsing: url)
    #expect(endpoint == OTLPEndpoint(host: host, port: port, path: path))
}

@Test(arguments: [
    ("collector:4318", "not a URL"),
    ("https://collector", "https is not supported"),
    ("grpc://collector", "the scheme must be http"),
    ("http://:4318", "no host"),
    ("http://collector:x", "the port is not a number"),
    ("http://collector:0", "out of range"),
    ("http://collector:70000", "out of range"),
    ("http://[::1/", "unclosed '['"),
    ("http://[::1]x", "expected ':port'"),
    ("http://user@collector", "no host"),
    ("http://collector/a b", "space"),
])
func badEndpointsSayWhatIsWrong(url: String, message: String) {
    #expect {
        try OTLPEndpoint(parsing: url)
    } throws: { error in
        (error as? OTLPEndpoint.ParseError)?.message.contains(message) == true
    }
}

@Test func theHostFieldBracketsIPv6AndOmitsPort80() {
    #expect(OTLPEndpoint(host: "::1", port: 4318).hostField == "[::1]:4318")
    #expect(OTLPEndpoint(host: "collector", port: 80).hostField == "collector")
    #expect(OTLPEndpoint(host: "collector").description == "http://collector:4318/v1/traces")
}

@Test func successIsDeliveredAndClientErrorsAreFinal() {
    let policy = OTLPRetryPolicy()
    #expect(policy.action(after: .status(200, retryAfter: nil), attempt: 0, elapsed: .zero) == .delivered)
    #expect(policy.action(after: .status(204, retryAfter: nil), attempt: 3, elapsed: .seconds(1)) == .delivered)
    #expect(policy.action(after: .status(400, retryAfter: nil), attempt: 0, elapsed: .zero) == .giveUp)
    #expect(policy.action(after: .status(500, retryAfter: nil), attempt: 0, elapsed: .zero) == .giveUp)
}

@Test func throttlingAndOutagesBackOffExponentiallyWithinTheBound() {
    let policy = OTLPRetryPolicy(
        initialBackoff: .milliseconds(100), maxBackoff: .seconds(1), maxElapsed: .seconds(3))
    for status in [429, 502, 503, 504] {
        let action = policy.action(after: .status(status, retryAfter: nil), attempt: 0, elapsed: .zero)
        #expect(action == .retry(after: .milliseconds(100)))
    }
    #expect(policy.action(after: .unreachable, attempt: 1, elapsed: .zero) == .retry(after: .milliseconds(200)))
    #expect(policy.action(after: .unreachable, attempt: 3, elapsed: .zero) == .retry(after: .milliseconds(800)))
    #expect(policy.action(after: .unreachable, attempt: 4, elapsed: .zero) == .retry(after: .seconds(1)))
    #expect(policy.action(after: .unreachable, attempt: 60, elapsed: .zero) == .retry(after: .seconds(1)))
    // Retry-After is honoured, capped at maxBackoff.
    let asked = policy.action(after: .status(429, retryAfter: .milliseconds(300)), attempt: 5, elapsed: .zero)
    #expect(asked == .retry(after: .milliseconds(300)))
    let capped = policy.action(after: .status(503, retryAfter: .seconds(60)), attempt: 0, elapsed: .zero)
    #expect(capped == .retry(after: .seconds(1)))
    // A retry that would end past the bound is not made.
    #expect(policy.action(after: .unreachable, attempt: 4, elapsed: .milliseconds(2_500)) == .giveUp)
    let last = policy.action(after: .unreachable, attempt: 0, elapsed: .milliseconds(2_900))
    #expect(last == .retry(after: .milliseconds(100)))
}
