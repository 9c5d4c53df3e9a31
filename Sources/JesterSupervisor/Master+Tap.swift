// SPDX-License-Identifier: Apache-2.0
import JesterControl

/// The open `jesterctl tap` streams: who asked, and for what.
final class TapSessions {
    struct Session {
        let target: any ControlReplyTarget
        let filter: TapFilter
    }

    var sessions: [Session] = []
    /// What the workers were last told to send: every open tap's filter, each once.
    var filters: [TapFilter] = []
    /// Whether the master checks, once a second, for taps whose requester left.
    var sweeping = false
}

/// `jesterctl tap`: the master tells every worker the filters of the open taps, and hands each tap the records
/// its filter matches. When the last tap closes, the workers are told to stop: tapping then costs them nothing.
extension Master {
    /// Opens a tap for `target` (answered with `tapRecords` batches until the requester closes).
    func openTap(_ filter: TapFilter, replyTo target: any ControlReplyTarget) {
        taps.sessions.append(TapSessions.Session(target: target, filter: filter))
        updateTapFilters()
        sweepTaps()
    }

    /// Records from a worker: each open tap gets those its filter matches (workers send the union of them).
    func deliverTapped(_ records: [TapRecord], dropped: Int) {
        let before = taps.sessions.count
        taps.sessions.removeAll { !$0.target.isOpen }
        for session in taps.sessions {
            let matching = records.filter {
                session.filter.matches(route: $0.route, upstream: $0.upstream, status: $0.status)
            }
            guard !matching.isEmpty || dropped > 0 else { continue }
            session.target.send(.tapRecords(matching, dropped: dropped))
        }
        if taps.sessions.count != before { updateTapFilters() }
    }

    /// Tells every worker what to send when the set of filters changed.
    private func updateTapFilters() {
        var filters: [TapFilter] = []
        for session in taps.sessions where !filters.contains(session.filter) { filters.append(session.filter) }
        guard filters != taps.filters else { return }
        taps.filters = filters
        for worker in workers.values {
            guard let channel = worker.channel else { continue }
            send(.tapFilters(filters), to: channel)
        }
    }

    /// A tap whose requester left (Ctrl-C) is noticed within a second even when no record comes, so workers stop
    /// rendering records nobody reads.
    private func sweepTaps() {
        guard !taps.sweeping else { return }
        taps.sweeping = true
        eventLoop.scheduleTask(in: .seconds(1)) {
            self.taps.sweeping = false
            self.taps.sessions.removeAll { !$0.target.isOpen }
            self.updateTapFilters()
            if !self.taps.sessions.isEmpty { self.sweepTaps() }
        }
    }
}
