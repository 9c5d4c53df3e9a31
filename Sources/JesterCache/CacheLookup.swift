// SPDX-License-Identifier: Apache-2.0
/// A stored response served to a client.
public struct ServedResponse: Sendable, Equatable {
    /// The fields to send: the stored ones with the current `Age`.
    public var fields: CacheFields
    /// The client's own conditional (`If-None-Match`, `If-Modified-Since`) matched: answer 304 with these fields
    /// and no body, instead of the stored status and body (§4.3.2).
    public var notModified: Bool
    /// The `Cache-Status` field.
    public var status: CacheStatus

    /// A served response.
    public init(fields: CacheFields, notModified: Bool, status: CacheStatus) {
        self.fields = fields
        self.notModified = notModified
        self.status = status
    }
}

/// What a cache lookup decided for a request (RFC 9111 §4): the I/O layer carries it out.
public enum LookupDecision: Sendable, Equatable {
    /// Answer from the stored response.
    case serve(ServedResponse)
    /// Answer from the stored response (stale, within `stale-while-revalidate`), and send `conditional`'s
    /// request upstream in the background to refresh it (RFC 5861 §3). At most one per key at a time: the
    /// index's fetching flag (Docs/cache-design.md) says whether another request already does.
    case serveAndRevalidate(ServedResponse, conditional: ConditionalRequest)
    /// Send the request upstream with `conditional`'s fields; keep the stored response at hand for the 304 merge
    /// and for `stale-if-error` (`CacheRevalidation.decide`).
    case revalidate(ConditionalRequest, forward: ForwardReason)
    /// Send the request upstream without the client's validators (the response must be complete to be stored),
    /// then decide storing with `StoreDecision`.
    case fetch(ForwardReason)
    /// `only-if-cached` and nothing usable stored: answer 504 (§5.2.1.7).
    case gatewayTimeout(CacheStatus)
}

/// The validators the cache puts on a request it sends upstream (§4.3.1), in place of the client's own.
public struct ConditionalRequest: Sendable, Equatable {
    /// Fields to remove from the client's request first (lowercase).
    public var remove: [String]
    /// Fields to add: `If-None-Match` from the stored `ETag`, `If-Modified-Since` from its `Last-Modified`.
    /// Empty when the stored response has no validator: the request is then unconditional, and only a full
    /// response can answer it.
    public var add: CacheFields

    /// The client's validators that the cache replaces with its own (and `If-Range`, meaningless without the
    /// `Range` that makes a request bypass the cache). It answers the client's own with `ClientConditional`.
    public static let clientValidators = ["if-none-match", "if-modified-since", "if-range"]

    /// The validating request for `stored`.
    public init(for stored: StoredResponse) {
        remove = Self.clientValidators
        add = CacheFields()
        if let tag = stored.entityTag { add.append("If-None-Match", tag.text) }
        if let lastModified = stored.lastModified { add.append("If-Modified-Since", lastModified) }
    }
}

/// The lookup decision (RFC 9111 §4, §4.2.4, §5.2.1; RFC 5861): a pure function of the request, what the index
/// found, the time and the route's policy.
public enum CacheLookup {
    /// Decides what to do for the request `plan` was made for, given `stored`: what the index found under the
    /// request's key (its variant's hash, when the primary entry recorded `Vary` names), or nil; `primaryFound`:
    /// the index had an entry for the URI at all (which tells `vary-miss` from `uri-miss`).
    public static func decide(
        request: CacheRequest, plan: CacheRequestPlan, stored: StoredResponse?, primaryFound: Bool, now: Int64,
        policy: CachePolicy
    ) -> LookupDecision {
        let name = policy.statusName
        let control = plan.control
        guard plan.looksUp else { return .fetch(.bypass) }
        guard let stored else {
            return upstream(.fetch(primaryFound ? .varyMiss : .uriMiss), onlyIfCached: control.onlyIfCached, name)
        }
        // The hash matched; the key itself must too (a different key here is a collision, or a bug).
        guard stored.key == plan.key else { return upstream(.fetch(.miss), onlyIfCached: control.onlyIfCached, name) }
        guard stored.varyMatches(request.fields) else {
            return upstream(.fetch(.varyMiss), onlyIfCached: control.onlyIfCached, name)
        }
        let freshness = stored.freshness
        let ttl = freshness.timeToLive(at: now)
        let fresh = ttl > 0
        func served(_ detail: String? = nil) -> ServedResponse {
            ServedResponse(
                fields: stored.servedFields(at: now), notModified: ClientConditional.notModified(request, stored),
                status: .hit(name: name, timeToLive: ttl, detail: detail))
        }
        let conditional = ConditionalRequest(for: stored)
        // The client's own demands (§5.2.1), unless the route ignores them. An `immutable` response is not
        // revalidated for a client's no-cache while fresh (RFC 8246: it is what reloads send).
        if policy.honoursClientRevalidation {
            var refused = control.noCache && !(fresh && freshness.immutable)
            if let maxAge = control.maxAge, freshness.age(at: now) > maxAge { refused = true }
            if let minFresh = control.minFresh, ttl < minFresh { refused = true }
            if refused {
                return upstream(.revalidate(conditional, forward: .request), onlyIfCached: control.onlyIfCached, name)
            }
        }
        // §5.2.2.4: no-cache means validate on every use, fresh or not.
        if freshness.requiresValidation {
            return upstream(.revalidate(conditional, forward: .stale), onlyIfCached: control.onlyIfCached, name)
        }
        if fresh { return .serve(served()) }
        let staleness = -ttl
        // §4.2.4: stale only where nothing forbids it; the client's max-stale first (it asked for it).
        if !freshness.forbidsStale {
            switch control.maxStale {
            case .any: return .serve(served("max-stale"))
            case .seconds(let limit) where staleness <= limit: return .serve(served("max-stale"))
            default: break
            }
            // RFC 5861 §3: not when the client asked for something fresher.
            let demandsFresher = policy.honoursClientRevalidation && control.constrainsFreshness
            let allowance = freshness.staleWhileRevalidate
            if allowance > 0, staleness <= allowance, !demandsFresher, !control.onlyIfCached {
                return .serveAndRevalidate(served("stale-while-revalidate"), conditional: conditional)
            }
        }
        return upstream(.revalidate(conditional, forward: .stale), onlyIfCached: control.onlyIfCached, name)
    }

    /// `decision`, or 504 when the client said only-if-cached (§5.2.1.7: never go upstream).
    private static func upstream(_ decision: LookupDecision, onlyIfCached: Bool, _ name: String) -> LookupDecision {
        guard onlyIfCached else { return decision }
        var status = CacheStatus(name: name)
        status.detail = "only-if-cached"
        return .gatewayTimeout(status)
    }
}

/// The client's own conditional request evaluated against a response the cache answers with (§4.3.2, with RFC
/// 9110 §13.2.2's precedence).
public enum ClientConditional {
    /// Whether the answer to `request` is 304: `If-None-Match` matches the response's `ETag` (weak comparison,
    /// `*` matches any), or, without `If-None-Match`, the response was not modified since `If-Modified-Since`.
    /// Only for GET and HEAD; a date that cannot be read is ignored (RFC 9110 §13.1.3).
    public static func notModified(_ request: CacheRequest, _ response: StoredResponse) -> Bool {
        notModified(request, status: response.status, fields: response.fields, responseTime: response.responseTime)
    }

    /// The same for a response not stored (a fresh upstream answer about to be sent on).
    public static func notModified(_ request: CacheRequest, status: Int, fields: CacheFields, responseTime: Int64)
        -> Bool
    {
        guard request.method == "GET" || request.method == "HEAD", status == 200 else { return false }
        let noneMatch = request.fields.list("If-None-Match")
        if !noneMatch.isEmpty {
            if noneMatch.contains("*") { return true }
            guard case .value(let text) = fields.single("ETag"), let tag = EntityTag(text) else { return false }
            return noneMatch.compactMap(EntityTag.init).contains { $0.weakMatches(tag) }
        }
        guard case .value(let since) = request.fields.single("If-Modified-Since"),
            let sinceTime = HTTPDate.parse(since, now: responseTime)
        else { return false }
        // §4.3.2: Last-Modified, else Date, else the time it was received.
        let modified: Int64
        if case .value(let text) = fields.single("Last-Modified"), let time = HTTPDate.parse(text, now: responseTime) {
            modified = time
        } else {
            modified = Freshness.dateValue(fields, responseTime: responseTime)
        }
        return modified <= sinceTime
    }
}
