// SPDX-License-Identifier: Apache-2.0
/// A request-rate limit as "`rate` requests per `period`, plus `burst` at once", decided by the Generic Cell Rate
/// Algorithm. Pure: the key's state (one timestamp) and the time come in, the new state and the decision go out;
/// where the state lives (a worker's memory, the instance's shared table, Redis) is the caller's business.
///
/// Why GCRA (see /work/shared/WAVE2-FACTS.md, "Rate limiting", and brandur.org/rate-limiting):
/// - One number per key, the *theoretical arrival time* (TAT): when the key's allowance would be whole again.
///   nginx's `limit_req` keeps two (excess and last time) and HAProxy's stick tables keep period counters; one
///   word is what a lock-free 128-bit compare-and-swap of {key, TAT} can update in shared memory, and what one
///   Redis script can read and write.
/// - Exact: it is the leaky bucket nginx implements (the same decisions for the same arrivals), without
///   fixed windows, so no double burst at a window's edge (Envoy's global limiter and HAProxy's current/previous
///   counters allow up to twice the limit across an edge) and no approximation (sliding-window counters).
/// - No refill loop or background work: a key nobody uses costs nothing, and a TAT in the past simply means
///   "full allowance", which is what makes evicting such keys free.
///
/// The rules, with emission interval `T = period / rate` and tolerance `τ = burst × T`:
/// a request at `now` with `start = max(TAT, now)` is refused when `start − now > τ` (and the TAT is left as
/// it was: a refusal consumes nothing); otherwise it is admitted and the TAT becomes `start + T`. So a fresh key
/// admits `1 + burst` requests at once, then one every `T`.
///
/// Delay mode is nginx's `limit_req ... burst=B delay=D` (nginx.org, ngx_http_limit_req_module): requests over
/// the rate are "excessive"; the first `D` excessive ones pass at once, the next ones up to `B` are delayed so
/// that they are processed at the defined rate, and beyond `B` they are refused. Here the excess of a request is
/// `(start − now) / T`, and a delayed request waits `(start − now) − D × T`, which is nginx's
/// `(excess − delay) / rate`. `delay = 0` is nginx's default (every excessive request waits until it conforms);
/// `delay ≥ burst` is nginx's `nodelay` (nothing waits), and is this type's default.
public struct GCRA: Sendable, Hashable {
    /// What to do with one request.
    public enum Decision: Sendable, Hashable {
        /// Pass it now. `remaining` more requests would pass now (the `RateLimit` field's `r`); after
        /// `resetAfter` the key's allowance is whole again.
        case allow(remaining: Int, resetAfter: Duration)
        /// Pass it after waiting this long (delay mode); it is already counted.
        case delay(Duration, remaining: Int)
        /// Refuse it (429); a request sent after `retryAfter` would pass. Nothing was counted.
        case refuse(retryAfter: Duration)
    }

    /// Requests admitted per `period` on average.
    public let rate: Int
    public let period: Duration
    /// Requests admitted at once beyond the first (0: requests must be spaced `period / rate` apart).
    public let burst: Int
    /// Excessive requests passed without waiting; at most `burst` (which means: none ever waits).
    public let delay: Int
    /// `T`, the time one request "costs", in nanoseconds (at least 1; rounded down, so the rate is exact to the
    /// nanosecond).
    public let emissionInterval: Int64
    /// `τ = burst × T` in nanoseconds: how far ahead of now the TAT may be for a request to pass.
    public let tolerance: Int64

    /// A limit of `rate` requests per `period` with `burst` more at once; `delay` excessive requests pass without
    /// waiting (default: all of them, nginx's `nodelay`).
    public init(rate: Int, period: Duration, burst: Int = 0, delay: Int = .max) {
        precondition(rate > 0 && period > .zero && burst >= 0 && delay >= 0, "a rate limit needs a positive rate")
        self.rate = rate
        self.period = period
        self.burst = burst
        self.delay = min(delay, burst)
        emissionInterval = max(1, Self.nanoseconds(period) / Int64(rate))
        tolerance = Self.multiply(emissionInterval, burst)
    }

    /// Decides a request at `now` for a key whose TAT is `tat` (nil: a key never seen, or evicted). Times are
    /// nanoseconds of one monotonic clock. `newTAT` is what to store, or nil to leave the state as it was
    /// (a refusal).
    ///
    /// Time going backwards: callers in different processes read the clock at slightly different moments, so a
    /// `now` may be earlier than the one that set the TAT. GCRA needs nothing for that: the key just looks
    /// stricter from the earlier `now`, and a refusal stores nothing, so a stale `now` never loosens the limit.
    /// Only the wait is clamped: a TAT more than `τ + T` ahead (which no admitted request leaves behind) is read
    /// as `τ + T` ahead, so `retryAfter` is at most one interval rather than the readers' skew.
    public func decide(tat: Int64?, now: Int64) -> (newTAT: Int64?, decision: Decision) {
        let ceiling = Self.add(now, Self.add(tolerance, emissionInterval))
        let start = max(min(tat ?? now, ceiling), now)
        let ahead = start - now  // 0 ... τ + T
        if ahead > tolerance {
            return (nil, .refuse(retryAfter: .nanoseconds(ahead - tolerance)))
        }
        let newTAT = Self.add(start, emissionInterval)
        // After this request the TAT is ahead + T past now; each further request needs T more, up to τ + T.
        let remaining = Int((tolerance - ahead) / emissionInterval)
        let free = Self.multiply(emissionInterval, delay)
        if ahead > free {
            return (newTAT, .delay(.nanoseconds(ahead - free), remaining: remaining))
        }
        return (newTAT, .allow(remaining: remaining, resetAfter: .nanoseconds(newTAT - now)))
    }

    // MARK: Saturating arithmetic (a burst of billions or a period of years must not trap)

    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? .max : add(whole, attoseconds / 1_000_000_000)
    }

    private static func add(_ lhs: Int64, _ rhs: Int64) -> Int64 {
        let (sum, overflow) = lhs.addingReportingOverflow(rhs)
        return overflow ? (rhs > 0 ? .max : .min) : sum
    }

    private static func multiply(_ lhs: Int64, _ rhs: Int) -> Int64 {
        let (product, overflow) = lhs.multipliedReportingOverflow(by: Int64(clamping: rhs))
        return overflow ? .max : product
    }
}
