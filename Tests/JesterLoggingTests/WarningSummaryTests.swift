// SPDX-License-Identifier: Apache-2.0
import JesterLogging
import Testing

@Test func theFirstEventIsReportedAtOnceAndAFloodBecomesOneReportPerInterval() {
    var summary = WarningSummary(interval: 60)
    #expect(summary.record(reason: "wrong version number", now: 100)
        == .report(.init(count: 1, reasons: [.init("wrong version number", 1)], seconds: 0)))
    // 49 more within the minute: one timer, at the end of the interval, and no warning before it.
    #expect(summary.record(reason: "wrong version number", now: 101) == .scheduleReport(at: 160))
    var actions: [WarningSummary.Action] = []
    for second in 0..<48 {
        actions.append(summary.record(reason: second % 4 == 0 ? "no shared cipher" : "wrong version number",
            now: 101 + Double(second) / 10))
    }
    #expect(actions.allSatisfy { $0 == .none })
    #expect(summary.pending == 49)
    #expect(summary.reportDue(now: 160) == .init(count: 49,
        reasons: [.init("wrong version number", 37), .init("no shared cipher", 12)], seconds: 60))
    #expect(summary.pending == 0)
}

@Test func eventsAfterAReportWaitForTheNextIntervalAndAQuietIntervalResets() {
    var summary = WarningSummary(interval: 60)
    _ = summary.record(reason: "a", now: 0)
    #expect(summary.record(reason: "a", now: 10) == .scheduleReport(at: 60))
    #expect(summary.reportDue(now: 60)?.count == 1)
    // Right after that report: the next one is a full interval later, never sooner.
    #expect(summary.record(reason: "b", now: 61) == .scheduleReport(at: 120))
    #expect(summary.reportDue(now: 120) == .init(count: 1, reasons: [.init("b", 1)], seconds: 60))
    // A timer that finds nothing to say says nothing.
    #expect(summary.reportDue(now: 125) == nil)
    // Quiet since 120: the next event is news again, reported at once.
    #expect(summary.record(reason: "c", now: 500) == .report(.init(count: 1, reasons: [.init("c", 1)], seconds: 380)))
}

@Test func reportsNameTheCommonestReasonsAndBoundWhatTheyRemember() {
    var summary = WarningSummary(interval: 60, maxReasons: 2, maxDistinctReasons: 3)
    _ = summary.record(reason: "first", now: 0)
    for (reason, times) in [("z", 3), ("y", 3), ("x", 1), ("w", 5), ("v", 2)] {
        for _ in 0..<times { _ = summary.record(reason: reason, now: 1) }
    }
    // z, y and x fill the three places; w and v count as "other" (7); ties go by name.
    #expect(summary.reportDue(now: 60)?.reasons == [.init("other", 7), .init("y", 3)])
}

@Test func noTwoReportsAreCloserThanTheInterval() {
    var summary = WarningSummary(interval: 60)
    var reportTimes: [Double] = []
    var timer: Double?
    // A steady failure every 0.5 s for ten minutes, the timer fired when due.
    for tick in 0..<1200 {
        let now = Double(tick) / 2
        if let due = timer, now >= due {
            timer = nil
            if summary.reportDue(now: due) != nil { reportTimes.append(due) }
        }
        switch summary.record(reason: "r", now: now) {
        case .report: reportTimes.append(now)
        case .scheduleReport(let at): timer = at
        case .none: break
        }
    }
    #expect(reportTimes.count == 10)
    #expect(zip(reportTimes, reportTimes.dropFirst()).allSatisfy { $1 - $0 >= 60 })
}
