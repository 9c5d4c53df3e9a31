// SPDX-License-Identifier: Apache-2.0

/// Folds a flood of like events (failed TLS handshakes from a port scan) into at most one warning per interval,
/// each saying how many happened and the commonest reasons. Pure: time comes in as seconds on any monotonic clock.
///
/// The first event after a quiet interval is reported at once, so an operator watching the journal sees the
/// first failure without waiting; events during the following `interval` are only counted, and one report at
/// the interval's end (the caller's timer, asked for with `.scheduleReport`) sums them up. The owner logs every
/// event itself at debug, so nothing is lost to an operator who wants each one.
public struct WarningSummary: Sendable {
    /// What one warning says: the events since the previous warning.
    public struct Report: Sendable, Equatable {
        /// Events since the previous report.
        public var count: Int
        /// The commonest reasons, most frequent first (ties by name), at most `maxReasons` of them.
        public var reasons: [ReasonCount]
        /// Seconds since the previous report (0 for the first one).
        public var seconds: Double

        public init(count: Int, reasons: [ReasonCount], seconds: Double) {
            self.count = count
            self.reasons = reasons
            self.seconds = seconds
        }
    }

    /// One reason and how many events gave it.
    public struct ReasonCount: Sendable, Equatable {
        public var reason: String
        public var count: Int

        public init(_ reason: String, _ count: Int) {
            self.reason = reason
            self.count = count
        }
    }

    /// What the owner does after an event.
    public enum Action: Sendable, Equatable {
        /// Log this warning now.
        case report(Report)
        /// Arm a timer that calls `reportDue(now:)` at this time (seconds, the clock `record` is given).
        case scheduleReport(at: Double)
        /// Nothing: the event is counted in the report already scheduled.
        case none
    }

    /// The least time between two warnings, in seconds.
    public let interval: Double
    /// How many reasons a report names.
    public let maxReasons: Int
    /// Distinct reasons remembered between reports; past it new ones count as "other", so a peer that makes up
    /// reasons cannot grow this without bound.
    public let maxDistinctReasons: Int
    private var count = 0
    private var reasons: [String: Int] = [:]
    private var lastReport: Double?
    private var reportScheduled = false

    public init(interval: Double = 60, maxReasons: Int = 3, maxDistinctReasons: Int = 32) {
        self.interval = interval
        self.maxReasons = max(1, maxReasons)
        self.maxDistinctReasons = max(1, maxDistinctReasons)
    }

    /// Events counted and not reported yet.
    public var pending: Int { count }

    /// One event at `now` (seconds), for `reason`.
    public mutating func record(reason: String, now: Double) -> Action {
        count += 1
        if reasons[reason] != nil || reasons.count < maxDistinctReasons {
            reasons[reason, default: 0] += 1
        } else {
            reasons["other", default: 0] += 1
        }
        if let last = lastReport, now - last < interval {
            guard !reportScheduled else { return .none }
            reportScheduled = true
            return .scheduleReport(at: last + interval)
        }
        return .report(takeReport(now: now))
    }

    /// The timer `.scheduleReport` asked for fired: the report of what was counted since the last one, or nil
    /// when nothing was (so the next event after a quiet interval is reported at once again).
    public mutating func reportDue(now: Double) -> Report? {
        reportScheduled = false
        guard count > 0 else { return nil }
        return takeReport(now: now)
    }

    private mutating func takeReport(now: Double) -> Report {
        let ranked = reasons.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
        let report = Report(
            count: count, reasons: ranked.prefix(maxReasons).map { ReasonCount($0.key, $0.value) },
            seconds: lastReport.map { now - $0 } ?? 0)
        count = 0
        reasons = [:]
        lastReport = now
        return report
    }
}
