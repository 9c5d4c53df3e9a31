// SPDX-License-Identifier: Apache-2.0
import JesterTracing
import Testing

// The spans of the phases before the upstream: routing and each request filter, their names, attributes and
// status, and that a trace sampled out or already finished records none.

private func recordedTrace(_ ids: inout TraceIDGenerator) -> RequestTrace {
    RequestTrace(incoming: nil, sampler: TraceSampler(ratio: 1), ids: &ids, name: "GET", startNanos: 1_000)
}

private func attribute(_ span: Span, _ key: String) -> AttributeValue? {
    span.attributes.last { $0.key == key }?.value
}

@Test func aMatchedRouteNamesItselfOnItsSpanAndOnTheServerSpan() {
    var ids = TraceIDGenerator(seed: 11)
    var trace = recordedTrace(&ids)
    let routing = trace.beginRouting(at: 1_100, ids: &ids)
    trace.endRouting(routing, at: 1_200, outcome: .matched, route: "api", action: .split)
    let spans = trace.finish(at: 2_000, statusCode: 200)
    #expect(spans.map(\.name) == ["GET", "routing"] && spans[1].kind == .internal)
    #expect(spans[1].parentSpanID == spans[0].spanID && spans[1].startNanos == 1_100 && spans[1].endNanos == 1_200)
    #expect(attribute(spans[1], SemanticKey.routeOutcome) == .string("matched"))
    #expect(attribute(spans[1], SemanticKey.httpRoute) == .string("api"))
    #expect(attribute(spans[1], SemanticKey.routeAction) == .string("split"))
    #expect(attribute(spans[1], SemanticKey.httpResponseStatusCode) == nil)
    #expect(attribute(spans[1], SemanticKey.routeReadBody) == nil && spans[1].status == .unset)
    // The conventions put the matched route on the server span too.
    #expect(attribute(spans[0], SemanticKey.httpRoute) == .string("api"))
}

@Test(arguments: [
    (PhaseSpans.RouteOutcome.notFound, 404, "not_found"),
    (.bodyTooLarge, 413, "body_too_large"),
    (.redirectToHTTPS, 308, "redirect_to_https"),
    (.badRequest, 400, "bad_request"),
])
func aRefusedRouteSaysWhyWithItsStatusAndIsNoError(outcome: PhaseSpans.RouteOutcome, status: Int, name: String) {
    var ids = TraceIDGenerator(seed: 12)
    var trace = recordedTrace(&ids)
    let routing = trace.beginRouting(at: 1_000, ids: &ids)
    trace.endRouting(routing, at: 1_300, outcome: outcome, statusCode: status, readBody: true)
    let spans = trace.finish(at: 2_000, statusCode: status)
    #expect(attribute(spans[1], SemanticKey.routeOutcome) == .string(name))
    #expect(attribute(spans[1], SemanticKey.httpResponseStatusCode) == .int(Int64(status)))
    #expect(attribute(spans[1], SemanticKey.routeReadBody) == .bool(true))
    // The client's doing (no route, a body too large), not a failure of the phase.
    #expect(spans[1].status == .unset)
    #expect(attribute(spans[0], SemanticKey.httpRoute) == nil)
}

@Test func eachFilterGetsASpanWithItsKindOutcomeAndWait() {
    var ids = TraceIDGenerator(seed: 13)
    var trace = recordedTrace(&ids)
    let office = trace.beginFilter(name: "office", kind: "ip_rules", at: 1_100, ids: &ids)
    trace.endFilter(office, at: 1_110, outcome: .proceed)
    let staff = trace.beginFilter(name: "staff", kind: "basic_auth", at: 1_120, ids: &ids)
    trace.endFilter(staff, at: 9_000, outcome: .respond, statusCode: 401, waited: true)
    let spans = trace.finish(at: 9_100, statusCode: 401)
    #expect(spans.map(\.name) == ["GET", "filter office", "filter staff"])
    #expect(spans.dropFirst().allSatisfy { $0.kind == .internal && $0.parentSpanID == spans[0].spanID })
    #expect(attribute(spans[1], SemanticKey.filter) == .string("office"))
    #expect(attribute(spans[1], SemanticKey.filterKind) == .string("ip_rules"))
    #expect(attribute(spans[1], SemanticKey.filterOutcome) == .string("proceed"))
    #expect(attribute(spans[1], SemanticKey.filterWaited) == nil)
    #expect(attribute(spans[1], SemanticKey.httpResponseStatusCode) == nil)
    #expect(attribute(spans[2], SemanticKey.filterOutcome) == .string("respond"))
    #expect(attribute(spans[2], SemanticKey.httpResponseStatusCode) == .int(401))
    #expect(attribute(spans[2], SemanticKey.filterWaited) == .bool(true))
    // A waiting filter's span covers its wait; a refused credential is not an error of the filter.
    #expect(spans[2].startNanos == 1_120 && spans[2].endNanos == 9_000 && spans[2].status == .unset)
}

@Test(arguments: [
    (PhaseSpans.FilterOutcome.fail, Optional(403), SpanStatus.unset),
    (.fail, Optional(500), .error("500")),
    (.fail, Optional(503), .error("503")),
    (.respond, Optional(429), .unset),
    (.abandoned, nil, .unset),
])
func aFilterSpanIsAnErrorOnlyWhenTheFilterCouldNotDecide(
    outcome: PhaseSpans.FilterOutcome, status: Int?, expected: SpanStatus
) {
    var ids = TraceIDGenerator(seed: 14)
    var trace = recordedTrace(&ids)
    let filter = trace.beginFilter(name: "f", kind: "rate_limit", at: 1_100, ids: &ids)
    trace.endFilter(filter, at: 1_200, outcome: outcome, statusCode: status)
    let span = trace.finish(at: 2_000, statusCode: status ?? 499)[1]
    #expect(span.status == expected)
    #expect(attribute(span, SemanticKey.filterOutcome) == .string(outcome.rawValue))
}

@Test func aTraceSampledOutOrFinishedRecordsNoPhase() {
    var ids = TraceIDGenerator(seed: 15)
    var unsampled = RequestTrace(incoming: nil, sampler: .never, ids: &ids, name: "GET", startNanos: 1)
    let routing = unsampled.beginRouting(at: 2, ids: &ids)
    unsampled.endRouting(routing, at: 3, outcome: .matched, route: "api")
    let filter = unsampled.beginFilter(name: "f", kind: "jwt", at: 4, ids: &ids)
    unsampled.endFilter(filter, at: 5, outcome: .proceed)
    #expect(routing == .none && filter == .none && unsampled.finish(at: 6, statusCode: 200).isEmpty)

    // A phase that ends, or begins, after the request's log line (a waiting filter let go) is no child of a
    // spent trace, and does not trap.
    var trace = recordedTrace(&ids)
    let late = trace.beginFilter(name: "slow", kind: "rate_limit", at: 1_100, ids: &ids)
    #expect(trace.finish(at: 1_500, statusCode: 499).count == 2)
    trace.endFilter(late, at: 1_600, outcome: .abandoned)
    #expect(trace.beginFilter(name: "next", kind: "jwt", at: 1_700, ids: &ids) == .none)
    #expect(trace.finish(at: 1_800, statusCode: 200).isEmpty)
}
