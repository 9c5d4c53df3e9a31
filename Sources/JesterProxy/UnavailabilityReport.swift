// SPDX-License-Identifier: Apache-2.0
import NIOCore

/// Counts requests a dependency failed (Redis for cluster rate limits) and says when to log them: the first at
/// once, then at most one report per interval carrying the count since the last.
///
/// A Redis outage under load fails thousands of checks a second; a line for each would drown the log and cost
/// more than the checks. Pure: time comes in as an argument; the owner logs and schedules the flush.
struct UnavailabilityReport {
    /// One log line's worth.
    struct Report: Equatable {
        /// Requests affected since the previous report (0 for a failure no request has met yet).
        let affected: Int
        /// The latest cause seen.
        let reason: String
        /// How long the count covers, in whole seconds.
        let seconds: Int
    }

    let interval: TimeAmount
    private var lastReport: NIODeadline?
    private var countingSince: NIODeadline?
    private var affected = 0
    private var reason = "unknown"

    init(interval: TimeAmount) {
        self.interval = interval
    }

    /// When the counted requests are due to be reported; nil when there is nothing to report.
    var nextReport: NIODeadline? {
        guard affected > 0, let lastReport else { return nil }
        return lastReport + interval
    }

    /// Counts `affected` requests failed for `reason` (nil: the cause is unchanged). Returns a report to log now
    /// when it is the first or the interval since the last is over.
    mutating func record(reason: String?, affected: Int, now: NIODeadline) -> Report? {
        if let reason { self.reason = reason }
        if countingSince == nil { countingSince = now }
        self.affected += affected
        guard let lastReport else { return report(now: now) }
        guard now - lastReport >= interval, self.affected > 0 else { return nil }
        return report(now: now)
    }

    /// The report due at `now`, if any (the flush timer's question).
    mutating func flush(now: NIODeadline) -> Report? {
        guard let due = nextReport, now >= due else { return nil }
        return report(now: now)
    }

    private mutating func report(now: NIODeadline) -> Report {
        let since = countingSince ?? now
        let report = Report(
            affected: affected, reason: reason, seconds: Int(((now - since).nanoseconds + 500_000_000) / 1_000_000_000))
        lastReport = now
        countingSince = nil
        affected = 0
        return report
    }
}

/// Delays between reconnection attempts: 100 ms doubling to 2 s, each scaled by a jitter so that the workers
/// of many instances do not all come back to a restarted Redis in the same millisecond. Pure.
struct ReconnectBackoff {
    static let first = TimeAmount.milliseconds(100)
    static let longest = TimeAmount.seconds(2)

    /// Attempts failed (or connections lost) since a connection last served a reply.
    private(set) var failures = 0

    /// The delay before the next attempt, after one more failure. `jitter` scales it (0.5...1 at random).
    mutating func failed(jitter: Double = .random(in: 0.5...1)) -> TimeAmount {
        let doubled = Self.first.nanoseconds << min(failures, 10)
        failures += 1
        return .nanoseconds(Int64(Double(min(doubled, Self.longest.nanoseconds)) * jitter))
    }

    /// A connection served a reply: the next loss retries quickly again.
    mutating func succeeded() {
        failures = 0
    }
}
