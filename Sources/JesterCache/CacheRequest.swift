// SPDX-License-Identifier: Apache-2.0
/// A request as the cache sees it: the parts that make its key and the fields that decide whether the cache may
/// take part at all. The I/O layer fills it from the exchange's head, whatever protocol carried it.
public struct CacheRequest: Sendable, Equatable {
    /// The method, case-sensitive (RFC 9110 §9.1).
    public var method: String
    /// `http` or `https`: what the client spoke to Jester.
    public var scheme: String
    /// The authority the route matched (Host, `:authority`, or an absolute-form target's).
    public var authority: String
    /// The path, as received (not the route's rewrite: the key names what the client asked for).
    public var path: String
    /// The query without its `?`; nil when the target has none.
    public var query: String?
    /// The request's header fields.
    public var fields: CacheFields
    /// The request has content (a length above zero, or chunked). A GET with a body is not cached: the body is
    /// not in the key, and an origin that reads it would let one client's body decide everyone's response.
    public var hasBody: Bool

    /// A request from its origin-form or absolute-form path-and-query `target` (split at the first `?`).
    public init(
        method: String, scheme: String, authority: String, target: String, fields: CacheFields, hasBody: Bool = false
    ) {
        self.method = method
        self.scheme = scheme
        self.authority = authority
        if let mark = target.firstIndex(of: "?") {
            path = String(target[..<mark])
            query = String(target[target.index(after: mark)...])
        } else {
            path = target
            query = nil
        }
        self.fields = fields
        self.hasBody = hasBody
    }

    /// This request without the fields `names` (a plan's `stripFields`). The I/O layer applies it right after
    /// `classify` and uses the result for everything after: the lookup's Vary match, the request sent upstream
    /// and the Vary values stored, so all three describe the request the origin actually saw.
    public func stripping(_ names: [String]) -> CacheRequest {
        var stripped = self
        for name in names { stripped.fields.remove(name) }
        return stripped
    }

    /// Whether the cache takes part in this request, and how (see `CacheRequestPlan`).
    public func classify(policy: CachePolicy) -> CacheRequestClassification {
        guard policy.methods.contains(method) else { return .bypass(.method) }
        if hasBody { return .bypass(.requestBody) }
        // Ranges are not combined from or into stored responses (§3.3): the origin answers them.
        if fields.contains("Range") { return .bypass(.range) }
        if fields.contains("Upgrade") { return .bypass(.upgrade) }
        // Preconditions the cache does not evaluate (RFC 9110 §13.1.1, §13.1.4): the origin answers 412 or not.
        if fields.contains("If-Match") || fields.contains("If-Unmodified-Since") { return .bypass(.precondition) }
        if fields.contains("Cookie"), !policy.cachesRequestsWithCookies { return .bypass(.cookie) }
        let keyed = Set(policy.keyFields.map(CacheFields.lowercased))
        let unkeyed = policy.unkeyedFields.map(CacheFields.lowercased).filter {
            !keyed.contains($0) && fields.contains($0)
        }
        if !unkeyed.isEmpty, policy.unkeyedFieldAction == .bypass { return .bypass(.unkeyedField) }
        let control = RequestCacheControl(fields)
        return .cacheable(
            CacheRequestPlan(
                key: CacheKey(request: self, policy: policy), control: control,
                // §3.5: a response to a request with credentials is not reused unless it says so, and a stored
                // response is no answer for someone who presented credentials the origin would have checked.
                looksUp: !fields.contains("Authorization") || policy.cachesAuthorizedRequests,
                mayStore: !control.noStore, stripFields: unkeyed))
    }
}

/// Why the cache stays out of a request entirely (RFC 9211 `fwd=bypass`, or `fwd=method`).
public enum BypassReason: String, Sendable, Equatable {
    /// The route does not cache this method (a POST, or a HEAD when the route caches only GET).
    case method
    /// The request has content.
    case requestBody = "request-body"
    /// A Range request.
    case range
    /// A protocol upgrade (WebSocket).
    case upgrade
    /// `If-Match` or `If-Unmodified-Since`.
    case precondition
    /// `Cookie`, and the route does not cache requests with cookies.
    case cookie
    /// An unkeyed field that can change the response, and the route says to bypass rather than strip.
    case unkeyedField = "unkeyed-field"
}

/// What `CacheRequest.classify` decided.
public enum CacheRequestClassification: Sendable, Equatable {
    /// Forward as if there were no cache; store nothing.
    case bypass(BypassReason)
    /// The cache takes part.
    case cacheable(CacheRequestPlan)
}

/// How the cache takes part in a request it may serve or fill.
public struct CacheRequestPlan: Sendable, Equatable {
    /// The primary key.
    public var key: CacheKey
    /// The request's Cache-Control.
    public var control: RequestCacheControl
    /// Look for a stored response. False for a request with `Authorization` on a route that does not cache
    /// them: it goes upstream, and its response is stored only if it says it may be (§3.5).
    public var looksUp: Bool
    /// The response may be stored (false: the request said `no-store`, §5.2.1.5).
    public var mayStore: Bool
    /// Fields (lowercase) to remove from the request before it goes upstream, whatever the lookup decides: the
    /// unkeyed fields that could otherwise make the stored response depend on one client's request.
    public var stripFields: [String]

    /// A plan.
    public init(key: CacheKey, control: RequestCacheControl, looksUp: Bool, mayStore: Bool, stripFields: [String]) {
        self.key = key
        self.control = control
        self.looksUp = looksUp
        self.mayStore = mayStore
        self.stripFields = stripFields
    }
}
