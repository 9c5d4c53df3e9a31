// SPDX-License-Identifier: Apache-2.0
import Foundation

/// When the master fetches each `jwks_url`, what it keeps, and what it tells workers and the log. Pure: events
/// in, actions out, time (monotonic seconds) passed in, randomness from `random`.
///
/// The rules, and why:
/// - One fetch per URL, however many filters name it; the set goes to every one of them.
/// - After a good fetch the next is due after `jwks_refresh`, or the response's `Cache-Control: max-age` when
///   that is shorter (an identity provider that says its keys change sooner knows best), but never sooner than
///   `minimumMaxAge`, so `max-age=0` cannot turn the master into a polling loop.
/// - Each delay is shortened by up to `jitter` of itself, so instances started together (a fleet restarted by
///   one deploy) do not hit the identity provider in the same second forever after.
/// - A failed fetch keeps the last good set (tokens keep verifying through an outage of the provider) and is
///   retried sooner, with exponential backoff from `minimumRetry`, capped at the refresh interval.
/// - Failures are reported at most once per refresh interval, with the count since the last report, so a dead
///   provider is one log line per interval, not one per retry; the first success after reported failures is
///   reported too.
/// - Workers hear of a set only when its bytes change.
struct KeySetRefresh {
    /// One jwt filter's `jwks_url` and `jwks_refresh`, in seconds.
    struct Source: Hashable, Sendable {
        var filter: String
        var url: String
        var refresh: Double
    }

    /// The delays the rules above use, in seconds.
    struct Timing: Sendable {
        var minimumRetry: Double = 1
        var minimumMaxAge: Double = 30
        /// The largest fraction by which a delay is shortened.
        var jitter: Double = 0.1
    }

    /// What a fetch brought, as the master judged it.
    enum Outcome: Equatable, Sendable {
        /// A 200 whose body is a JWK Set with `keys` usable keys (`skipped` says why others were left out), and
        /// the response's max-age, if it gave one.
        case keySet([UInt8], maxAge: Double?, keys: Int, skipped: [String])
        /// No usable set: the connection, the status or the body failed; `reason` is for the log.
        case failed(String)
    }

    enum Event: Sendable {
        /// The URLs the configurations in use (the serving one, and one starting) name now: at start, when a
        /// reload begins and when it ends.
        case configured([Source], now: Double)
        /// A delay armed for `url` passed.
        case due(url: String, now: Double)
        case fetched(url: String, Outcome, now: Double)
    }

    enum Action: Equatable, Sendable {
        /// Fetch `url` now; its outcome comes back as `.fetched`.
        case fetch(url: String)
        /// Send `.due(url)` after `seconds`, replacing any delay armed for `url`.
        case arm(url: String, seconds: Double)
        /// Forget the delay armed for `url` (no configuration names it any more).
        case disarm(url: String)
        /// Give every worker `filter`'s new set.
        case deliver(filter: String, url: String, jwks: [UInt8])
        /// Log a set that differs from the last one (`filters` use it).
        case reportNewSet(url: String, filters: [String], keys: Int, skipped: [String])
        /// Log failures: `failures` since the last report (or success), the latest `reason`, and whether workers
        /// still have an earlier set.
        case reportFailure(url: String, reason: String, failures: Int, keepingLastSet: Bool)
        /// Log that `url` answers again after `failures` failed fetches.
        case reportRecovery(url: String, failures: Int)
    }

    /// What is known about one URL.
    private struct Tracked {
        var filters: Set<String>
        var refresh: Double
        var jwks: [UInt8]?
        var fetching = false
        /// Failed fetches in a row.
        var failures = 0
        /// Failed fetches since the last report.
        var unreported = 0
        var reportedFailure = false
        var nextFailureReport = -Double.infinity
    }

    var timing = Timing()
    /// A number in 0..<1 for jitter; replaced by tests.
    var random: () -> Double = { Double.random(in: 0..<1) }
    private var tracked: [String: Tracked] = [:]

    /// The last good set of each source that has one, for a new worker's assignment.
    func keySets(for sources: [Source]) -> [(filter: String, url: String, jwks: [UInt8])] {
        sources.compactMap { source in tracked[source.url]?.jwks.map { (source.filter, source.url, $0) } }
    }

    /// Whether a fetch of `url` is under way.
    func isFetching(_ url: String) -> Bool {
        tracked[url]?.fetching ?? false
    }

    mutating func handle(_ event: Event) -> [Action] {
        switch event {
        case .configured(let sources, _):
            return configure(sources)
        case .due(let url, _):
            guard var entry = tracked[url], !entry.fetching else { return [] }
            entry.fetching = true
            tracked[url] = entry
            return [.fetch(url: url)]
        case .fetched(let url, let outcome, let now):
            guard var entry = tracked[url] else { return [] }
            entry.fetching = false
            defer { tracked[url] = entry }
            return fetched(url, outcome, now: now, entry: &entry)
        }
    }

    private mutating func configure(_ sources: [Source]) -> [Action] {
        var wanted: [String: (filters: Set<String>, refresh: Double)] = [:]
        for source in sources {
            var entry = wanted[source.url] ?? ([], source.refresh)
            entry.filters.insert(source.filter)
            entry.refresh = min(entry.refresh, source.refresh)
            wanted[source.url] = entry
        }
        var actions: [Action] = []
        for url in tracked.keys.sorted() where wanted[url] == nil {
            tracked[url] = nil
            actions.append(.disarm(url: url))
        }
        for (url, want) in wanted.sorted(by: { $0.key < $1.key }) {
            if var entry = tracked[url] {
                // Kept with its set and schedule; a shorter interval applies from the next fetch on.
                entry.filters = want.filters
                entry.refresh = want.refresh
                tracked[url] = entry
            } else {
                tracked[url] = Tracked(filters: want.filters, refresh: want.refresh, fetching: true)
                actions.append(.fetch(url: url))
            }
        }
        return actions
    }

    private func fetched(_ url: String, _ outcome: Outcome, now: Double, entry: inout Tracked) -> [Action] {
        var actions: [Action] = []
        switch outcome {
        case .keySet(let jwks, let maxAge, let keys, let skipped):
            if entry.reportedFailure { actions.append(.reportRecovery(url: url, failures: entry.failures)) }
            entry.failures = 0
            entry.unreported = 0
            entry.reportedFailure = false
            entry.nextFailureReport = -.infinity
            if entry.jwks != jwks {
                entry.jwks = jwks
                let filters = entry.filters.sorted()
                actions.append(.reportNewSet(url: url, filters: filters, keys: keys, skipped: skipped))
                actions += filters.map { .deliver(filter: $0, url: url, jwks: jwks) }
            }
            var delay = entry.refresh
            if let maxAge { delay = min(delay, max(maxAge, min(entry.refresh, timing.minimumMaxAge))) }
            actions.append(.arm(url: url, seconds: jittered(delay)))
        case .failed(let reason):
            entry.failures += 1
            entry.unreported += 1
            if now >= entry.nextFailureReport {
                actions.append(.reportFailure(
                    url: url, reason: reason, failures: entry.unreported, keepingLastSet: entry.jwks != nil))
                entry.unreported = 0
                entry.reportedFailure = true
                entry.nextFailureReport = now + entry.refresh
            }
            // 1 s, 2 s, 4 s, ... up to the refresh interval (the exponent is capped: 2^30 s is decades).
            let backoff = timing.minimumRetry * Double(1 << min(entry.failures - 1, 30))
            actions.append(.arm(url: url, seconds: jittered(min(backoff, entry.refresh))))
        }
        return actions
    }

    private func jittered(_ delay: Double) -> Double {
        delay * (1 - timing.jitter * random())
    }

    /// The `max-age` of a `Cache-Control` value (RFC 9111 §5.2.2.1), in seconds; `no-cache` and `no-store`
    /// count as 0. Nil when it has neither.
    static func maxAge(cacheControl: String) -> Double? {
        var result: Double?
        for directive in cacheControl.split(separator: ",") {
            let parts = directive.split(separator: "=", maxSplits: 1)
            let name = parts[0].trimmingCharacters(in: .whitespaces).lowercased()
            if name == "no-cache" || name == "no-store" { return 0 }
            if name == "max-age", parts.count == 2 {
                let value = parts[1].trimmingCharacters(in: .whitespaces).trimmingCharacters(in: ["\""])
                if let seconds = UInt32(value) { result = Double(seconds) }
            }
        }
        return result
    }
}
