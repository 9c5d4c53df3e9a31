// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterCore
import JesterTracing
import NIOCore
import NIOEmbedded
import Testing

@testable import JesterProxy

// The spans of a traced request's phases: the filter run's observer (pure), the exchange setting it only for a
// recorded trace, and the whole tree of an HTTP/1.1 request through routing, two filters (one waiting on the
// thread pool) and two upstream attempts (EmbeddedChannel).

// MARK: The filter run's observer (pure: no channel)

/// What a run told its observer, as lines.
private final class RunRecorder: FilterRunObserver {
    var events: [String] = []

    func filterBegan(_ filter: any RequestFilter, kind: FilterKindName?) {
        events.append("began \(filter.name) \(kind?.rawValue ?? "-")")
    }

    func filterWaits() {
        events.append("waits")
    }

    func filterDecided(_ verdict: FilterVerdict) {
        switch verdict {
        case .proceed: events.append("proceed")
        case .respond(let response, _): events.append("respond \(response.status)")
        case .fail(let status, _): events.append("fail \(status)")
        }
    }

    func filterAbandoned() {
        events.append("abandoned")
    }
}

/// A filter whose answer the test scripts: now, later (the test resumes it), or from inside `apply`.
private final class Scripted: RequestFilter {
    enum Script {
        case now(FilterVerdict)
        case later
        case resumedWhileApplying(FilterVerdict)
    }

    let name: String
    let script: Script
    var waitingIn: FilterContext?

    init(_ name: String, _ script: Script) {
        self.name = name
        self.script = script
    }

    func apply(_ request: FilterInput, context: FilterContext) -> FilterStep {
        switch script {
        case .now(let verdict): return .decided(verdict)
        case .later:
            waitingIn = context
            return .suspended
        case .resumedWhileApplying(let verdict):
            context.resume(verdict)
            return .suspended
        }
    }
}

private func observedRun(_ filters: [Scripted], kinds: [FilterKindName] = []) -> (FilterContext, RunRecorder) {
    let context = FilterContext(chain: FilterChain(filters: filters, kinds: kinds), input: input())
    let recorder = RunRecorder()
    context.observer = recorder
    return (context, recorder)
}

@Test func theObserverHearsEachFilterBeginAndDecideAndAWaitInBetween() {
    let waiting = Scripted("slow", .later)
    let (context, recorder) = observedRun(
        [Scripted("office", .now(.proceed)), waiting, Scripted("limit", .now(.fail(status: 429, reason: "over")))],
        kinds: [.ipRules, .rateLimit, .rateLimit])
    #expect(context.start() == nil)
    #expect(recorder.events == ["began office ip_rules", "proceed", "began slow rate_limit", "waits"])
    waiting.waitingIn?.resume(.proceed)
    #expect(recorder.events.dropFirst(4) == ["proceed", "began limit rate_limit", "fail 429"])
    // A late second answer is ignored, and so is a cancel after the run decided.
    waiting.waitingIn?.resume(.proceed)
    context.cancel()
    #expect(recorder.events.count == 7)
}

@Test func aRunGivenUpWhileAFilterWaitsEndsItsSpanOnce() {
    let waiting = Scripted("slow", .later)
    let (context, recorder) = observedRun([waiting, Scripted("never", .now(.proceed))])
    #expect(context.start() == nil)
    context.cancel()
    context.cancel()
    waiting.waitingIn?.resume(.proceed)
    // (A chain made without settings has no kinds.)
    #expect(recorder.events == ["began slow -", "waits", "abandoned"])
}

@Test func anAnswerGivenWhileApplyingIsOneDecisionWithoutAWait() {
    let (context, recorder) = observedRun([
        Scripted("cached", .resumedWhileApplying(.respond(LocalResponse(status: 401), reason: "no"))),
        Scripted("never", .now(.proceed)),
    ])
    #expect(context.start() != nil)
    #expect(recorder.events == ["began cached -", "respond 401"])
}

@Test func aChainFromTheConfigurationKnowsEachFiltersKind() throws {
    let configuration = try ConfigLoader(environment: [:]).load(text: """
        [filters.office]
        kind = "ip_rules"
        allow = ["10.0.0.0/8"]

        [filters.limit]
        kind = "rate_limit"
        rate = 2
        per = "1m"

        [[listeners]]
        name = "main"
        address = "127.0.0.1:8080"

        [[routes]]
        filters = ["limit", "office"]
        respond = { status = 200 }
        """, file: "test.toml")
    let chain = RequestFilters.chain(
        configuration.routes[0].filters.compactMap { name in configuration.filters.first { $0.name == name } },
        compiled: [:])
    // (Not made: both stand in as refusing filters, and keep their kinds.)
    #expect(chain.kinds == [.rateLimit, .ipRules] && chain.kind(of: 1) == .ipRules && chain.kind(of: 2) == nil)
}

// MARK: The exchange sets the observer only for a recorded trace

private let htpasswd = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../Fixtures/auth/htpasswd").standardized.path

/// A route with two filters, over two targets that retry a 503, traced at `ratio` to a collector that is not
/// there (the test reads the spans as they are queued, `WorkerTracing.spansFinished`).
private func tracedConfiguration(ratio: Int) -> String {
    """
    [tracing]
    endpoint = "http://127.0.0.1:9/v1/traces"
    sample_ratio = \(ratio)

    [filters.local]
    kind = "ip_rules"
    allow = ["127.0.0.0/8"]

    [filters.staff]
    kind = "basic_auth"
    realm = "staff"
    htpasswd = "\(htpasswd)"

    [upstreams.app]
    targets = ["127.0.0.1:9001", "127.0.0.1:9002"]

    [[routes]]
    name = "app"
    path_prefix = "/app"
    upstream = "app"
    filters = ["local", "staff"]
    retries = 1
    retry_on = ["503"]
    """
}

@Test(arguments: [0, 1])
func onlyARecordedTraceObservesTheFilterRun(ratio: Int) throws {
    let harness = try ExchangeHarness(tracedConfiguration(ratio: ratio))
    defer { _ = harness.runtime.tracing?.exporter.shutdown(timeout: .milliseconds(100)) }
    let routes = try #require(harness.runtime.routeTables["main"])
    var exchange = RequestExchange()
    let bytes = ByteBuffer(string: "GET /app HTTP/1.1\r\nHost: x\r\n\r\n")
    _ = bytes.withUnsafeReadableBytes { HTTPHeadParser(limits: .init()).parseRequest($0, into: &exchange.head) }
    exchange.begin(bytes: bytes, client: "127.0.0.9", runtime: harness.runtime)
    // A recorded trace keeps its state object; one that is not keeps only its context, inline (no allocation).
    #expect((exchange.tracingState != nil) == (ratio == 1))
    if ratio == 0 { #expect(exchange.upstreamTraceContext?.flags.contains(.sampled) == false) }
    guard case .proxy = exchange.chooseRoute(
        in: routes, client: IPAddressBytes("127.0.0.9"), tls: nil, body: nil, clientAddress: "127.0.0.9",
        runtime: harness.runtime)
    else { Issue.record("the route did not match"); return }
    // basic_auth answers 401 at once to a request without credentials.
    let verdict = exchange.runFilters(
        clientAddress: "127.0.0.9", clientIP: IPAddressBytes("127.0.0.9"), tls: nil, runtime: harness.runtime)
    guard case .respond(let response, _)? = verdict else { Issue.record("no 401"); return }
    #expect(response.status == 401)
    #expect((exchange.filterContext?.observer != nil) == (ratio == 1))
    exchange.end()
}

// MARK: The tree of an HTTP/1.1 request (EmbeddedChannel)

/// Runs the loop until `done` (the thread pool's answer comes back to it), for at most ten seconds.
private func run(_ harness: ExchangeHarness, until done: () -> Bool) {
    let deadline = Date().addingTimeInterval(10)
    while !done(), Date() < deadline {
        Thread.sleep(forTimeInterval: 0.005)
        harness.loop.run()
    }
}

private func attribute(_ span: Span, _ key: String) -> AttributeValue? {
    span.attributes.last { $0.key == key }?.value
}

@Test func aTracedRequestRecordsRoutingEachFilterAndEachAttemptUnderItsServerSpan() throws {
    let harness = try ExchangeHarness(tracedConfiguration(ratio: 1))
    defer { _ = harness.runtime.tracing?.exporter.shutdown(timeout: .milliseconds(100)) }
    var traces: [[Span]] = []
    harness.runtime.tracing?.spansFinished = { traces.append($0) }

    // Both filters proceed (dave's password is checked on the thread pool: the filter waits), the first target
    // answers 503, the retry gets 200.
    let credentials = Data("dave:dave-secret".utf8).base64EncodedString()
    try harness.send("GET /app/x HTTP/1.1\r\nHost: x\r\nAuthorization: Basic \(credentials)\r\n\r\n")
    run(harness) { !harness.connector.upstreams.isEmpty }
    let first = try harness.onlyUpstream()
    _ = try first.received()
    try first.send("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
    harness.loop.advanceTime(by: .seconds(1))
    try #require(harness.connector.upstreams.count == 2)
    try harness.connector.upstreams[1].send(okResponse)
    #expect(try harness.received().hasPrefix("HTTP/1.1 200 OK\r\n"))
    try #require(traces.count == 1)
    let spans = traces[0]
    try #require(spans.map(\.name) == ["GET", "routing", "filter local", "filter staff", "GET", "GET"])
    #expect(spans.map(\.kind) == [.server, .internal, .internal, .internal, .client, .client])
    let server = spans[0]
    #expect(spans.dropFirst().allSatisfy { $0.parentSpanID == server.spanID && $0.traceID == server.traceID })
    #expect(Set(spans.map(\.spanID)).count == spans.count)
    // The phases follow each other inside the request, on one clock.
    for (earlier, later) in zip(spans.dropFirst(), spans.dropFirst(2)) {
        #expect(earlier.endNanos <= later.startNanos)
    }
    #expect(spans.allSatisfy { server.startNanos <= $0.startNanos && $0.endNanos <= server.endNanos })
    let routing = spans[1]
    #expect(attribute(routing, SemanticKey.routeOutcome) == .string("matched"))
    #expect(attribute(routing, SemanticKey.httpRoute) == .string("app"))
    #expect(attribute(routing, SemanticKey.routeAction) == .string("proxy"))
    #expect(attribute(server, SemanticKey.httpRoute) == .string("app"))
    let (local, staff) = (spans[2], spans[3])
    #expect(attribute(local, SemanticKey.filterKind) == .string("ip_rules"))
    #expect(attribute(local, SemanticKey.filterOutcome) == .string("proceed"))
    #expect(attribute(local, SemanticKey.filterWaited) == nil)
    #expect(attribute(staff, SemanticKey.filterKind) == .string("basic_auth"))
    #expect(attribute(staff, SemanticKey.filterOutcome) == .string("proceed"))
    // (Usually waited: the hash is checked on the thread pool. But the embedded loop lets the pool's thread
    // complete the check inline, and under a loaded machine that can land before `apply` returned, when the run
    // takes it as an answer given at once. A real loop always hops back first; the observer's wait is tested on
    // its own above.)
    #expect([.bool(true), nil].contains(attribute(staff, SemanticKey.filterWaited)))
    #expect(attribute(spans[4], SemanticKey.httpResponseStatusCode) == .int(503))
    #expect(attribute(spans[5], SemanticKey.httpResponseStatusCode) == .int(200))
    #expect(attribute(spans[5], SemanticKey.httpRequestResendCount) == .int(1))

    // Another request on the connection: the second filter refuses it, and nothing goes upstream.
    try harness.send("GET /app/y HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(try harness.received().hasPrefix("HTTP/1.1 401 Unauthorized\r\n"))
    try #require(traces.count == 2)
    let refused = traces[1]
    try #require(refused.map(\.name) == ["GET", "routing", "filter local", "filter staff"])
    #expect(refused.dropFirst().allSatisfy { $0.parentSpanID == refused[0].spanID })
    #expect(attribute(refused[3], SemanticKey.filterOutcome) == .string("respond"))
    #expect(attribute(refused[3], SemanticKey.httpResponseStatusCode) == .int(401))
    #expect(attribute(refused[0], SemanticKey.httpResponseStatusCode) == .int(401))

    // And one no route takes: the routing span says so, and no filter runs.
    try harness.send("GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(try harness.received().hasPrefix("HTTP/1.1 404 Not Found\r\n"))
    try #require(traces.count == 3)
    try #require(traces[2].map(\.name) == ["GET", "routing"])
    #expect(attribute(traces[2][1], SemanticKey.routeOutcome) == .string("not_found"))
    #expect(attribute(traces[2][1], SemanticKey.httpResponseStatusCode) == .int(404))
    #expect(attribute(traces[2][0], SemanticKey.httpRoute) == nil)
}

@Test func aFilterStillWaitingWhenTheClientLeavesEndsAbandoned() throws {
    // Delay mode: one a minute, the next waits its turn (on the loop's clock) instead of being refused.
    let harness = try ExchangeHarness("""
        [tracing]
        endpoint = "http://127.0.0.1:9/v1/traces"
        sample_ratio = 1

        [filters.slow]
        kind = "rate_limit"
        rate = 1
        per = "1m"
        delay = 2

        [[routes]]
        name = "local"
        filters = ["slow"]
        respond = { status = 200, body = "ok\\n" }
        """)
    defer { _ = harness.runtime.tracing?.exporter.shutdown(timeout: .milliseconds(100)) }
    var traces: [[Span]] = []
    harness.runtime.tracing?.spansFinished = { traces.append($0) }
    try harness.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(try harness.received().hasPrefix("HTTP/1.1 200 OK\r\n"))
    try harness.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    #expect(try harness.received().isEmpty)
    // The second waits its turn; the client goes away meanwhile.
    try harness.client.close().wait()
    try #require(traces.count == 2 && traces[0].count == 3)
    #expect(attribute(traces[0][1], SemanticKey.routeAction) == .string("respond"))
    #expect(attribute(traces[0][2], SemanticKey.filterOutcome) == .string("proceed"))
    let waited = traces[1]
    try #require(waited.map(\.name) == ["GET", "routing", "filter slow"])
    #expect(attribute(waited[2], SemanticKey.filterKind) == .string("rate_limit"))
    #expect(attribute(waited[2], SemanticKey.filterOutcome) == .string("abandoned"))
    #expect(attribute(waited[2], SemanticKey.filterWaited) == .bool(true))
    #expect(attribute(waited[0], SemanticKey.httpResponseStatusCode) == nil)
    // A minute later its turn would have come: nothing more is recorded, and nothing is answered.
    harness.loop.advanceTime(by: .seconds(120))
    #expect(traces.count == 2)
}

@Test func routingThatWaitsForTheBodysStartSpansTheWait() throws {
    let harness = try ExchangeHarness("""
        [tracing]
        endpoint = "http://127.0.0.1:9/v1/traces"
        sample_ratio = 1

        [[routes]]
        name = "greeting"
        match_body = { regex = "^hello", max_size = 64 }
        respond = { status = 200, body = "hi\\n" }

        [[routes]]
        name = "other"
        respond = { status = 202 }
        """)
    defer { _ = harness.runtime.tracing?.exporter.shutdown(timeout: .milliseconds(100)) }
    var traces: [[Span]] = []
    harness.runtime.tracing?.spansFinished = { traces.append($0) }
    // A request without a body is routed at once: nothing is read, the span is the decision's alone.
    try harness.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    let quick = try harness.received()
    #expect(quick.hasPrefix("HTTP/1.1 202 "), "\(quick)")
    try harness.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
    // The head alone: the route depends on the body's start, which comes later.
    #expect(try harness.received().isEmpty)
    Thread.sleep(forTimeInterval: 0.005)
    try harness.send("hello")
    #expect(try harness.received().hasPrefix("HTTP/1.1 200 OK\r\n"))
    try #require(traces.count == 2 && traces[1].map(\.name) == ["POST", "routing"] && traces[0].count == 2)
    #expect(attribute(traces[0][1], SemanticKey.routeReadBody) == nil)
    #expect(attribute(traces[0][1], SemanticKey.httpRoute) == .string("other"))
    #expect(traces[0][1].startNanos > traces[0][0].startNanos)
    let (server, routing) = (traces[1][0], traces[1][1])
    #expect(attribute(routing, SemanticKey.routeReadBody) == .bool(true))
    #expect(attribute(routing, SemanticKey.httpRoute) == .string("greeting"))
    #expect(attribute(routing, SemanticKey.routeAction) == .string("respond"))
    // The routing span starts with the request and covers the wait for the body.
    #expect(routing.startNanos == server.startNanos && routing.endNanos - routing.startNanos >= 5_000_000)
}

@Test func aRoutingSpanSaysWhyARequestWentNoFurther() throws {
    let tracing = """
        [tracing]
        endpoint = "http://127.0.0.1:9/v1/traces"
        sample_ratio = 1

        """
    // A declared body over the route's limit: 413, the route known.
    let limited = try ExchangeHarness(tracing + proxying(route: "max_body_size = 4"))
    // A listener that only redirects to HTTPS: 308 before any route.
    let redirecting = try ExchangeHarness(tracing, listener: "redirect_to_https = true")
    defer {
        for harness in [limited, redirecting] {
            _ = harness.runtime.tracing?.exporter.shutdown(timeout: .milliseconds(100))
        }
    }
    var traces: [[Span]] = []
    limited.runtime.tracing?.spansFinished = { traces.append($0) }
    redirecting.runtime.tracing?.spansFinished = { traces.append($0) }
    try limited.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
    #expect(try limited.received().hasPrefix("HTTP/1.1 413 "))
    try redirecting.send("GET /a?b HTTP/1.1\r\nHost: example.com\r\n\r\n")
    #expect(try redirecting.received().hasPrefix("HTTP/1.1 308 "))
    try #require(traces.count == 2 && traces.allSatisfy { $0.map(\.name) == [$0[0].name, "routing"] })
    let (tooLarge, redirected) = (traces[0][1], traces[1][1])
    #expect(attribute(tooLarge, SemanticKey.routeOutcome) == .string("body_too_large"))
    #expect(attribute(tooLarge, SemanticKey.httpResponseStatusCode) == .int(413))
    #expect(attribute(redirected, SemanticKey.routeOutcome) == .string("redirect_to_https"))
    #expect(attribute(redirected, SemanticKey.httpResponseStatusCode) == .int(308))
    #expect(attribute(redirected, SemanticKey.httpRoute) == nil && tooLarge.status == .unset)
}
