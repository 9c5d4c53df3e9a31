// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterCore
import JesterTracing
import JesterWasm
import NIOCore

/// The request's trace (`[tracing]`): continued from the caller's `traceparent` or begun here, a span for routing,
/// one per request filter that ran, one client span per upstream attempt (replays and retries each get theirs,
/// and each upstream request carries its attempt's span as parent), and the whole tree handed to the exporter as
/// the request ends.
/// A traced request's state: its trace, the open upstream attempt's span, and the context that attempt's request
/// carries upstream. A class so the exchange holds one reference (nil without `[tracing]`), and so the filter run
/// can report to it (`FilterRunObserver`) without a closure.
final class ExchangeTrace {
    var trace: RequestTrace
    /// The worker's tracing: its id generator (the spans' ids) and exporter.
    let tracing: WorkerTracing
    /// When the request began (the server span's start), on the spans' clock.
    let startedAt: UInt64
    var attempt: RequestTrace.SpanHandle?
    var upstream: TraceContext?
    /// Attempts begun so far (the first, replays, retries): `http.request.resend_count` is this less one.
    var attempts = 0
    /// The span of the filter being applied (or waited for), and whether it waits.
    private var filter = RequestTrace.SpanHandle.none
    private var filterWaited = false

    init(_ trace: RequestTrace, tracing: WorkerTracing, startedAt: UInt64) {
        self.trace = trace
        self.tracing = tracing
        self.startedAt = startedAt
    }
}

/// Told as each filter of a run is applied and decides (`FilterContext.observer`): the hook through which a
/// recorded trace makes a span of each filter. The exchange sets it only on a request whose trace is recorded;
/// every other request's run has none, and pays one nil check per filter: no allocation, no clock read.
protocol FilterRunObserver: AnyObject {
    /// `filter` (of `kind`, when the chain was made from the configuration) is about to be applied.
    func filterBegan(_ filter: any RequestFilter, kind: FilterKindName?)
    /// The filter last begun returned `.suspended`: its verdict comes later (its span covers the wait).
    func filterWaits()
    /// The filter last begun decided (at once, or after waiting).
    func filterDecided(_ verdict: FilterVerdict)
    /// The run was given up while the filter last begun waited (the client left).
    func filterAbandoned()
}

extension ExchangeTrace: FilterRunObserver {
    func filterBegan(_ filter: any RequestFilter, kind: FilterKindName?) {
        self.filter = trace.beginFilter(
            name: filter.name, kind: kind?.rawValue ?? "unknown", at: WorkerTracing.now, ids: &tracing.ids)
        filterWaited = false
    }

    func filterWaits() {
        filterWaited = true
    }

    func filterDecided(_ verdict: FilterVerdict) {
        let outcome: PhaseSpans.FilterOutcome
        let status: Int?
        switch verdict {
        case .proceed: (outcome, status) = (.proceed, nil)
        case .respond(let response, _): (outcome, status) = (.respond, response.status)
        case .fail(let code, _): (outcome, status) = (.fail, code)
        }
        trace.endFilter(filter, at: WorkerTracing.now, outcome: outcome, statusCode: status, waited: filterWaited)
        filter = .none
    }

    func filterAbandoned() {
        guard filter != .none else { return }
        trace.endFilter(filter, at: WorkerTracing.now, outcome: .abandoned, waited: filterWaited)
        filter = .none
    }
}

extension ExchangeTrace {
    /// Runs one policy call inside its span (a recorded trace only: other requests call `run` directly).
    func traced(
        _ policy: WorkerPolicy, _ stage: PolicyStage, _ call: () -> PolicyOutcome
    ) -> PolicyOutcome {
        let span = trace.beginPolicy(name: policy.name, stage: "\(stage)", at: WorkerTracing.now, ids: &tracing.ids)
        let outcome = call()
        let decision: String
        var status: Int?
        var failure: String?
        switch outcome {
        case .proceed, .proceedResponse: decision = "proceed"
        case .respond(let response): (decision, status) = ("respond", response.status)
        case .deny: (decision, status) = ("deny", policy.settings.denyStatus)
        case .failed(let error): (decision, status, failure) = ("failure", policy.settings.errorStatus, error.kind.rawValue)
        }
        trace.endPolicy(span, at: WorkerTracing.now, decision: decision, statusCode: status, failure: failure)
        return outcome
    }
}

extension RequestExchange {

    /// The request's trace (only with `[tracing]`), continued from its `traceparent` or begun here, and
    /// sampled. Its server span's name and start are made only for a trace that is recorded: at a low sampling
    /// ratio most requests make no string and read no clock for it.
    func startTrace(_ tracing: WorkerTracing) -> RequestTrace {
        let incoming = headBytes!.withUnsafeReadableBytes { bytes -> TraceContext? in
            var parents: [Range<Int>] = []
            var states: [UnsafeRawBufferPointer] = []
            for field in head.fields {
                if ASCII.equalsIgnoringCase(bytes, field.name, "traceparent") { parents.append(field.value) }
                if ASCII.equalsIgnoringCase(bytes, field.name, "tracestate") {
                    states.append(UnsafeRawBufferPointer(rebasing: bytes[field.value]))
                }
            }
            // Two traceparent fields: no valid parent (W3C Trace Context §3.2.1).
            return parents.count == 1
                ? TraceContext(traceparent: UnsafeRawBufferPointer(rebasing: bytes[parents[0]]), tracestate: states)
                : nil
        }
        return RequestTrace(
            incoming: incoming, sampler: tracing.sampler, ids: &tracing.ids,
            name: HTTPSpanAttributes.spanName(method: methodText()), startNanos: WorkerTracing.now)
    }

    /// The request's method as text (for a recorded trace's span names).
    private func methodText() -> String {
        headBytes!.withUnsafeReadableBytes {
            String(decoding: UnsafeRawBufferPointer(rebasing: $0[head.method]), as: UTF8.self)
        }
    }

    /// Keeps the trace `startTrace` made, after the log record began (detailed when the trace is recorded, for
    /// the server span's attributes). `secure`: over TLS; `logged`: an access log or a tap reads the trace id.
    mutating func continueTrace(
        _ trace: RequestTrace, _ tracing: WorkerTracing, multiplexed: StreamProtocol?, secure: Bool, logged: Bool
    ) {
        guard trace.isRecording else {
            if logged { log.traceID = trace.context.traceID.description }
            unsampledTrace = trace.context
            return
        }
        var trace = trace
        let target = log.target.isEmpty ? "/" : log.target
        let query = target.firstIndex(of: "?")
        let attributes = HTTPSpanAttributes.server(
            method: log.method, scheme: secure ? "https" : "http", path: String(target[..<(query ?? target.endIndex)]),
            query: query.map { String(target[target.index(after: $0)...]) },
            host: log.host.isEmpty ? nil : log.host,
            port: nil, protocolVersion: multiplexed?.version ?? (head.version == .http1_0 ? "1.0" : "1.1"),
            clientAddress: log.client.isEmpty ? nil : log.client,
            userAgent: log.userAgent.isEmpty ? nil : log.userAgent)
        for attribute in attributes { trace.setAttribute(attribute, on: trace.serverSpan) }
        log.traceID = trace.context.traceID.description
        tracingState = ExchangeTrace(trace, tracing: tracing, startedAt: trace.serverStartNanos)
    }

    /// Records the routing phase's span (with a recorded trace): it began at `startNanos` and ended in `decision`.
    /// `readBody`: the decision read the body's start (the span then starts with the request, the wait included).
    mutating func traceRoute(_ decision: RouteDecision, startNanos: UInt64, readBody: Bool) {
        guard let state = tracingState else { return }
        let handle = state.trace.beginRouting(at: startNanos, ids: &state.tracing.ids)
        let end = WorkerTracing.now
        switch decision {
        case .refuse(let status, _):
            let outcome: PhaseSpans.RouteOutcome =
                status == 404 ? .notFound : status == 413 ? .bodyTooLarge : .badRequest
            state.trace.endRouting(
                handle, at: end, outcome: outcome, route: route?.name, statusCode: status,
                readBody: readBody)
        case .local(let response):
            state.trace.endRouting(
                handle, at: end, outcome: .redirectToHTTPS, statusCode: response.status, readBody: readBody)
        case .respond, .proxy:
            let action: PhaseSpans.RouteAction?
            switch route?.action {
            case .proxy?: action = .proxy
            case .split?: action = .split
            case .respond?: action = .respond
            case .redirect?: action = .redirect
            case nil: action = nil
            }
            state.trace.endRouting(
                handle, at: end, outcome: .matched, route: route?.name, action: action, readBody: readBody)
        }
    }

    /// Records an upstream event in the access log's times and, with a trace, in its spans: an attempt's client
    /// span begins when the pool is asked and ends with the response (or when the next attempt begins).
    mutating func upstreamEvent(_ event: AccessLog.Record.UpstreamEvent, runtime: WorkerRuntime) {
        guard let state = tracingState, let tracing = runtime.tracing else {
            log.mark(event)
            if case .asked = event {
                // This attempt starts afresh: a retry's failed connect must not log the previous answer's status.
                upstreamTargetIndex = nil
                log.upstreamStatus = 0
            }
            return
        }
        switch event {
        case .asked:
            // The previous attempt (a retry's, a replay's) ends with what it got; this one starts afresh.
            endUpstreamAttempt()
            log.mark(event)
            upstreamTargetIndex = nil
            log.upstreamStatus = 0
            state.attempts += 1
            let begun = state.trace.beginUpstreamAttempt(
                HTTPSpanAttributes.spanName(method: log.method), at: WorkerTracing.now, ids: &tracing.ids)
            state.attempt = begun.handle
            state.upstream = begun.upstream
        case .responseEnd:
            log.mark(event)
            endUpstreamAttempt()
        case .connected, .responseHead:
            log.mark(event)
        }
    }

    /// An attempt has its upstream: `target` of the exchange's pool (for the metrics, and the access log's times).
    mutating func upstreamConnected(target: Int, runtime: WorkerRuntime) {
        upstreamTargetIndex = target
        upstreamEvent(.connected, runtime: runtime)
    }

    /// Ends the open attempt's span with what the upstream answered (or why it did not).
    private mutating func endUpstreamAttempt() {
        guard let state = tracingState, let handle = state.attempt else { return }
        state.attempt = nil
        if state.trace.isRecording, !log.upstreamTarget.isEmpty {
            let address = log.upstreamTarget
            let colon = address.lastIndex(of: ":")
            let host = colon.map { String(address[..<$0]) } ?? address
            let port = colon.flatMap { Int(address[address.index(after: $0)...]) } ?? 0
            for attribute in HTTPSpanAttributes.client(
                method: log.method, upstream: log.upstream, address: host, port: port, attempt: max(state.attempts, 1),
                protocolVersion: pool?.speaksHTTP2 == true ? "2" : "1.1")
            {
                state.trace.setAttribute(attribute, on: handle)
            }
        }
        let answered = log.upstreamStatus == 0 ? nil : log.upstreamStatus
        state.trace.endUpstreamAttempt(
            handle, at: WorkerTracing.now, statusCode: answered,
            error: answered == nil ? Self.errorType(log.failure) : nil)
    }

    /// An upstream failure as the semantic conventions' short `error.type` (nil: none recorded).
    static func errorType(_ failure: String) -> String? {
        if failure.isEmpty { return nil }
        if failure.contains("timed out") || failure.contains("timeout") { return "timeout" }
        if failure.contains("refused") { return "connection_refused" }
        if failure.contains("reset") || failure.contains("closed") { return "connection_reset" }
        if failure.contains("TLS") { return "tls_failure" }
        return "_OTHER"
    }

    /// Ends the trace as the request's log line is written, and queues its spans for export.
    mutating func finishTrace(runtime: WorkerRuntime) {
        guard let state = tracingState, let tracing = runtime.tracing else { return }
        // A filter still waiting (the client left, a timeout answered) ends as abandoned, before the run is
        // cancelled after the log line.
        state.filterAbandoned()
        endUpstreamAttempt()
        let sent = log.status == 0 || log.status == 499 ? nil : log.status
        let spans = state.trace.finish(
            at: WorkerTracing.now, statusCode: sent,
            error: log.status == 499 ? "client_closed" : (sent == nil && !log.failure.isEmpty ? "cut" : nil))
        tracingState = nil
        guard !spans.isEmpty else { return }
        _ = tracing.exporter.enqueue(spans)
        tracing.spansFinished?(spans)
    }

    /// Writes an attempt's `traceparent` (and the caller's `tracestate`) as HTTP/1.1 field lines.
    static func writeTraceFields(_ context: TraceContext, into out: inout ByteBuffer) {
        out.writeStaticString("traceparent: ")
        context.withTraceparentBytes { _ = out.writeBytes($0) }
        out.writeStaticString("\r\n")
        if !context.traceState.isEmpty {
            out.writeStaticString("tracestate: ")
            out.writeBytes(context.traceState.bytes)
            out.writeStaticString("\r\n")
        }
    }

    /// Whether a client's field named `name` is a trace field (which an attempt's own replace).
    static func isTraceField(_ bytes: UnsafeRawBufferPointer, _ name: Range<Int>) -> Bool {
        ASCII.equalsIgnoringCase(bytes, name, "traceparent") || ASCII.equalsIgnoringCase(bytes, name, "tracestate")
    }
}
