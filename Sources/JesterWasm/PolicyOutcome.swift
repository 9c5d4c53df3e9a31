// SPDX-License-Identifier: Apache-2.0

/// One change to a message's fields, in the order the policy asked for it.
public enum FieldEdit: Sendable, Equatable {
    /// Replace every field of that name with this one.
    case set(PolicyField)
    /// Add a field, keeping those of the same name.
    case add(PolicyField)
    /// Remove every field of that name (lowercase).
    case remove(String)
}

/// Where the policy asked the router to send a request: resolved by the router (pre-route, and pre-upstream on
/// routes that opt into one re-resolve pass).
public struct RouteHint: Sendable, Equatable {
    /// A route id.
    public var route: String?
    /// Tags the router matches on.
    public var tags: [String] = []
    /// An upstream (pool) of the route's.
    public var upstream: String?

    /// A hint; empty by default.
    public init(route: String? = nil, tags: [String] = [], upstream: String? = nil) {
        self.route = route
        self.tags = tags
        self.upstream = upstream
    }

    /// Whether the policy hinted nothing.
    public var isEmpty: Bool { route == nil && tags.isEmpty && upstream == nil }
}

/// What a policy changes in a request that goes on (pre-route, pre-upstream): checked values, ready to apply.
public struct RequestMutations: Sendable, Equatable {
    public var fields: [FieldEdit] = []
    /// The request's new method (a token).
    public var method: String?
    /// The request's new path (origin-form, no query).
    public var path: String?
    /// The request's new query (without "?").
    public var query: String?
    /// Where the router is asked to send the request.
    public var routeHint = RouteHint()
    /// pre-upstream: the upstream's response timeout for this request, in milliseconds.
    public var upstreamTimeoutMilliseconds: UInt32?
    /// pre-upstream: the most retries for this request.
    public var upstreamRetries: UInt32?
    /// pre-upstream: the body that goes upstream instead.
    public var body: [UInt8]?

    public init() {}

    /// Whether the policy changed nothing (the common case, which the caller skips).
    public var isEmpty: Bool { self == RequestMutations() }
}

/// What a policy changes in a response that goes on (post-response).
public struct ResponseMutations: Sendable, Equatable {
    public var fields: [FieldEdit] = []
    /// The body that goes to the client instead (a redaction).
    public var body: [UInt8]?

    public init() {}

    /// Whether the policy changed nothing.
    public var isEmpty: Bool { fields.isEmpty && body == nil }
}

/// An answer the policy gives itself.
public struct PolicyResponse: Sendable, Equatable {
    /// 200-599.
    public var status: Int
    /// The response's fields.
    public var fields: [PolicyField]
    /// The response's body.
    public var body: [UInt8]

    /// A response with `status`.
    public init(status: Int, fields: [PolicyField] = [], body: [UInt8] = []) {
        self.status = status
        self.fields = fields
        self.body = body
    }
}

/// Why a call failed; every failure blocks the request (fail closed). An enum so callers count and log by kind.
public enum PolicyFailureKind: String, Sendable, Equatable {
    /// The module trapped (unreachable, a bad memory access, a division by zero, a stack overflow).
    case trap
    /// The call used up its fuel.
    case outOfFuel = "out_of_fuel"
    /// The module asked for more memory (or table) than its limit, then trapped.
    case memoryLimit = "memory_limit"
    /// The call ran past its wall-clock deadline.
    case deadline
    /// The action was malformed: out of memory's bounds, oversized, invalid UTF-8, a field with CR or LF, a
    /// mutation the stage does not allow.
    case malformedResult = "malformed_result"
    /// The instance could not be made (after an earlier trap threw the last one away).
    case instantiation
    /// The policy does not implement the stage.
    case missingStage = "missing_stage"
}

/// A failed call: what kind, and a message for the log (never the request's data).
public struct PolicyFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of failure (counted by kind).
    public var kind: PolicyFailureKind
    /// What happened, for the log.
    public var message: String

    /// A failure of `kind`.
    public init(_ kind: PolicyFailureKind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// "kind: message".
    public var description: String { "\(kind.rawValue): \(message)" }
}

/// What one stage call decided, as a Swift value: the host never lets a trap out of a call.
public enum PolicyOutcome: Sendable, Equatable {
    /// pre-route, pre-upstream: go on with these changes.
    case proceed(RequestMutations)
    /// post-response: go on with these changes.
    case proceedResponse(ResponseMutations)
    /// Answer with this response; nothing (more) reaches the client from the upstream.
    case respond(PolicyResponse)
    /// Refuse with the policy's configured error status.
    case deny(reason: String)
    /// The call failed; the request is refused with the configured error status (fail closed).
    case failed(PolicyFailure)
}
