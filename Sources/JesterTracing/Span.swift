// SPDX-License-Identifier: Apache-2.0
/// What a span stands for (OTLP `Span.SpanKind`; the raw values are OTLP's).
public enum SpanKind: Int, Sendable, Hashable {
    /// A phase inside Jester (routing, a filter).
    case `internal` = 1
    /// The request as Jester served it.
    case server = 2
    /// One attempt to send the request upstream.
    case client = 3
}

/// How a span ended (OTLP `Status`). OpenTelemetry leaves it unset for success; error carries a description.
public enum SpanStatus: Sendable, Hashable {
    case unset
    case ok
    case error(String)

    /// OTLP's `Status.StatusCode`.
    public var code: Int {
        switch self {
        case .unset: 0
        case .ok: 1
        case .error: 2
        }
    }
}

/// An attribute's value: the scalar kinds of OTLP's `AnyValue` that HTTP spans use.
public enum AttributeValue: Sendable, Hashable {
    case string(String)
    case int(Int64)
    case double(Double)
    case bool(Bool)
}

/// One attribute of a span, event or resource.
public struct SpanAttribute: Sendable, Hashable {
    public var key: String
    public var value: AttributeValue

    public init(_ key: String, _ value: AttributeValue) {
        self.key = key
        self.value = value
    }

    public init(_ key: String, _ value: String) {
        self.init(key, .string(value))
    }

    public init(_ key: String, _ value: Int) {
        self.init(key, .int(Int64(value)))
    }
}

/// Something that happened at a point in a span (a retry's reason, a filter's refusal).
public struct SpanEvent: Sendable, Hashable {
    public var name: String
    public var timeNanos: UInt64
    public var attributes: [SpanAttribute]

    public init(name: String, timeNanos: UInt64, attributes: [SpanAttribute] = []) {
        self.name = name
        self.timeNanos = timeNanos
        self.attributes = attributes
    }
}

/// A finished span, as the exporter sends it. Times are Unix nanoseconds, given by the caller (no clock here).
public struct Span: Sendable, Hashable {
    public var traceID: TraceID
    public var spanID: SpanID
    /// The parent span; nil for a trace's root.
    public var parentSpanID: SpanID?
    /// Whether the parent is in another process (the caller's span, from `traceparent`): OTLP's flags say so.
    public var parentIsRemote: Bool
    /// The trace's flags as this span saw them.
    public var flags: TraceFlags
    /// The vendors' `tracestate`, recorded with the span as OTLP asks.
    public var traceState: TraceState
    public var name: String
    public var kind: SpanKind
    public var startNanos: UInt64
    public var endNanos: UInt64
    public var status: SpanStatus
    public var attributes: [SpanAttribute]
    public var events: [SpanEvent]

    public init(
        traceID: TraceID, spanID: SpanID, parentSpanID: SpanID?, parentIsRemote: Bool = false,
        flags: TraceFlags = .sampled, traceState: TraceState = .empty, name: String, kind: SpanKind,
        startNanos: UInt64, endNanos: UInt64, status: SpanStatus = .unset, attributes: [SpanAttribute] = [],
        events: [SpanEvent] = []
    ) {
        self.traceID = traceID
        self.spanID = spanID
        self.parentSpanID = parentSpanID
        self.parentIsRemote = parentIsRemote
        self.flags = flags
        self.traceState = traceState
        self.name = name
        self.kind = kind
        self.startNanos = startNanos
        self.endNanos = endNanos
        self.status = status
        self.attributes = attributes
        self.events = events
    }
}

/// OpenTelemetry semantic-convention attribute keys (HTTP spans, stable since semconv 1.23) and Jester's own.
/// Constants, so that a typo is a compile error and the keys match what trace back ends index.
public enum SemanticKey {
    // HTTP server and client spans.
    public static let httpRequestMethod = "http.request.method"
    public static let httpRequestMethodOriginal = "http.request.method_original"
    public static let httpResponseStatusCode = "http.response.status_code"
    public static let httpRoute = "http.route"
    public static let httpRequestResendCount = "http.request.resend_count"
    public static let httpRequestBodySize = "http.request.body.size"
    public static let httpResponseBodySize = "http.response.body.size"
    public static let urlPath = "url.path"
    public static let urlQuery = "url.query"
    public static let urlScheme = "url.scheme"
    public static let urlFull = "url.full"
    public static let serverAddress = "server.address"
    public static let serverPort = "server.port"
    public static let clientAddress = "client.address"
    public static let networkPeerAddress = "network.peer.address"
    public static let networkPeerPort = "network.peer.port"
    public static let networkProtocolName = "network.protocol.name"
    public static let networkProtocolVersion = "network.protocol.version"
    public static let userAgentOriginal = "user_agent.original"
    public static let errorType = "error.type"
    // Resource.
    public static let serviceName = "service.name"
    public static let serviceInstanceID = "service.instance.id"
    public static let serviceVersion = "service.version"
    // Jester's own (a `jester.` namespace, as the conventions ask of names they do not define).
    public static let route = "jester.route"
    /// How the routing phase ended (`PhaseSpans.RouteOutcome`), and what the matched route does.
    public static let routeOutcome = "jester.route.outcome"
    public static let routeAction = "jester.route.action"
    /// The routing phase read the body's start (a route of the listener matches on the body), and its span
    /// covers the wait for it.
    public static let routeReadBody = "jester.route.read_body"
    public static let upstream = "jester.upstream"
    public static let filter = "jester.filter"
    /// The filter's `kind` as the configuration spells it (`ip_rules`, `jwt`…).
    public static let filterKind = "jester.filter.kind"
    public static let filterOutcome = "jester.filter.outcome"
    /// The filter waited (a Redis round trip, a hash on the thread pool): its span covers the wait.
    public static let filterWaited = "jester.filter.waited"
    /// A Wasm policy's name, the stage it ran at, and what its call decided (proceed, respond, deny, failure).
    public static let policy = "jester.policy"
    public static let policyStage = "jester.policy.stage"
    public static let policyDecision = "jester.policy.decision"
    public static let requestID = "jester.request_id"
    public static let attempt = "jester.upstream.attempt"
}
