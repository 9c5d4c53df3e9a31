// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterControl
import NIOCore

/// The dashboard's tap: a `jesterctl tap` without a filter whose records land in a `RecentAccess` ring instead of
/// a client's socket.
///
/// It is one more session of the master's tap mechanism (`Master+Tap`), so the workers need nothing new: they
/// render and send records while any tap is open and nothing once the last one closes. This one reports itself
/// closed once no dashboard has polled for `RecentAccess.idleTimeout`; the master's once-a-second sweep then
/// drops it, and the next poll opens it again.
final class RecentAccessTap: ControlReplyTarget, @unchecked Sendable {
    /// The records and the time of the last poll. Touched on the master's event loop only.
    private(set) var ring = RecentAccess()
    /// The clock, in monotonic nanoseconds (replaced in tests).
    let now: () -> UInt64

    init(now: @escaping () -> UInt64 = { NIODeadline.now().uptimeNanoseconds }) {
        self.now = now
    }

    /// Records from the master's delivery (`deliverTapped`); every other message is not for this target.
    func send(_ message: ControlMessage) {
        guard case .tapRecords(let records, let dropped) = message else { return }
        ring.append(records, dropped: dropped)
    }

    /// Open while a dashboard polls.
    var isOpen: Bool { ring.isWanted(at: now()) }

    func close() {}

    /// A dashboard polled: the tap stays open for another `RecentAccess.idleTimeout`.
    func polled() {
        ring.polled(at: now())
    }

    /// The answer to `GET /api/v1/access/recent`: `{"tapping": true, "dropped": N, "records": [...]}`, records
    /// newest first, each the access-log line's JSON object as the worker rendered it (every field,
    /// jester.toml(5)). A line that is not a JSON object (a worker bug) is left out rather than breaking the
    /// answer.
    func body(tapping: Bool) -> [UInt8] {
        var body = Array("{\"tapping\":\(tapping),\"dropped\":\(ring.dropped),\"records\":[".utf8)
        var first = true
        for record in ring.records.reversed() {
            let line = Array(record.line.utf8)
            guard (try? JSONSerialization.jsonObject(with: Data(line))) is [String: Any] else { continue }
            if !first { body.append(UInt8(ascii: ",")) }
            first = false
            body += line
        }
        body += Array("]}".utf8)
        return body
    }
}
