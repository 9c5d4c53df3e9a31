// SPDX-License-Identifier: Apache-2.0
@testable import JesterCore
import Testing

/// GCRA decisions, driven with explicit times in nanoseconds; plus the RateLimit fields and the key hash.
@Suite struct GCRATests {
    private static let second: Int64 = 1_000_000_000
    private static let start: Int64 = 1_000 * second

    /// Runs `limit` over requests at `times`, keeping the TAT as a store would; the decisions in order.
    private func run(_ limit: GCRA, at times: [Int64], tat: Int64? = nil) -> (decisions: [GCRA.Decision], tat: Int64?) {
        var tat = tat
        var decisions: [GCRA.Decision] = []
        for now in times {
            let (newTAT, decision) = limit.decide(tat: tat, now: now)
            if let newTAT { tat = newTAT }
            decisions.append(decision)
        }
        return (decisions, tat)
    }

    private func allowed(_ decisions: [GCRA.Decision]) -> Int {
        decisions.filter { if case .refuse = $0 { false } else { true } }.count
    }

    @Test func aSteadyRateAtTheLimitIsAllAdmitted() {
        // 10 a second, no burst: one every 100 ms passes, forever.
        let limit = GCRA(rate: 10, period: .seconds(1))
        #expect(limit.emissionInterval == 100_000_000 && limit.tolerance == 0)
        let times = (0..<1_000).map { Self.start + Int64($0) * 100_000_000 }
        #expect(allowed(run(limit, at: times).decisions) == 1_000)
        // Twice as fast: every other one.
        let fast = (0..<1_000).map { Self.start + Int64($0) * 50_000_000 }
        #expect(allowed(run(limit, at: fast).decisions) == 500)
    }

    @Test func aFreshKeyGetsOnePlusBurstAtOnceThenTheRate() {
        let limit = GCRA(rate: 1, period: .seconds(1), burst: 5)
        let (decisions, _) = run(limit, at: Array(repeating: Self.start, count: 10))
        #expect(allowed(decisions) == 6)
        // remaining counts down to 0 with the requests that would pass now.
        #expect(decisions[0] == .allow(remaining: 5, resetAfter: .seconds(1)))
        #expect(decisions[5] == .allow(remaining: 0, resetAfter: .seconds(6)))
        #expect(decisions[6] == .refuse(retryAfter: .seconds(1)))
    }

    @Test func theBoundaryIsExactToTheNanosecond() {
        let limit = GCRA(rate: 1, period: .seconds(1))
        let first = limit.decide(tat: nil, now: Self.start)
        #expect(first.newTAT == Self.start + Self.second)
        // One nanosecond early: refused, and told to wait exactly that nanosecond.
        let early = limit.decide(tat: first.newTAT, now: Self.start + Self.second - 1)
        #expect(early.newTAT == nil && early.decision == .refuse(retryAfter: .nanoseconds(1)))
        // On time: admitted.
        let onTime = limit.decide(tat: first.newTAT, now: Self.start + Self.second)
        #expect(onTime.newTAT == Self.start + 2 * Self.second)
        #expect(onTime.decision == .allow(remaining: 0, resetAfter: .seconds(1)))
    }

    @Test func aRefusalConsumesNothing() {
        let limit = GCRA(rate: 2, period: .seconds(1), burst: 1)
        let (_, tat) = run(limit, at: [Self.start, Self.start])
        // Hammering while refused does not push the key's next chance back.
        let hammered = run(limit, at: (1...100).map { Self.start + Int64($0) * 1_000_000 }, tat: tat)
        #expect(allowed(hammered.decisions) == 0 && hammered.tat == tat)
        #expect(limit.decide(tat: tat, now: Self.start + Self.second / 2).newTAT != nil)
    }

    @Test func retryAfterIsWhenTheNextRequestWouldPass() {
        let limit = GCRA(rate: 3, period: .seconds(1), burst: 2)
        let (_, tat) = run(limit, at: Array(repeating: Self.start, count: 3))
        let later = Self.start + 100_000_000
        guard case .refuse(let retryAfter) = limit.decide(tat: tat, now: later).decision else {
            Issue.record("not refused")
            return
        }
        let retryAt = later + Int64(retryAfter.components.attoseconds / 1_000_000_000)
            + retryAfter.components.seconds * Self.second
        #expect(limit.decide(tat: tat, now: retryAt - 1).newTAT == nil)
        #expect(limit.decide(tat: tat, now: retryAt).newTAT != nil)
    }

    @Test func delayModeFollowsNginx() {
        // nginx's burst=12 delay=8 at 5 r/s: 1 + 8 pass at once, 4 more wait to conform, the rest are refused.
        let limit = GCRA(rate: 5, period: .seconds(1), burst: 12, delay: 8)
        let (decisions, _) = run(limit, at: Array(repeating: Self.start, count: 15))
        for index in 0...8 {
            guard case .allow = decisions[index] else { Issue.record("\(index): \(decisions[index])"); return }
        }
        // The 10th request has excess 9: it waits (9 − 8) / 5 s, the 13th (12 − 8) / 5 s.
        #expect(decisions[9] == .delay(.milliseconds(200), remaining: 3))
        #expect(decisions[12] == .delay(.milliseconds(800), remaining: 0))
        #expect(decisions[13] == .refuse(retryAfter: .milliseconds(200)))
        // delay 0 (nginx's default): every excessive request waits until it conforms to the rate.
        let queueing = GCRA(rate: 1, period: .seconds(1), burst: 5, delay: 0)
        let queued = run(queueing, at: Array(repeating: Self.start, count: 7))
        #expect(queued.decisions[0] == .allow(remaining: 5, resetAfter: .seconds(1)))
        #expect(queued.decisions[1] == .delay(.seconds(1), remaining: 4))
        #expect(queued.decisions[5] == .delay(.seconds(5), remaining: 0))
        #expect(queued.decisions[6] == .refuse(retryAfter: .seconds(1)))
        // delay ≥ burst is nodelay.
        #expect(GCRA(rate: 1, period: .seconds(1), burst: 3, delay: 10).delay == 3)
    }

    @Test func anEarlierNowIsStricterAndItsWaitIsClampedToOneInterval() {
        let limit = GCRA(rate: 1, period: .seconds(1), burst: 2)
        // A TAT an hour ahead of now (a reader whose clock is behind): refused, told to wait one interval at
        // most, and nothing is stored, so the stale reader cannot loosen the limit.
        let farAhead = Self.start + 3_600 * Self.second
        let (newTAT, decision) = limit.decide(tat: farAhead, now: Self.start)
        #expect(newTAT == nil && decision == .refuse(retryAfter: .seconds(1)))
        // A request "before" the last one, within the normal range, is judged against the stored TAT.
        let (_, tat) = run(limit, at: [Self.start])
        #expect(limit.decide(tat: tat, now: Self.start - 500_000_000).decision
            == .allow(remaining: 0, resetAfter: .milliseconds(2_500)))
        // Two readers half a second apart admit exactly what one reader would.
        let interleaved = [0, 500, 0, 500, 0, 500, 0, 500].map { Self.start + Int64($0) * 1_000_000 }
        #expect(allowed(run(limit, at: interleaved).decisions) == 3)
    }

    @Test func hugeGapsAndHugeNumbersDoNotOverflow() {
        let limit = GCRA(rate: 1, period: .seconds(1), burst: 3)
        // Years idle: a whole allowance, no more.
        let (_, tat) = run(limit, at: [Self.start])
        let years = Self.start + 100 * 365 * 86_400 * Self.second
        #expect(allowed(run(limit, at: Array(repeating: years, count: 10), tat: tat).decisions) == 4)
        // A burst of billions and a period of centuries saturate instead of trapping.
        let vast = GCRA(rate: 1, period: .seconds(Int64.max / 4), burst: .max)
        #expect(vast.emissionInterval == .max && vast.tolerance == .max)
        #expect(vast.decide(tat: nil, now: Self.start).newTAT == .max)
        #expect(vast.decide(tat: .max, now: Self.start).newTAT == .max)
        // More than one request per nanosecond: the interval is one nanosecond, never zero.
        #expect(GCRA(rate: 5_000_000_000, period: .seconds(1)).emissionInterval == 1)
    }

    @Test func rateLimitFieldsFollowTheDraft() {
        let limit = GCRA(rate: 10, period: .seconds(1), burst: 5)
        #expect(RateLimitFields.policyItem(name: "per-client", limit: limit)
            == "\"per-client\";q=10;w=1;jester-burst=5")
        #expect(RateLimitFields.policyItem(name: "hourly", limit: GCRA(rate: 100, period: .seconds(3_600)))
            == "\"hourly\";q=100;w=3600")
        // A sub-second period is scaled to a one-second window.
        #expect(RateLimitFields.policyItem(name: "a", limit: GCRA(rate: 1, period: .milliseconds(100)))
            == "\"a\";q=10;w=1")
        let allowed = GCRA.Decision.allow(remaining: 3, resetAfter: .milliseconds(1_200))
        #expect(RateLimitFields.serviceLimitItem(name: "per-client", decision: allowed) == "\"per-client\";r=3;t=2")
        let refused = GCRA.Decision.refuse(retryAfter: .milliseconds(100))
        #expect(RateLimitFields.serviceLimitItem(name: "x", decision: refused) == "\"x\";r=0;t=1")
        #expect(RateLimitFields.serviceLimitItem(name: "x", decision: .delay(.seconds(1), remaining: 2)) == "\"x\";r=2")
        #expect(RateLimitFields.retryAfter(.milliseconds(1)) == "1" && RateLimitFields.retryAfter(.seconds(3)) == "3")
        #expect(RateLimitFields.retryAfter(.zero) == "1")
        // Names become SF Strings: quotes and backslashes escaped, control characters dropped.
        #expect(RateLimitFields.string("a\"b\\c\u{7}d é") == "\"a\\\"b\\\\cd \"")
    }

    @Test func theKeyHasherIsSipHash24() {
        // The reference vectors (Aumasson and Bernstein's paper, appendix A; vectors.h): key 00...0f.
        let seed: (UInt64, UInt64) = (0x0706_0504_0302_0100, 0x0F0E_0D0C_0B0A_0908)
        var empty = RateLimitKeyHasher(seed: seed)
        #expect(empty.digest() == 0x726F_DB47_DD0E_0E31)
        for byte in 0..<15 { empty.write(UInt8(byte)) }
        #expect(empty.digest() == 0xA129_CA61_49BE_45E5)
    }

    @Test func keysDependOnEveryPartItsBoundariesAndTheSeed() {
        func key(_ parts: [String], seed: (UInt64, UInt64) = (1, 2)) -> UInt64 {
            var hasher = RateLimitKeyHasher(seed: seed)
            for part in parts { hasher.combine(part) }
            return hasher.finalize()
        }
        #expect(key(["api", "192.0.2.1"]) == key(["api", "192.0.2.1"]))
        #expect(key(["api", "192.0.2.1"]) != key(["api", "192.0.2.2"]))
        #expect(key(["ab", "c"]) != key(["a", "bc"]))
        #expect(key(["api", "192.0.2.1"]) != key(["api", "192.0.2.1"], seed: (1, 3)))
        var bytes = RateLimitKeyHasher(seed: (1, 2))
        bytes.combine(bytes: [192, 0, 2, 1])
        #expect(bytes.finalize() != 0)
    }
}
