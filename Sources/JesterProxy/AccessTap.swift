// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterControl
import JesterTLS
import NIOCore

/// The worker's end of `jesterctl tap`: access records that an open tap's filter matches, rendered and sent to
/// the master in batches.
///
/// Costs nothing while nobody taps: the exchange checks `isOpen` (one load) and renders no record for it. While a
/// tap is open, records wait in a bounded queue and leave at most every 100 ms; when the master falls behind, the
/// queue stays at its bound and the records that did not fit are counted and reported, never buffered without end.
final class AccessTap {
    /// Whether some tap is open (the master sends the filters of every open one, or none).
    private(set) var isOpen = false
    private var filters: [TapFilter] = []
    private var queue: [TapRecord] = []
    private var dropped = 0
    private var flushScheduled = false
    private let eventLoop: any EventLoop
    /// Sends a batch (and how many records were dropped since the last) to the master.
    var send: (([TapRecord], Int) -> Void)?

    /// Records queued at most between two batches.
    static let maxQueued = 1000
    /// How long records wait for company before they leave.
    static let batchInterval = TimeAmount.milliseconds(100)

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// The filters of every open tap (empty: none; what is queued is dropped, nobody wants it any more).
    func setFilters(_ filters: [TapFilter]) {
        self.filters = filters
        isOpen = !filters.isEmpty
        if !isOpen {
            queue = []
            dropped = 0
        }
    }

    /// A finished request's record: queued when a filter matches.
    func offer(_ record: AccessLog.Record, protocol: StaticString, tls: TLSSessionFacts?) {
        guard TapFilter.any(filters, route: record.route, upstream: record.upstream, status: record.status) else {
            return
        }
        guard queue.count < Self.maxQueued else {
            dropped += 1
            return
        }
        let line = AccessLog.render(record, fields: AccessLogField.allCases, protocol: `protocol`, tls: tls)
        queue.append(TapRecord(
            route: record.route, upstream: record.upstream, status: record.status,
            line: String(decoding: line, as: UTF8.self)))
        guard !flushScheduled else { return }
        flushScheduled = true
        eventLoop.assumeIsolated().scheduleTask(in: Self.batchInterval) { [self] in
            flushScheduled = false
            flush()
        }
    }

    /// Sends what is queued now.
    func flush() {
        guard !queue.isEmpty || dropped > 0 else { return }
        let batch = queue
        let lost = dropped
        queue = []
        dropped = 0
        send?(batch, lost)
    }
}
