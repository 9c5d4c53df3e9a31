// SPDX-License-Identifier: Apache-2.0
/// The spans of the phases before the upstream: routing, and each request filter that ran. Their names,
/// attributes and status are decided here once, so the exchange only says what happened and when
/// (jester-pipeline(7), TRACING, lists them).
///
/// Both are internal spans, children of the server span. Neither is an error for what the client caused (no
/// route, a body too large, a refused credential): like a server span (HTTP semantic conventions, "Status"), a
/// phase is an error only when Jester could not do its part, which for a filter is an answer from 500 (one that
/// could not be set up, a rate limiter whose Redis is gone and fails closed).
public enum PhaseSpans {
    /// The routing span's name.
    public static let routingName = "routing"

    /// A filter span's name: "filter <name>", the name the configuration gives it (`[filters.NAME]`), which a
    /// configuration bounds, so span names stay few.
    public static func filterName(_ name: String) -> String {
        "filter " + name
    }

    /// How the routing phase ended.
    public enum RouteOutcome: String, Sendable, Hashable {
        /// A route matched; the request goes on to its filters and action.
        case matched
        /// No route matched: 404.
        case notFound = "not_found"
        /// The route's `max_body_size` is smaller than the body declared or already read: 413.
        case bodyTooLarge = "body_too_large"
        /// The listener only redirects to HTTPS (`redirect_to_https`): 308 before any route.
        case redirectToHTTPS = "redirect_to_https"
        /// A request the routing phase cannot place (a redirect to HTTPS without a Host): 400.
        case badRequest = "bad_request"
    }

    /// What the matched route does with the request (a route's action, as jester.toml(5) names it).
    public enum RouteAction: String, Sendable, Hashable {
        case proxy
        case split
        case respond
        case redirect
    }

    /// What a filter decided, as its span records it.
    public enum FilterOutcome: String, Sendable, Hashable {
        /// Go on (to the next filter, then the upstream).
        case proceed
        /// It answered itself (a challenge, 429 with `Retry-After`).
        case respond
        /// It refused with an error status.
        case fail
        /// The request was given up while the filter waited (the client left): no verdict came.
        case abandoned
    }
}

extension RequestTrace {
    /// Begins the routing span at `startNanos` (the request's start when routing read the body's start, so the
    /// wait for it is part of the phase).
    public mutating func beginRouting(at startNanos: UInt64, ids: inout TraceIDGenerator) -> SpanHandle {
        beginSpan(PhaseSpans.routingName, at: startNanos, ids: &ids)
    }

    /// Ends the routing span with its outcome: a matched `route` (also `http.route` on the server span, as the
    /// semantic conventions ask of a server span whose route is known) and its `action`, or the status of a
    /// refusal. `readBody`: the decision read the body's start (body matchers), so the span began with the request.
    public mutating func endRouting(
        _ handle: SpanHandle, at endNanos: UInt64, outcome: PhaseSpans.RouteOutcome, route: String? = nil,
        action: PhaseSpans.RouteAction? = nil, statusCode: Int? = nil, readBody: Bool = false
    ) {
        guard handle != .none else { return }
        var attributes = [SpanAttribute(SemanticKey.routeOutcome, outcome.rawValue)]
        if let route {
            attributes.append(SpanAttribute(SemanticKey.httpRoute, route))
            setAttribute(SpanAttribute(SemanticKey.httpRoute, route), on: serverSpan)
        }
        if let action { attributes.append(SpanAttribute(SemanticKey.routeAction, action.rawValue)) }
        if let statusCode { attributes.append(SpanAttribute(SemanticKey.httpResponseStatusCode, statusCode)) }
        if readBody { attributes.append(SpanAttribute(SemanticKey.routeReadBody, .bool(true))) }
        endSpan(handle, at: endNanos, attributes: attributes)
    }

    /// Begins the span of one call of the Wasm policy `name` at `stage` (`pre_route`, ...).
    public mutating func beginPolicy(
        name: String, stage: String, at startNanos: UInt64, ids: inout TraceIDGenerator
    ) -> SpanHandle {
        guard isRecording else { return .none }
        return beginSpan(
            "policy " + name, at: startNanos, ids: &ids,
            attributes: [SpanAttribute(SemanticKey.policy, name), SpanAttribute(SemanticKey.policyStage, stage)])
    }

    /// Ends a policy call's span with its decision and the status it answered with (a respond, a deny, a
    /// failure's error status); a failure is an error.
    public mutating func endPolicy(
        _ handle: SpanHandle, at endNanos: UInt64, decision: String, statusCode: Int? = nil, failure: String? = nil
    ) {
        guard handle != .none else { return }
        var attributes = [SpanAttribute(SemanticKey.policyDecision, decision)]
        if let statusCode { attributes.append(SpanAttribute(SemanticKey.httpResponseStatusCode, statusCode)) }
        endSpan(handle, at: endNanos, status: failure.map { .error($0) } ?? .unset, attributes: attributes)
    }

    /// Begins the span of the filter `name` (of `kind`, the configuration's spelling), as it is applied.
    public mutating func beginFilter(
        name: String, kind: String, at startNanos: UInt64, ids: inout TraceIDGenerator
    ) -> SpanHandle {
        guard isRecording else { return .none }
        return beginSpan(
            PhaseSpans.filterName(name), at: startNanos, ids: &ids,
            attributes: [SpanAttribute(SemanticKey.filter, name), SpanAttribute(SemanticKey.filterKind, kind)])
    }

    /// Ends a filter's span with its outcome and the status it answered with (`respond`, `fail`); `waited`: the
    /// filter waited for its verdict (the span covers the wait). An error from 500 only.
    public mutating func endFilter(
        _ handle: SpanHandle, at endNanos: UInt64, outcome: PhaseSpans.FilterOutcome, statusCode: Int? = nil,
        waited: Bool = false
    ) {
        guard handle != .none else { return }
        var attributes = [SpanAttribute(SemanticKey.filterOutcome, outcome.rawValue)]
        if let statusCode { attributes.append(SpanAttribute(SemanticKey.httpResponseStatusCode, statusCode)) }
        if waited { attributes.append(SpanAttribute(SemanticKey.filterWaited, .bool(true))) }
        let status: SpanStatus = statusCode.map { $0 >= 500 ? .error(String($0)) : .unset } ?? .unset
        endSpan(handle, at: endNanos, status: status, attributes: attributes)
    }
}
