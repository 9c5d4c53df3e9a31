// SPDX-License-Identifier: Apache-2.0
/// When an export that failed is tried again (OTLP specification, "OTLP/HTTP Throttling" and "Failures"):
/// 429, 502, 503 and 504 and a collector that could not be reached are retried with exponential backoff (or
/// after the `Retry-After` the collector asked for), within a bound per batch; anything else is final.
///
/// Pure: outcomes and elapsed time in, a decision out, so the schedule is tested without a collector.
public struct OTLPRetryPolicy: Sendable, Hashable {
    /// The first wait; each retry doubles it.
    public var initialBackoff: Duration
    /// No wait is longer (a `Retry-After` too is capped here).
    public var maxBackoff: Duration
    /// A batch is given up once this much time has gone by since its first try, so a long outage costs a
    /// bounded amount of queue (spans behind it are dropped when the queue fills, and counted).
    public var maxElapsed: Duration

    public init(
        initialBackoff: Duration = .milliseconds(100), maxBackoff: Duration = .seconds(5),
        maxElapsed: Duration = .seconds(30)
    ) {
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.maxElapsed = maxElapsed
    }

    /// What one try of an export came to.
    public enum Outcome: Sendable, Hashable {
        /// The collector answered with this status (and `Retry-After`, when it gave one in seconds).
        case status(Int, retryAfter: Duration?)
        /// No answer: refused, reset, or the export's timeout passed.
        case unreachable
    }

    /// What to do next with the batch.
    public enum Action: Sendable, Hashable {
        /// The collector took it (2xx; a partial success's rejections are the collector's to report).
        case delivered
        /// Try again after this long.
        case retry(after: Duration)
        /// Give the batch up: the collector refused it for good, or the bound is reached.
        case giveUp
    }

    /// The decision after try number `attempt` (0 for the first), `elapsed` after the batch's first try began.
    public func action(after outcome: Outcome, attempt: Int, elapsed: Duration) -> Action {
        let asked: Duration?
        switch outcome {
        case .status(let status, _) where (200..<300).contains(status): return .delivered
        case .status(let status, let retryAfter) where [429, 502, 503, 504].contains(status): asked = retryAfter
        case .status: return .giveUp
        case .unreachable: asked = nil
        }
        var delay = asked ?? initialBackoff * (1 << min(attempt, 20))
        if delay > maxBackoff { delay = maxBackoff }
        return elapsed + delay > maxElapsed ? .giveUp : .retry(after: delay)
    }
}
