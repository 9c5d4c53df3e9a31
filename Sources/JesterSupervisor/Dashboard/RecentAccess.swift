// SPDX-License-Identifier: Apache-2.0
import JesterControl

/// The last access records the workers tapped for the dashboard, and whether anyone still looks at them.
///
/// The tap costs workers a rendered record per request while it is open, so it is open only while a dashboard
/// polls: from the first `GET /api/v1/access/recent` until `idleTimeout` after the last. Bounded: a flood of
/// requests keeps the newest `capacity` records and counts the rest. Pure: time (monotonic nanoseconds) is
/// passed in.
struct RecentAccess: Equatable, Sendable {
    /// Records kept, newest last.
    private(set) var records: [TapRecord] = []
    /// Records that did not fit since the tap opened, including those workers dropped before sending.
    private(set) var dropped = 0
    /// When the last poll came (nil: never).
    private(set) var lastPoll: UInt64?

    /// Records kept at most: more than a screen's worth, little enough to send every poll.
    static let capacity = 50
    /// How long the tap stays open after the last poll: a dashboard polls every 1.5 s, so this outlasts a slow
    /// poll and a short network hiccup, and closes the tap soon after the tab goes away.
    static let idleTimeout: UInt64 = 30_000_000_000

    /// A batch from a worker (oldest first, as workers send them).
    mutating func append(_ batch: [TapRecord], dropped lost: Int) {
        dropped += lost
        records.append(contentsOf: batch)
        if records.count > Self.capacity {
            dropped += records.count - Self.capacity
            records.removeFirst(records.count - Self.capacity)
        }
    }

    /// A dashboard asked for the records at `now`.
    mutating func polled(at now: UInt64) {
        lastPoll = now
    }

    /// Whether the tap should be open at `now`: someone polled within `idleTimeout`.
    func isWanted(at now: UInt64) -> Bool {
        guard let lastPoll else { return false }
        return now &- lastPoll < Self.idleTimeout
    }
}
