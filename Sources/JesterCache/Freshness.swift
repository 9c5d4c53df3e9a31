// SPDX-License-Identifier: Apache-2.0
/// How long a stored response stays fresh and how old it is (RFC 9111 §4.2), computed once when it is stored
/// or refreshed, so a lookup is a few integer operations and the index can keep these numbers in its slot.
///
/// All times are seconds since the Unix epoch, passed in: wall-clock time, because `Date`, `Expires` and `Age`
/// are wall-clock values and the index outlives a process (and a boot, if it is ever persisted).
public struct Freshness: Sendable, Equatable {
    /// Where the lifetime came from (for `Cache-Status`'s `detail` and for tests).
    public enum Source: Sendable, Equatable {
        /// `s-maxage`.
        case sharedMaxAge
        /// `max-age`.
        case maxAge
        /// `Expires` minus `Date`.
        case expires
        /// The policy's share of the time since `Last-Modified`.
        case heuristic
        /// No explicit lifetime and no heuristic: stale from the start.
        case none
        /// A lifetime directive or `Expires` that could not be read: stale from the start (§4.2.1).
        case invalid
    }

    /// The freshness lifetime in seconds (§4.2.1).
    public var lifetime: Int64
    /// Where it came from.
    public var source: Source
    /// The age the response had when it was received (§4.2.3's corrected_initial_age).
    public var correctedInitialAge: Int64
    /// When it was received (response_time).
    public var responseTime: Int64
    /// How long past its lifetime it may be served while being revalidated (RFC 5861 §3); 0: not at all.
    public var staleWhileRevalidate: Int64
    /// How long past its lifetime it may be served when the origin fails (RFC 5861 §4); 0: not at all.
    public var staleIfError: Int64
    /// `no-cache` (unqualified): every use needs a successful validation first (§5.2.2.4).
    public var requiresValidation: Bool
    /// It may never be served stale: must-revalidate, proxy-revalidate, s-maxage (§4.2.4).
    public var forbidsStale: Bool
    /// `immutable` (RFC 8246): a client's own `no-cache` on a reload need not reach the origin while fresh.
    public var immutable: Bool

    /// A response's freshness from its status and fields, requested at `requestTime` and received at
    /// `responseTime`.
    public init(status: Int, fields: CacheFields, requestTime: Int64, responseTime: Int64, policy: CachePolicy) {
        let control = ResponseCacheControl(fields)
        (lifetime, source) = Self.lifetime(
            status: status, fields: fields, control: control, responseTime: responseTime, policy: policy)
        correctedInitialAge = Self.correctedInitialAge(
            fields: fields, requestTime: requestTime, responseTime: responseTime)
        self.responseTime = responseTime
        forbidsStale = control.forbidsStale
        staleWhileRevalidate = forbidsStale ? 0 : control.staleWhileRevalidate.value ?? 0
        staleIfError = forbidsStale ? 0 : control.staleIfError.value ?? policy.staleIfError ?? 0
        requiresValidation = control.noCache == .whole
        immutable = control.immutable
    }

    /// The freshness lifetime (§4.2.1): s-maxage, else max-age, else Expires minus Date, else the heuristic if
    /// the policy has one; an unreadable value at the first step that is present makes it 0 (stale).
    public static func lifetime(
        status: Int, fields: CacheFields, control: ResponseCacheControl, responseTime: Int64, policy: CachePolicy
    ) -> (Int64, Source) {
        switch control.sharedMaxAge {
        case .seconds(let seconds): return (seconds, .sharedMaxAge)
        case .invalid: return (0, .invalid)
        case .absent: break
        }
        switch control.maxAge {
        case .seconds(let seconds): return (seconds, .maxAge)
        case .invalid: return (0, .invalid)
        case .absent: break
        }
        switch fields.single("Expires") {
        case .value(let text):
            // §5.3: an invalid date, "0" especially, is a time in the past.
            guard let expires = HTTPDate.parse(text, now: responseTime) else { return (0, .invalid) }
            let date = dateValue(fields, responseTime: responseTime)
            return (min(max(0, expires - date), DeltaSeconds.ceiling), .expires)
        case .repeated:
            return (0, .invalid)
        case .absent:
            break
        }
        // §4.2.2: only without explicit expiration, and for a status cacheable by default or a public response.
        if let heuristic = policy.heuristic,
            CachePolicy.heuristicallyCacheableStatuses.contains(status) || control.isPublic,
            case .value(let text) = fields.single("Last-Modified"),
            let lastModified = HTTPDate.parse(text, now: responseTime)
        {
            let sinceModified = max(0, dateValue(fields, responseTime: responseTime) - lastModified)
            let percent = min(max(heuristic.percent, 0), 100)
            return (min(sinceModified * percent / 100, heuristic.maxLifetime), .heuristic)
        }
        return (0, .none)
    }

    /// `Date`, or the time the response was received when it is missing or unreadable (RFC 9110 §6.6.1).
    static func dateValue(_ fields: CacheFields, responseTime: Int64) -> Int64 {
        if case .value(let text) = fields.single("Date"), let date = HTTPDate.parse(text, now: responseTime) {
            return date
        }
        return responseTime
    }

    /// §4.2.3: the larger of the apparent age (receipt minus Date) and the Age the upstream gave plus the time
    /// the response took to come, which covers a clock that lags behind.
    public static func correctedInitialAge(fields: CacheFields, requestTime: Int64, responseTime: Int64) -> Int64 {
        // An Age that is not delta-seconds is ignored, like one that is absent.
        let ageValue = fields.first("Age").flatMap { DeltaSeconds.parse(.value($0)).value } ?? 0
        let apparentAge = max(0, responseTime - dateValue(fields, responseTime: responseTime))
        let responseDelay = max(0, responseTime - requestTime)
        return max(apparentAge, ageValue + responseDelay)
    }

    /// The current age at `now` (§4.2.3): the initial age plus the time it has been stored.
    public func age(at now: Int64) -> Int64 {
        correctedInitialAge + max(0, now - responseTime)
    }

    /// Whether it is fresh at `now`: its lifetime exceeds its age (§4.2).
    public func isFresh(at now: Int64) -> Bool {
        lifetime > age(at: now)
    }

    /// Seconds of freshness left at `now`; negative once stale (`Cache-Status`'s `ttl`, RFC 9211 §2.5).
    public func timeToLive(at now: Int64) -> Int64 {
        lifetime - age(at: now)
    }

    /// The `Age` field's value at `now` (§5.1): whole seconds, at most 2^31.
    public func ageFieldValue(at now: Int64) -> String {
        String(min(age(at: now), DeltaSeconds.ceiling))
    }

    /// The last instant (seconds) at which the entry is still of any use without the origin: past its lifetime
    /// and every stale allowance. Eviction prefers entries past it; the index may drop them first.
    public var usefulUntil: Int64 {
        responseTime - correctedInitialAge + lifetime + max(staleWhileRevalidate, staleIfError)
    }
}
