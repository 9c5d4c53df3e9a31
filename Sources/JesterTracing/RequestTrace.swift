// SPDX-License-Identifier: Apache-2.0
/// One request's trace: its place in the caller's trace (or a new one), the sampling decision, and, when
/// recording, the spans of the request and its phases, made as the exchange passes its phase boundaries.
///
/// The exchange calls it with times it read itself (Unix nanoseconds): nothing here reads a clock, allocates
/// per call when not recording, or does I/O. Spans it records are handed back whole by `finish`, for the
/// exporter's queue. The tree it makes:
///
///     server span "GET"  (the caller's span as remote parent, when there is one)
///       ├── internal "routing"                       the route matched, or why none did (`PhaseSpans`)
///       ├── internal "filter basic_auth", …          one per filter (or policy) run, its wait included
///       ├── client "GET" attempt 1 → upstream       one per attempt: replays and retries each get their own,
///       └── client "GET" attempt 2 → upstream       and each upstream request carries its attempt's span id
///
/// Not recording (sampled out), it still carries the context every upstream request must get: the same trace
/// id, the server span's id as parent and the flags saying "not sampled", so later hops agree.
public struct RequestTrace: Sendable {
    /// Jester's server span as a context: the trace, the server span's id, the flags forwarded (sampled or not)
    /// and the caller's `tracestate`.
    public let context: TraceContext
    /// The caller's span (from a valid `traceparent`), parent of the server span; nil when Jester started the
    /// trace.
    public let remoteParent: SpanID?
    /// Whether spans are recorded (the sampler's decision). When false every recording call does nothing.
    public let isRecording: Bool
    /// The recorded spans; the server span first. Empty when not recording.
    private var spans: [Span] = []
    /// Spans begun but not yet ended, by index in `spans` (a request has few; a linear search is cheapest).
    private var open: [Int] = []
    /// Spans begun beyond `maxSpans` (a request retried without end): counted, not recorded.
    public private(set) var droppedSpans = 0

    /// A request records at most this many spans, so a pathological route cannot grow one without bound.
    public static let maxSpans = 64

    /// A reference to a span begun with `beginSpan` or `beginUpstreamAttempt`, for ending it.
    public struct SpanHandle: Sendable, Hashable {
        let index: Int
        /// A handle that refers to no recorded span (not recording, or over `maxSpans`): ending it does nothing.
        public static let none = SpanHandle(index: -1)
    }

    /// Starts the request's trace: continues `incoming` (the request's valid `traceparent`, parsed) or starts a
    /// new trace, asks `sampler`, and when recording begins the server span `name` at `startNanos`. (`name` and
    /// `startNanos` are evaluated only for a trace that is recorded: the others, most of them at a low sampling
    /// ratio, make no string and read no clock.)
    public init(
        incoming: TraceContext?, sampler: TraceSampler, ids: inout TraceIDGenerator, name: @autoclosure () -> String,
        startNanos: @autoclosure () -> UInt64, attributes: [SpanAttribute] = []
    ) {
        let traceID = incoming?.traceID ?? ids.traceID()
        let sampled = sampler.shouldSample(parent: incoming, traceID: traceID)
        var flags: TraceFlags = incoming.map { $0.flags.intersection(.random) } ?? .random
        if sampled { flags.insert(.sampled) }
        context = TraceContext(
            traceID: traceID, spanID: ids.spanID(), flags: flags, traceState: incoming?.traceState ?? .empty)
        remoteParent = incoming?.spanID
        isRecording = sampled
        guard sampled else { return }
        let startNanos = startNanos()
        let name = name()
        spans.reserveCapacity(8)
        spans.append(
            Span(
                traceID: traceID, spanID: context.spanID, parentSpanID: remoteParent,
                parentIsRemote: remoteParent != nil, flags: flags, traceState: context.traceState, name: name,
                kind: .server, startNanos: startNanos, endNanos: startNanos, attributes: attributes))
        open.append(0)
    }

    /// When the server span began (0 when not recording).
    public var serverStartNanos: UInt64 { spans.first?.startNanos ?? 0 }

    /// The server span's handle (for attributes and events added to it).
    public var serverSpan: SpanHandle { isRecording ? SpanHandle(index: 0) : .none }

    /// Begins a span inside the request (a phase: routing, a filter, a policy), child of `parent` (the server
    /// span by default).
    public mutating func beginSpan(
        _ name: String, kind: SpanKind = .internal, parent: SpanHandle? = nil, at startNanos: UInt64,
        ids: inout TraceIDGenerator, attributes: [SpanAttribute] = []
    ) -> SpanHandle {
        // (A trace that `finish` spent records nothing more: a phase ending after the log line is not a child.)
        guard isRecording, !spans.isEmpty else { return .none }
        guard spans.count < Self.maxSpans else {
            droppedSpans += 1
            return .none
        }
        let parentIndex = parent.map { $0.index >= 0 ? $0.index : 0 } ?? 0
        spans.append(
            Span(
                traceID: context.traceID, spanID: ids.spanID(), parentSpanID: spans[parentIndex].spanID,
                flags: context.flags, traceState: context.traceState, name: name, kind: kind,
                startNanos: startNanos, endNanos: startNanos, attributes: attributes))
        open.append(spans.count - 1)
        return SpanHandle(index: spans.count - 1)
    }

    /// Ends a span begun with `beginSpan`, with its status and the attributes learnt meanwhile. Ending one twice,
    /// or `.none`, does nothing.
    public mutating func endSpan(
        _ handle: SpanHandle, at endNanos: UInt64, status: SpanStatus = .unset, attributes: [SpanAttribute] = []
    ) {
        guard let position = open.firstIndex(of: handle.index) else { return }
        open.remove(at: position)
        spans[handle.index].endNanos = max(endNanos, spans[handle.index].startNanos)
        spans[handle.index].status = status
        spans[handle.index].attributes += attributes
    }

    /// Adds an attribute to a span (open or ended).
    public mutating func setAttribute(_ attribute: SpanAttribute, on handle: SpanHandle) {
        guard handle.index >= 0, handle.index < spans.count else { return }
        spans[handle.index].attributes.append(attribute)
    }

    /// Adds an event to a span (a retry's reason, a filter's refusal).
    public mutating func addEvent(_ event: SpanEvent, to handle: SpanHandle) {
        guard handle.index >= 0, handle.index < spans.count else { return }
        spans[handle.index].events.append(event)
    }

    /// Begins one attempt to send the request upstream (the first, a replay on a new connection, or a retry):
    /// a client span, child of the server span. Returns its handle and the context to send upstream as
    /// `traceparent`/`tracestate` (the attempt's span id when recording; the server span's when not, which
    /// costs nothing and says the same: this trace, not sampled).
    public mutating func beginUpstreamAttempt(
        _ name: String, at startNanos: UInt64, ids: inout TraceIDGenerator, attributes: [SpanAttribute] = []
    ) -> (handle: SpanHandle, upstream: TraceContext) {
        let handle = beginSpan(name, kind: .client, at: startNanos, ids: &ids, attributes: attributes)
        guard handle.index >= 0 else { return (handle, context) }
        return (handle, context.child(spanID: spans[handle.index].spanID))
    }

    /// Ends an upstream attempt with the status the upstream answered (nil: no answer) or the reason it failed
    /// (`error`: a short machine-readable type, "timeout", "connection_refused"…). Semantic conventions: a client
    /// span is an error from status 400, or when there was no answer.
    public mutating func endUpstreamAttempt(
        _ handle: SpanHandle, at endNanos: UInt64, statusCode: Int?, error: String? = nil
    ) {
        guard handle.index >= 0 else { return }
        let outcome = HTTPSpanOutcome(statusCode: statusCode, error: error, kind: .client)
        endSpan(handle, at: endNanos, status: outcome.status, attributes: outcome.attributes)
    }

    /// Ends the request: the server span gets the status sent to the client (nil: none was sent) or the
    /// failure's type; semantic conventions make a server span an error only from 500. Spans still open (the
    /// client left mid-attempt) end now. Returns every recorded span, for the exporter; empty when not
    /// recording. The trace is spent: later calls record nothing.
    public mutating func finish(
        at endNanos: UInt64, statusCode: Int?, error: String? = nil, attributes: [SpanAttribute] = []
    ) -> [Span] {
        guard isRecording, !spans.isEmpty else { return [] }
        for index in open.reversed() where index != 0 {
            spans[index].endNanos = max(endNanos, spans[index].startNanos)
        }
        open.removeAll()
        let outcome = HTTPSpanOutcome(statusCode: statusCode, error: error, kind: .server)
        spans[0].endNanos = max(endNanos, spans[0].startNanos)
        spans[0].status = outcome.status
        spans[0].attributes += outcome.attributes
        spans[0].attributes += attributes
        defer { spans = [] }
        return spans
    }
}

/// A finished HTTP span's status and attributes by the semantic conventions' rules (HTTP spans, "Status").
struct HTTPSpanOutcome {
    var status: SpanStatus
    var attributes: [SpanAttribute]

    init(statusCode: Int?, error: String?, kind: SpanKind) {
        attributes = []
        if let statusCode { attributes.append(SpanAttribute(SemanticKey.httpResponseStatusCode, statusCode)) }
        // Server spans: 4xx is the client's doing, not an error of this span; client spans: 4xx is an error.
        let errorFrom = kind == .server ? 500 : 400
        if let error {
            attributes.append(SpanAttribute(SemanticKey.errorType, error))
            status = .error(error)
        } else if let statusCode, statusCode >= errorFrom {
            attributes.append(SpanAttribute(SemanticKey.errorType, String(statusCode)))
            status = .error(String(statusCode))
        } else if statusCode == nil {
            attributes.append(SpanAttribute(SemanticKey.errorType, "_OTHER"))
            status = .error("no response")
        } else {
            status = .unset
        }
    }
}
