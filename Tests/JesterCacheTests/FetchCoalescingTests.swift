// SPDX-License-Identifier: Apache-2.0
@testable import JesterCache
import Testing

/// The fetching flag's rules: one fetch per key, bounded waits, take-over of a late owner, and no queueing for
/// what cannot be stored.
@Suite struct FetchCoalescingTests {
    static let second: Int64 = 1_000_000_000
    static let now: Int64 = 1_000 * second
    static let rules = FetchCoalescing(lockTimeout: 5 * second, uncacheableHold: 10 * second)

    @Test(arguments: [
        // (flag, waiting since, expected)
        (FetchFlag.idle, Int64?.none, CoalescingAction.claim(deadline: now + 5 * second)),
        (.fetching(owner: 2, deadline: now + 3 * second), nil, .wait(until: now + 3 * second)),
        // The wait is bounded by the waiter's own timeout, not only the owner's deadline.
        (.fetching(owner: 2, deadline: now + 9 * second), nil, .wait(until: now + 5 * second)),
        (.fetching(owner: 2, deadline: now + 9 * second), now - 2 * second, .wait(until: now + 3 * second)),
        // Waited long enough (the flag changed hands meanwhile): go alone.
        (.fetching(owner: 3, deadline: now + 4 * second), now - 5 * second, .forwardAlone),
        // An owner past its deadline is taken over.
        (.fetching(owner: 2, deadline: now), nil, .claim(deadline: now + 5 * second)),
        (.uncacheable(until: now + 1), nil, .forwardAlone),
        (.uncacheable(until: now), nil, .claim(deadline: now + 5 * second)),
    ] as [(FetchFlag, Int64?, CoalescingAction)])
    func decisions(flag: FetchFlag, waitingSince: Int64?, expected: CoalescingAction) {
        #expect(Self.rules.decide(flag: flag, now: Self.now, waitingSince: waitingSince) == expected)
    }

    @Test func aHundredRequestsForAColdKeyMakeOneFetch() {
        // Every worker reads the flag, then tries to swap it; only a swap from the value actually there succeeds
        // (the index's CAS), so exactly one claims and the rest wait for it.
        var flag = FetchFlag.idle
        var claims = 0
        var waits = 0
        for request in 0..<100 {
            let worker = Int32(10 + request % 2)
            let seen = flag
            switch Self.rules.decide(flag: seen, now: Self.now) {
            case .claim(let deadline):
                if flag == seen {
                    flag = .fetching(owner: worker, deadline: deadline)
                    claims += 1
                }
            case .wait: waits += 1
            case .forwardAlone: Issue.record("went alone")
            }
        }
        #expect(claims == 1 && waits == 99)
    }

    @Test func releasingAndAnOwnersExit() {
        #expect(Self.rules.release(stored: true, now: Self.now) == .idle)
        #expect(Self.rules.release(stored: false, failed: true, now: Self.now) == .idle)
        #expect(Self.rules.release(stored: false, now: Self.now) == .uncacheable(until: Self.now + 10 * Self.second))
        let held = FetchFlag.fetching(owner: 4, deadline: Self.now)
        #expect(FetchCoalescing.afterExit(of: 4, held) == .idle)
        #expect(FetchCoalescing.afterExit(of: 5, held) == held)
        #expect(FetchCoalescing.afterExit(of: 4, .uncacheable(until: 1)) == .uncacheable(until: 1))
    }
}
