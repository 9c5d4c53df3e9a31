// SPDX-License-Identifier: Apache-2.0
import JesterCore

/// A request's retries (route `retries` and `retry_on`): how many were made, the targets that failed it (a retry
/// never goes back to one), the pool whose retry budget holds a slot for it, and why the last attempt failed.
/// HTTP/1 connections and HTTP/2 streams keep one per request and ask it before sending the request again; what
/// they do then (abandon the attempt, wait the backoff, acquire again) is theirs.
struct RetryAttempts {
    private(set) var made = 0
    private(set) var failedTargets: Set<Int> = []
    /// The pool whose retry budget lent this request a slot, from its first retry until `finish`.
    private var budgetPool: UpstreamPool?
    /// Why the last retried attempt failed: the answer if a retry then finds no other target (a 502 from a reset
    /// target stays a 502, not "no target").
    var lastFailure: UpstreamFailure?

    enum Decision {
        case retry(afterSeconds: Double)
        /// The route's policy does not retry this failure (or this request), or its retries are used up.
        case notAllowed
        /// The pool has as many retries in flight as its budget allows.
        case budgetExhausted
    }

    /// Whether the request may go again after `reason` on `target` of `pool`. A retry is counted, the target
    /// excluded from then on, and a budget slot held; the answer carries the backoff to wait first.
    mutating func next(
        after reason: RetryPolicy.Reason, policy: RetryPolicy, idempotent: Bool, hasBody: Bool, target: Int,
        pool: UpstreamPool
    ) -> Decision {
        guard policy.allows(reason, retriesSoFar: made, idempotent: idempotent, hasBody: hasBody) else {
            return .notAllowed
        }
        if budgetPool == nil {
            guard pool.acquireRetrySlot() else { return .budgetExhausted }
            budgetPool = pool
        }
        failedTargets.insert(target)
        let delay = policy.backoff(retriesSoFar: made, random: Double.random(in: 0..<1))
        made += 1
        return .retry(afterSeconds: delay)
    }

    /// The request is over: its budget slot, if it held one, goes back, and the count starts again for the next.
    mutating func finish() {
        guard made > 0 || lastFailure != nil else { return }
        budgetPool?.releaseRetrySlot()
        self = RetryAttempts()
    }
}
