// SPDX-License-Identifier: Apache-2.0
import JesterTracing
import Testing

// The per-request recorder: the span tree the exchange makes at its phase boundaries, the context each upstream
// attempt carries, and the semantic conventions' status rules.

private let caller = TraceContext(
    traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tracestate: "rojo=00f067aa0ba902b7")!
private let unsampledCaller = TraceContext(traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")!

@Test func aSampledRequestRecordsItsPhasesAsChildrenOfTheServerSpan() throws {
    var ids = TraceIDGenerator(seed: 1)
    var trace = RequestTrace(
        incoming: caller, sampler: TraceSampler(ratio: 0), ids: &ids, name: "GET", startNanos: 1_000,
        attributes: HTTPSpanAttributes.server(
            method: "GET", scheme: "https", path: "/a", query: "b=1", host: "example.com", port: 443,
            protocolVersion: "2", clientAddress: "192.0.2.1", userAgent: "curl/8"))
    #expect(trace.isRecording && trace.remoteParent == caller.spanID)
    #expect(trace.context.traceID == caller.traceID && trace.context.spanID != caller.spanID)
    let routing = trace.beginSpan("routing", at: 1_100, ids: &ids)
    trace.endSpan(routing, at: 1_200, attributes: [SpanAttribute(SemanticKey.route, "app")])
    let filter = trace.beginSpan("filter jwt", at: 1_300, ids: &ids)
    trace.endSpan(filter, at: 1_400, status: .error("401"))
    let first = trace.beginUpstreamAttempt("GET", at: 2_000, ids: &ids)
    trace.endUpstreamAttempt(first.handle, at: 3_000, statusCode: 503)
    let second = trace.beginUpstreamAttempt("GET", at: 4_000, ids: &ids)
    trace.endUpstreamAttempt(second.handle, at: 5_000, statusCode: 200)
    let spans = trace.finish(at: 6_000, statusCode: 200)

    #expect(spans.map(\.name) == ["GET", "routing", "filter jwt", "GET", "GET"])
    #expect(spans.map(\.kind) == [.server, .internal, .internal, .client, .client])
    let server = spans[0]
    #expect(server.spanID == trace.context.spanID && server.parentSpanID == caller.spanID && server.parentIsRemote)
    #expect(server.startNanos == 1_000 && server.endNanos == 6_000 && server.status == .unset)
    #expect(server.traceState.value == "rojo=00f067aa0ba902b7")
    #expect(server.attributes.contains(SpanAttribute(SemanticKey.httpResponseStatusCode, 200)))
    #expect(server.attributes.contains(SpanAttribute(SemanticKey.urlQuery, "b=1")))
    for child in spans.dropFirst() {
        #expect(child.traceID == caller.traceID && child.parentSpanID == server.spanID && !child.parentIsRemote)
    }
    #expect(Set(spans.map(\.spanID)).count == 5)
    // Each attempt's upstream request names its own span as parent, sampled.
    #expect(first.upstream.spanID == spans[3].spanID && second.upstream.spanID == spans[4].spanID)
    #expect(first.upstream.traceparent == "00-0af7651916cd43dd8448eb211c80319c-\(spans[3].spanID)-01")
    #expect(first.upstream.traceState == caller.traceState)
    // A client span is an error from 400; error.type is the status.
    #expect(spans[3].status == .error("503"))
    #expect(spans[3].attributes.contains(SpanAttribute(SemanticKey.errorType, "503")))
    #expect(spans[4].status == .unset && spans[2].status == .error("401"))
    // The trace is spent.
    #expect(trace.finish(at: 7_000, statusCode: 200).isEmpty)
}

@Test func aRequestSampledOutRecordsNothingButStillPropagates() {
    var ids = TraceIDGenerator(seed: 2)
    var trace = RequestTrace(
        incoming: unsampledCaller, sampler: TraceSampler(ratio: 1), ids: &ids, name: "GET", startNanos: 1)
    #expect(!trace.isRecording && trace.serverSpan == .none)
    let routing = trace.beginSpan("routing", at: 2, ids: &ids)
    #expect(routing == .none)
    trace.endSpan(routing, at: 3)
    let attempt = trace.beginUpstreamAttempt("GET", at: 4, ids: &ids)
    #expect(attempt.handle == .none && attempt.upstream == trace.context)
    #expect(attempt.upstream.traceID == unsampledCaller.traceID && !attempt.upstream.isSampled)
    trace.endUpstreamAttempt(attempt.handle, at: 5, statusCode: 200)
    #expect(trace.finish(at: 6, statusCode: 200).isEmpty)
}

@Test func aRequestWithoutAParentStartsARandomRoot() {
    var ids = TraceIDGenerator(seed: 3)
    var trace = RequestTrace(incoming: nil, sampler: TraceSampler(ratio: 1), ids: &ids, name: "POST", startNanos: 10)
    #expect(trace.remoteParent == nil && trace.context.flags == [.sampled, .random] && trace.context.traceID.isValid)
    let spans = trace.finish(at: 20, statusCode: 201)
    #expect(spans.count == 1 && spans[0].parentSpanID == nil && !spans[0].parentIsRemote)
    var none = RequestTrace(incoming: nil, sampler: .never, ids: &ids, name: "GET", startNanos: 10)
    #expect(none.context.flags == [.random] && none.context.traceparent.hasSuffix("-02"))
    #expect(none.finish(at: 20, statusCode: 200).isEmpty)
}

@Test(arguments: [
    (Optional(404), String?.none, SpanStatus.unset, String?.none),
    (Optional(500), nil, .error("500"), "500"),
    (Optional(502), "upstream_timeout", .error("upstream_timeout"), "upstream_timeout"),
    (nil, nil, .error("no response"), "_OTHER"),
])
func theServerSpansStatusFollowsTheConventions(status: Int?, error: String?, expected: SpanStatus, type: String?) {
    var ids = TraceIDGenerator(seed: 4)
    var trace = RequestTrace(incoming: nil, sampler: TraceSampler(ratio: 1), ids: &ids, name: "GET", startNanos: 1)
    let server = trace.finish(at: 2, statusCode: status, error: error)[0]
    #expect(server.status == expected)
    #expect(server.attributes.first { $0.key == SemanticKey.errorType }?.value == type.map { .string($0) })
}

@Test func anAttemptWithoutAnAnswerIsAnErrorOfItsType() {
    var ids = TraceIDGenerator(seed: 5)
    var trace = RequestTrace(incoming: nil, sampler: TraceSampler(ratio: 1), ids: &ids, name: "GET", startNanos: 1)
    let attempt = trace.beginUpstreamAttempt("GET", at: 2, ids: &ids)
    trace.endUpstreamAttempt(attempt.handle, at: 3, statusCode: nil, error: "connection_refused")
    let spans = trace.finish(at: 4, statusCode: 502)
    #expect(spans[1].status == .error("connection_refused"))
    #expect(!spans[1].attributes.contains { $0.key == SemanticKey.httpResponseStatusCode })
}

@Test func spansLeftOpenEndWithTheRequestAndEndingTwiceDoesNothing() {
    var ids = TraceIDGenerator(seed: 6)
    var trace = RequestTrace(incoming: nil, sampler: TraceSampler(ratio: 1), ids: &ids, name: "GET", startNanos: 100)
    let done = trace.beginSpan("routing", at: 110, ids: &ids)
    trace.endSpan(done, at: 120)
    trace.endSpan(done, at: 999, status: .error("late"))
    let left = trace.beginUpstreamAttempt("GET", at: 130, ids: &ids)
    trace.addEvent(SpanEvent(name: "client left", timeNanos: 140), to: left.handle)
    trace.setAttribute(SpanAttribute(SemanticKey.requestID, "abc"), on: trace.serverSpan)
    // An end before the start (a clock stepped back) is clamped, not negative.
    let spans = trace.finish(at: 90, statusCode: nil)
    #expect(spans[1].endNanos == 120 && spans[1].status == .unset)
    #expect(spans[2].endNanos == 130 && spans[2].events.map(\.name) == ["client left"])
    #expect(spans[0].endNanos == 100 && spans[0].attributes.contains(SpanAttribute(SemanticKey.requestID, "abc")))
}

@Test func aRequestRecordsAtMostMaxSpans() {
    var ids = TraceIDGenerator(seed: 7)
    var trace = RequestTrace(incoming: nil, sampler: TraceSampler(ratio: 1), ids: &ids, name: "GET", startNanos: 1)
    for _ in 0..<(RequestTrace.maxSpans + 10) {
        let attempt = trace.beginUpstreamAttempt("GET", at: 2, ids: &ids)
        trace.endUpstreamAttempt(attempt.handle, at: 3, statusCode: 503)
    }
    #expect(trace.droppedSpans == 11)
    #expect(trace.finish(at: 4, statusCode: 503).count == RequestTrace.maxSpans)
}

@Test func httpAttributesNormaliseMethodsAndProtocols() {
    #expect(HTTPSpanAttributes.method("GET") == [SpanAttribute(SemanticKey.httpRequestMethod, "GET")])
    #expect(HTTPSpanAttributes.method("FOO") == [
        SpanAttribute(SemanticKey.httpRequestMethod, "_OTHER"),
        SpanAttribute(SemanticKey.httpRequestMethodOriginal, "FOO"),
    ])
    #expect(HTTPSpanAttributes.spanName(method: "FOO") == "HTTP" && HTTPSpanAttributes.spanName(method: "PUT") == "PUT")
    #expect(HTTPSpanAttributes.protocolVersion(major: 1, minor: 1) == "1.1")
    #expect(HTTPSpanAttributes.protocolVersion(major: 2, minor: 0) == "2")
    let retry = HTTPSpanAttributes.client(
        method: "GET", upstream: "app", address: "10.0.0.1", port: 80, attempt: 3, protocolVersion: "1.1")
    #expect(retry.contains(SpanAttribute(SemanticKey.httpRequestResendCount, 2)))
    let first = HTTPSpanAttributes.client(
        method: "GET", upstream: "app", address: "10.0.0.1", port: 80, attempt: 1, protocolVersion: "1.1")
    #expect(!first.contains { $0.key == SemanticKey.httpRequestResendCount })
}
