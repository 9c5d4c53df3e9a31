// SPDX-License-Identifier: Apache-2.0
/// Whether a response may be stored, and what of it (RFC 9111 §3, for a shared cache).
public enum StoreDecision: Sendable, Equatable {
    /// Store this (the I/O layer writes the body after it, then publishes the entry in the index).
    case store(StoredResponse)
    /// Do not store; pass the response on only.
    case doNotStore(NotStoredReason)

    /// The decision for a response with `status` and `fields` to `request` (planned as `plan`), sent at
    /// `requestTime` and received at `responseTime`. `contentLength` is the declared length, when there is one;
    /// a body without one that outgrows `maxObjectSize` is the I/O layer's to abandon.
    public static func decide(
        request: CacheRequest, plan: CacheRequestPlan, status: Int, fields: CacheFields, requestTime: Int64,
        responseTime: Int64, contentLength: Int64? = nil, policy: CachePolicy
    ) -> StoreDecision {
        if let reason = refusal(
            request: request, plan: plan, status: status, fields: fields, contentLength: contentLength, policy: policy)
        {
            return .doNotStore(reason)
        }
        // Checked by `refusal`: Vary is not "*".
        let varyNames = VaryValue.names(from: fields) ?? []
        let freshness = Freshness(
            status: status, fields: fields, requestTime: requestTime, responseTime: responseTime, policy: policy)
        let stored = StoredResponse(
            key: plan.key, status: status, fields: storedFields(fields, policy: policy), requestTime: requestTime,
            responseTime: responseTime, freshness: freshness,
            varyValues: VaryValue.values(of: varyNames, in: request.fields))
        // Stale on arrival, nothing to revalidate with and no stale use allowed: every use would fetch it whole.
        if !freshness.isFresh(at: responseTime), stored.entityTag == nil, stored.lastModified == nil,
            freshness.staleWhileRevalidate == 0, freshness.staleIfError == 0
        {
            return .doNotStore(freshness.source == .none ? .noFreshnessInformation : .staleWithoutValidator)
        }
        return .store(stored)
    }

    /// The first rule of §3 (and the policy) the response breaks, if any.
    static func refusal(
        request: CacheRequest, plan: CacheRequestPlan, status: Int, fields: CacheFields, contentLength: Int64?,
        policy: CachePolicy
    ) -> NotStoredReason? {
        guard plan.mayStore else { return .requestNoStore }
        // A HEAD response has no body: stored under the GET key it would be served empty to GETs.
        guard request.method == "GET" else { return .method }
        guard status >= 200 else { return .statusNotFinal }
        guard status != 304 else { return .notModified }
        guard status != 206 else { return .partialContent }
        let control = ResponseCacheControl(fields)
        if control.mustUnderstand {
            // §5.2.2.3: a status this cache knows overrides no-store; one it does not know is never stored.
            guard CachePolicy.understoodStatuses.contains(status) else { return .statusNotUnderstood }
        } else if control.noStore {
            return .noStore
        }
        if control.privateScope == .whole { return .private }
        // §3.5: credentials, unless the response says a shared cache may reuse it.
        if request.fields.contains("Authorization"), !policy.cachesAuthorizedRequests,
            !(control.mustRevalidate || control.isPublic || control.sharedMaxAge.value != nil)
        {
            return .authorization
        }
        if fields.contains("Set-Cookie"), policy.setCookie == .doNotStore { return .setCookie }
        if VaryValue.names(from: fields) == nil { return .varyAny }
        // §3: an explicit lifetime, `public`, or a status cacheable by default.
        let explicit =
            control.sharedMaxAge != .absent || control.maxAge != .absent || fields.contains("Expires")
            || control.isPublic
        guard explicit || CachePolicy.heuristicallyCacheableStatuses.contains(status) else {
            return .noFreshnessInformation
        }
        if let limit = policy.maxObjectSize, let contentLength, contentLength > limit { return .tooLarge }
        return nil
    }

    /// `fields` without what a cache must not keep or resend: hop-by-hop fields and those `Connection` names
    /// (§3.1), `Age` (recomputed on every use), the fields a qualified `no-cache` or `private` names, and
    /// `Set-Cookie` when the policy stores such responses without it.
    public static func storedFields(_ fields: CacheFields, policy: CachePolicy) -> CacheFields {
        let control = ResponseCacheControl(fields)
        var dropped = Set(hopByHopFields)
        dropped.formUnion(fields.list("Connection").map(CacheFields.lowercased))
        dropped.insert("age")
        dropped.formUnion(control.noCache.fieldNames)
        dropped.formUnion(control.privateScope.fieldNames)
        if policy.setCookie == .storeWithout { dropped.insert("set-cookie") }
        return CacheFields(fields.fields.filter { !dropped.contains(CacheFields.lowercased($0.name)) })
    }

    /// Fields that belong to one connection (RFC 9110 §7.6.1), plus the proxy-authentication ones (§3.1 lets a
    /// cache drop them, and this one does: they concern Jester's own client, not the next one).
    static let hopByHopFields = [
        "connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade", "trailer",
        "proxy-authenticate", "proxy-authentication-info",
    ]
}

/// Why a response was not stored (the `detail` of `Cache-Status`, and the reason in logs and tests).
public enum NotStoredReason: String, Sendable, Equatable {
    /// The request said `no-store`.
    case requestNoStore = "request-no-store"
    /// A method whose responses are not stored (HEAD: no body to serve a GET with).
    case method
    /// An interim response.
    case statusNotFinal = "status-not-final"
    /// A 304 updates a stored response; it is never stored itself.
    case notModified = "not-modified"
    /// Partial content (§3.3: this cache does not combine ranges).
    case partialContent = "partial-content"
    /// `must-understand` with a status this cache does not know.
    case statusNotUnderstood = "status-not-understood"
    /// `no-store`.
    case noStore = "no-store"
    /// `private` (unqualified).
    case `private`
    /// A request with `Authorization` and a response that did not allow sharing it.
    case authorization
    /// `Set-Cookie`, on a route that does not store such responses.
    case setCookie = "set-cookie"
    /// `Vary: *`: no later request could match it.
    case varyAny = "vary-any"
    /// No lifetime, no `public`, and a status not cacheable by default.
    case noFreshnessInformation = "no-freshness-information"
    /// Stale when it arrived, without a validator or a stale-* allowance, so it could never be used.
    case staleWithoutValidator = "stale-without-validator"
    /// Larger than the route's `maxObjectSize`.
    case tooLarge = "too-large"
}
