// SPDX-License-Identifier: Apache-2.0
/// When a proxied request is sent again to another target, and when not. Pure.
///
/// Only before any response byte reached the client, only for a request without a body (bodies stream and are
/// not kept), and only for idempotent methods unless the route says otherwise. Each retry waits an
/// exponentially growing, fully jittered backoff, and a pool-wide `RetryBudget` caps how many retries may be
/// in flight, so retries cannot multiply the load on a pool that is already failing.
public struct RetryPolicy: Sendable, Equatable {
    public enum Reason: Sendable, Equatable {
        /// The target reset or closed the connection before a response (not a stale keep-alive connection,
        /// which is replayed anyway).
        case reset
        /// The target answered with this status.
        case status(Int)
    }

    /// Retries after the first attempt.
    public var maxRetries: Int
    public var onReset: Bool
    public var statuses: Set<Int>
    /// Retry POST, PATCH and other non-idempotent methods too (still only without a body).
    public var nonIdempotent: Bool
    public var baseBackoffSeconds: Double
    public var maxBackoffSeconds: Double

    public init(
        maxRetries: Int = 1, onReset: Bool = true, statuses: Set<Int> = [502, 503, 504], nonIdempotent: Bool = false,
        baseBackoffSeconds: Double = 0.025, maxBackoffSeconds: Double = 0.25
    ) {
        self.maxRetries = maxRetries
        self.onReset = onReset
        self.statuses = statuses
        self.nonIdempotent = nonIdempotent
        self.baseBackoffSeconds = baseBackoffSeconds
        self.maxBackoffSeconds = maxBackoffSeconds
    }

    /// Whether retry number `retriesSoFar + 1` may go out.
    public func allows(_ reason: Reason, retriesSoFar: Int, idempotent: Bool, hasBody: Bool) -> Bool {
        guard retriesSoFar < maxRetries, !hasBody, idempotent || nonIdempotent else { return false }
        switch reason {
        case .reset: return onReset
        case .status(let status): return statuses.contains(status)
        }
    }

    /// The wait before retry number `retriesSoFar + 1`: uniform in [0, min(max, base × 2^retriesSoFar)]
    /// ("full jitter"), `random` in [0, 1).
    public func backoff(retriesSoFar: Int, random: Double) -> Double {
        min(maxBackoffSeconds, baseBackoffSeconds * Double(1 << min(retriesSoFar, 20))) * random
    }
}

/// How many retries a pool may have in flight: a share of its requests in flight, but always a few, so that a
/// lightly loaded pool can still retry while a failing, busy one cannot double its own load (Envoy's retry
/// budget). Per worker, like the requests it is a share of.
public struct RetryBudget: Sendable, Equatable {
    public var share: Double
    public var minimum: Int
    public private(set) var inFlight = 0

    public init(share: Double = 0.2, minimum: Int = 3) {
        self.share = share
        self.minimum = minimum
    }

    /// Takes a retry slot when the budget allows one with `active` requests in flight in the pool.
    public mutating func acquire(active: Int) -> Bool {
        let limit = max(minimum, Int(share * Double(active)))
        guard inFlight < limit else { return false }
        inFlight += 1
        return true
    }

    public mutating func release() {
        inFlight = max(0, inFlight - 1)
    }
}
