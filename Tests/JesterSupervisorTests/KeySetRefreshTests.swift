// SPDX-License-Identifier: Apache-2.0
@testable import JesterSupervisor
import Testing

/// `KeySetRefresh` without a network: when the master fetches each `jwks_url`, what workers and the log hear.

private let setA = Array(#"{"keys":[{"kty":"oct","k":"AA"}]}"#.utf8)
private let setB = Array(#"{"keys":[{"kty":"oct","k":"BB"}]}"#.utf8)

private func source(_ filter: String, _ url: String = "https://idp/jwks", refresh: Double = 300) -> KeySetRefresh.Source {
    KeySetRefresh.Source(filter: filter, url: url, refresh: refresh)
}

private func good(_ jwks: [UInt8], maxAge: Double? = nil) -> KeySetRefresh.Outcome {
    .keySet(jwks, maxAge: maxAge, keys: 1, skipped: [])
}

/// A machine without jitter (the delays are exact), or with the largest jitter when `random` is near 1.
private func machine(random: Double = 0) -> KeySetRefresh {
    var refresh = KeySetRefresh()
    refresh.random = { random }
    return refresh
}

@Test func oneFetchPerURLAndTheSetGoesToEveryFilterNamingIt() {
    var refresh = machine()
    let sources = [source("a"), source("b"), source("c", "http://127.0.0.1:9/jwks", refresh: 60)]
    #expect(refresh.handle(.configured(sources, now: 0)) == [
        .fetch(url: "http://127.0.0.1:9/jwks"), .fetch(url: "https://idp/jwks"),
    ])
    #expect(refresh.isFetching("https://idp/jwks"))
    #expect(refresh.handle(.fetched(url: "https://idp/jwks", good(setA), now: 1)) == [
        .reportNewSet(url: "https://idp/jwks", filters: ["a", "b"], keys: 1, skipped: []),
        .deliver(filter: "a", url: "https://idp/jwks", jwks: setA),
        .deliver(filter: "b", url: "https://idp/jwks", jwks: setA),
        .arm(url: "https://idp/jwks", seconds: 300),
    ])
    #expect(refresh.keySets(for: sources).map(\.filter) == ["a", "b"])
    // Due: fetched again; the same bytes tell workers nothing.
    #expect(refresh.handle(.due(url: "https://idp/jwks", now: 301)) == [.fetch(url: "https://idp/jwks")])
    #expect(refresh.handle(.due(url: "https://idp/jwks", now: 302)) == [], "one fetch at a time")
    #expect(refresh.handle(.fetched(url: "https://idp/jwks", good(setA), now: 302)) == [
        .arm(url: "https://idp/jwks", seconds: 300),
    ])
    // A rotated set is delivered.
    _ = refresh.handle(.due(url: "https://idp/jwks", now: 600))
    #expect(refresh.handle(.fetched(url: "https://idp/jwks", good(setB), now: 601)).contains(
        .deliver(filter: "a", url: "https://idp/jwks", jwks: setB)))
}

@Test func failuresKeepTheLastSetBackOffAndAreReportedOncePerInterval() {
    var refresh = machine()
    let url = "https://idp/jwks"
    _ = refresh.handle(.configured([source("a", refresh: 60)], now: 0))
    _ = refresh.handle(.fetched(url: url, good(setA), now: 0))
    var reports: [KeySetRefresh.Action] = []
    var delays: [Double] = []
    var now = 60.0
    for _ in 0..<9 {
        _ = refresh.handle(.due(url: url, now: now))
        for action in refresh.handle(.fetched(url: url, .failed("connection refused"), now: now)) {
            switch action {
            case .arm(_, let seconds): delays.append(seconds)
            case .reportFailure: reports.append(action)
            default: Issue.record("unexpected \(action)")
            }
        }
        now += delays.last!
    }
    // 1, 2, 4, ... capped at the refresh interval.
    #expect(delays == [1, 2, 4, 8, 16, 32, 60, 60, 60])
    // Failures at 60, 61, 63, 67, 75, 91, 123, 183 and 243: reported at 60 (the first), then at most once per
    // 60 s with the count since the last report: at 123 (six), 183 and 243.
    #expect(reports.map { if case .reportFailure(_, _, let count, _) = $0 { count } else { 0 } } == [1, 6, 1, 1])
    #expect(reports.first == .reportFailure(url: url, reason: "connection refused", failures: 1, keepingLastSet: true))
    #expect(refresh.keySets(for: [source("a", refresh: 60)]).first?.jwks == setA, "the last good set is kept")
    _ = refresh.handle(.due(url: url, now: now))
    #expect(refresh.handle(.fetched(url: url, good(setA), now: now)) == [
        .reportRecovery(url: url, failures: 9), .arm(url: url, seconds: 60),
    ])
    // Backoff starts again from the shortest delay.
    _ = refresh.handle(.due(url: url, now: now + 60))
    #expect(refresh.handle(.fetched(url: url, .failed("timeout"), now: now + 60)).last == .arm(url: url, seconds: 1))
}

@Test func aFirstFetchThatFailsSaysTokensAreRefused() {
    var refresh = machine()
    _ = refresh.handle(.configured([source("a")], now: 0))
    #expect(refresh.handle(.fetched(url: "https://idp/jwks", .failed("timeout"), now: 5)) == [
        .reportFailure(url: "https://idp/jwks", reason: "timeout", failures: 1, keepingLastSet: false),
        .arm(url: "https://idp/jwks", seconds: 1),
    ])
    #expect(refresh.keySets(for: [source("a")]).isEmpty)
}

@Test func maxAgeShortensTheIntervalWithinBoundsAndJitterOnlyShortens() {
    var refresh = machine()
    let url = "https://idp/jwks"
    _ = refresh.handle(.configured([source("a", refresh: 300)], now: 0))
    #expect(refresh.handle(.fetched(url: url, good(setA, maxAge: 120), now: 0)).last == .arm(url: url, seconds: 120))
    _ = refresh.handle(.due(url: url, now: 120))
    #expect(refresh.handle(.fetched(url: url, good(setA, maxAge: 0), now: 120)).last == .arm(url: url, seconds: 30))
    _ = refresh.handle(.due(url: url, now: 150))
    #expect(refresh.handle(.fetched(url: url, good(setA, maxAge: 86400), now: 150)).last == .arm(url: url, seconds: 300))
    // A refresh shorter than the max-age floor is kept as configured (the live tier refreshes every second).
    var fast = machine(random: 0.5)
    _ = fast.handle(.configured([source("a", refresh: 1)], now: 0))
    #expect(fast.handle(.fetched(url: url, good(setA, maxAge: 0), now: 0)).last == .arm(url: url, seconds: 0.95))
    #expect(KeySetRefresh.maxAge(cacheControl: "public, max-age=3600, must-revalidate") == 3600)
    #expect(KeySetRefresh.maxAge(cacheControl: "max-age=\"60\"") == 60)
    #expect(KeySetRefresh.maxAge(cacheControl: "no-store") == 0)
    #expect(KeySetRefresh.maxAge(cacheControl: "public") == nil)
    #expect(KeySetRefresh.maxAge(cacheControl: "max-age=-5") == nil)
}

@Test func aReloadFetchesNewURLsKeepsKnownSetsAndForgetsRemovedOnes() {
    var refresh = machine()
    let old = "https://old/jwks"
    let kept = "https://kept/jwks"
    _ = refresh.handle(.configured([source("a", old), source("b", kept)], now: 0))
    _ = refresh.handle(.fetched(url: old, good(setA), now: 0))
    _ = refresh.handle(.fetched(url: kept, good(setB), now: 0))
    // While the reload starts, both configurations are in use: only the new URL is fetched.
    let during = [source("a", old), source("b", kept), source("b", kept), source("c", "https://new/jwks")]
    #expect(refresh.handle(.configured(during, now: 10)) == [.fetch(url: "https://new/jwks")])
    #expect(refresh.keySets(for: [source("b", kept), source("d", kept)]).map(\.filter) == ["b", "d"])
    // Committed without the old URL: its delay is disarmed and a late result for it is ignored.
    #expect(refresh.handle(.configured([source("b", kept), source("c", "https://new/jwks")], now: 11)) == [
        .disarm(url: old),
    ])
    #expect(refresh.handle(.fetched(url: old, good(setB), now: 12)) == [])
    #expect(refresh.handle(.due(url: old, now: 12)) == [])
}
