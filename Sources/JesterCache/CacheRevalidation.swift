// SPDX-License-Identifier: Apache-2.0
/// What came back from upstream for a request the cache sent on.
public enum UpstreamOutcome: Sendable, Equatable {
    /// A response head: its status and fields, when the request was sent and when the head arrived (seconds
    /// since the epoch), and its declared length.
    case response(status: Int, fields: CacheFields, requestTime: Int64, responseTime: Int64, contentLength: Int64?)
    /// No response: the connection failed, timed out or was reset before a head arrived.
    case failed
}

/// What becomes of the stored entry for a key.
public enum EntryUpdate: Sendable, Equatable {
    /// Nothing changes.
    case keep
    /// Publish this (a new body with `forward`; new metadata over the kept body with `serveStored`). When its
    /// `indexHash` differs from the old entry's (its `Vary` changed), the old one goes.
    case store(StoredResponse)
    /// Remove the stored entry: the origin replaced it with something this cache may not keep.
    case remove(NotStoredReason)
}

/// What to do once the upstream answered (or did not): the second half of a cache exchange.
public enum UpstreamDecision: Sendable, Equatable {
    /// Answer from the stored body, with `response`'s fields: after a 304 refreshed it (§4.3.4), or the
    /// upstream failed within `stale-if-error` (RFC 5861 §4).
    case serveStored(ServedResponse, entry: EntryUpdate)
    /// Send the upstream's response on (`notModified`: as a 304 to the client's own conditional, §4.3.2), with
    /// `status` as its `Cache-Status`.
    case forward(notModified: Bool, status: CacheStatus, entry: EntryUpdate)
    /// The 304 did not select the stored response (its validator is another's): send the request again without
    /// validators.
    case refetch(ForwardReason)
    /// The upstream failed and nothing stored may stand in: the I/O layer answers with its usual error.
    case fail(CacheStatus)
}

/// The decision after the upstream's answer: the 304 merge, stale-if-error, storing and invalidation.
public enum CacheRevalidation {
    /// Status codes RFC 5861 §4 counts as errors for `stale-if-error`.
    public static let errorStatuses: Set<Int> = [500, 502, 503, 504]

    /// Decides for `request` (planned as `plan`), sent upstream because of `forward`, with `stored` the response
    /// the lookup found (nil on a miss), once `outcome` is known, at `now`.
    public static func decide(
        request: CacheRequest, plan: CacheRequestPlan, stored: StoredResponse?, forward: ForwardReason,
        outcome: UpstreamOutcome, now: Int64, policy: CachePolicy
    ) -> UpstreamDecision {
        let name = policy.statusName
        guard case .response(let status, let fields, let requestTime, let responseTime, let length) = outcome else {
            if let stale = staleIfError(request, plan, stored, forward, upstreamStatus: nil, now: now, policy) {
                return .serveStored(stale, entry: .keep)
            }
            var failed = CacheStatus.forward(forward, name: name)
            failed.detail = "upstream-failed"
            return .fail(failed)
        }
        if errorStatuses.contains(status),
            let stale = staleIfError(request, plan, stored, forward, upstreamStatus: status, now: now, policy)
        {
            return .serveStored(stale, entry: .keep)
        }
        if status == 304, let stored {
            return refreshed(
                request, plan, stored, forward, fields: fields, requestTime: requestTime, responseTime: responseTime,
                now: now, policy: policy)
        }
        var cacheStatus = CacheStatus.forward(forward, name: name)
        let entry: EntryUpdate
        switch StoreDecision.decide(
            request: request, plan: plan, status: status, fields: fields, requestTime: requestTime,
            responseTime: responseTime, contentLength: length, policy: policy)
        {
        case .store(let response):
            cacheStatus.stored = true
            cacheStatus.timeToLive = response.freshness.timeToLive(at: now)
            entry = .store(response)
        case .doNotStore(let reason):
            cacheStatus.detail = reason.rawValue
            // §4.3.3: a full response to a validation request means the stored one is no longer suitable. Not
            // so a server error (§4.3.3 lets the cache act as if the server had not replied), another variant's
            // response, a HEAD's (no body: it says nothing against the stored GET's), or a client's no-store.
            let replacesStored = stored != nil && forward != .varyMiss && !(500...599).contains(status)
            entry = replacesStored && reason != .requestNoStore && reason != .method ? .remove(reason) : .keep
        }
        let notModified = ClientConditional.notModified(
            request, status: status, fields: fields, responseTime: responseTime)
        return .forward(notModified: notModified, status: cacheStatus, entry: entry)
    }

    /// The 304 merge (§4.3.4): if the 304 selects `stored`, its fields replace the stored ones (except those
    /// the stored body depends on), and the response is served from the stored body.
    static func refreshed(
        _ request: CacheRequest, _ plan: CacheRequestPlan, _ stored: StoredResponse, _ forward: ForwardReason,
        fields: CacheFields, requestTime: Int64, responseTime: Int64, now: Int64, policy: CachePolicy
    ) -> UpstreamDecision {
        guard selects(notModified: fields, stored) else { return .refetch(forward) }
        let merged = merge(stored: stored.fields, notModified: fields)
        // The stored response is a GET's, whatever method refreshed it (a HEAD may, §4.3.5).
        var getRequest = request
        getRequest.method = "GET"
        var status = CacheStatus.forward(forward, name: policy.statusName)
        status.forwardStatus = 304
        let entry: EntryUpdate
        let refreshed: StoredResponse
        switch StoreDecision.decide(
            request: getRequest, plan: plan, status: stored.status, fields: merged, requestTime: requestTime,
            responseTime: responseTime, policy: policy)
        {
        case .store(let response):
            refreshed = response
            status.stored = true
            entry = .store(response)
        case .doNotStore(let reason):
            // Serve this once from the stored body with the new fields, then forget it (unless the client only
            // asked that nothing be stored for it).
            var once = stored
            once.fields = StoreDecision.storedFields(merged, policy: policy)
            once.freshness = Freshness(
                status: stored.status, fields: merged, requestTime: requestTime, responseTime: responseTime,
                policy: policy)
            refreshed = once
            status.detail = reason.rawValue
            entry = reason == .requestNoStore ? .keep : .remove(reason)
        }
        status.timeToLive = refreshed.freshness.timeToLive(at: now)
        let served = ServedResponse(
            fields: refreshed.servedFields(at: now), notModified: ClientConditional.notModified(request, refreshed),
            status: status)
        return .serveStored(served, entry: entry)
    }

    /// Whether a 304 with `fields` is about `stored` (§4.3.4). A strong ETag must match strongly, a weak one
    /// weakly, else `Last-Modified` must be the same. A 304 with no validator at all is taken as about it: the
    /// request carried only its validators, so there is nothing else it can be about (the RFC's rule for one
    /// stored response without validators, widened because origins answer `If-Modified-Since` with bare 304s).
    public static func selects(notModified fields: CacheFields, _ stored: StoredResponse) -> Bool {
        if case .value(let text) = fields.single("ETag") {
            guard let tag = EntityTag(text), let storedTag = stored.entityTag else { return false }
            return tag.isWeak ? tag.weakMatches(storedTag) : tag.strongMatches(storedTag)
        }
        if case .value(let text) = fields.single("Last-Modified") {
            return text == stored.lastModified
        }
        return !fields.contains("ETag") && !fields.contains("Last-Modified")
    }

    /// The stored fields updated from a 304's (§3.2): each field the 304 carries replaces every stored line of
    /// that name, except those the stored body depends on (`Content-Length`, `Content-Encoding`,
    /// `Content-Range`, `Content-Type`: a 304 describes no body) and hop-by-hop ones. A stored `Age` was already
    /// dropped; the 304's counts from now on.
    public static func merge(stored: CacheFields, notModified: CacheFields) -> CacheFields {
        let kept: Set<String> = ["content-length", "content-encoding", "content-range", "content-type"]
        var skip = Set(StoreDecision.hopByHopFields).union(kept)
        skip.formUnion(notModified.list("Connection").map(CacheFields.lowercased))
        var merged = stored
        var replaced = Set<String>()
        for field in notModified.fields {
            let name = CacheFields.lowercased(field.name)
            guard !skip.contains(name) else { continue }
            if replaced.insert(name).inserted { merged.remove(name) }
            merged.append(field.name, field.value)
        }
        return merged
    }

    /// The stored response served in place of an upstream failure, when RFC 5861 §4 allows it: the response's
    /// (or the policy's) stale-if-error, or the request's, covers how stale it is, and nothing forbids serving
    /// it stale or unvalidated.
    static func staleIfError(
        _ request: CacheRequest, _ plan: CacheRequestPlan, _ stored: StoredResponse?, _ forward: ForwardReason,
        upstreamStatus: Int?, now: Int64, _ policy: CachePolicy
    ) -> ServedResponse? {
        guard let stored, forward != .varyMiss, forward != .uriMiss, forward != .bypass else { return nil }
        let freshness = stored.freshness
        guard !freshness.forbidsStale, !freshness.requiresValidation else { return nil }
        let ttl = freshness.timeToLive(at: now)
        let allowance = max(freshness.staleIfError, plan.control.staleIfError ?? 0)
        guard ttl > 0 || (allowance > 0 && -ttl <= allowance) else { return nil }
        var status = CacheStatus.forward(forward, name: policy.statusName)
        status.forwardStatus = upstreamStatus
        status.timeToLive = ttl
        status.detail = "stale-if-error"
        return ServedResponse(
            fields: stored.servedFields(at: now), notModified: ClientConditional.notModified(request, stored),
            status: status)
    }
}

/// Invalidation after unsafe methods (RFC 9111 §4.4).
public enum CacheInvalidation {
    /// Whether a response with `status` to a request with `method` must invalidate the stored responses for the
    /// target URI (and for same-origin `Location` and `Content-Location`): an unsafe method and a non-error
    /// status.
    public static func invalidates(method: String, status: Int) -> Bool {
        let safe: Set<String> = ["GET", "HEAD", "OPTIONS", "TRACE"]
        return !safe.contains(method) && (200..<400).contains(status)
    }

    /// The primary keys to invalidate after such a response: the target's GET key, and those of `Location` and
    /// `Content-Location` when they are on the same origin (§4.4: never another host's, which would let one
    /// origin empty another's entries).
    public static func keys(request: CacheRequest, responseFields: CacheFields, policy: CachePolicy) -> [CacheKey] {
        var get = request
        get.method = "GET"
        var keys = [CacheKey(request: get, policy: policy)]
        let origin = "\(keys[0].scheme)://\(keys[0].authority)"
        for name in ["Location", "Content-Location"] {
            guard case .value(let location) = responseFields.single(name) else { continue }
            var target: String?
            if location.hasPrefix("/"), !location.hasPrefix("//") {
                target = location
            } else {
                // An absolute URI on the same origin (compared as the key normalizes: case and default port).
                let parts = location.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false)
                if parts.count >= 3, parts[1].isEmpty {
                    let scheme = CacheFields.lowercased(String(parts[0].dropLast()))
                    let authority = CacheKey.normalizedAuthority(String(parts[2]), scheme: scheme)
                    if "\(scheme)://\(authority)" == origin { target = "/" + (parts.count > 3 ? String(parts[3]) : "") }
                }
            }
            guard let target else { continue }
            var other = get
            let split = CacheRequest(
                method: "GET", scheme: get.scheme, authority: get.authority, target: target, fields: get.fields)
            other.path = split.path
            other.query = split.query
            let key = CacheKey(request: other, policy: policy)
            if !keys.contains(key) { keys.append(key) }
        }
        return keys
    }
}
