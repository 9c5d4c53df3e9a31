// SPDX-License-Identifier: Apache-2.0
import JesterCore
import Testing

// MARK: The algorithms

@Test func smoothWeightedRoundRobinInterleaves() {
    var balancer = SmoothWeightedRoundRobin(targetCount: 3)
    let picks = (0..<14).map { _ in balancer.pick(from: [0, 1, 2], weights: [5, 1, 1]) }
    // nginx's documented order for weights 5, 1, 1: a a b a c a a, then again.
    #expect(picks == [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0])
}

@Test func smoothWeightedRoundRobinOnlyPicksCandidates() {
    var balancer = SmoothWeightedRoundRobin(targetCount: 3)
    var counts = [0, 0, 0]
    for _ in 0..<300 { counts[balancer.pick(from: [0, 2], weights: [1, 5, 2])] += 1 }
    #expect(counts == [100, 0, 200])
}

@Test func leastRequestsWeighsInFlightByWeightAndRotatesTies() {
    var balancer = LeastRequests()
    #expect(balancer.pick(from: [0, 1, 2], active: [3, 1, 2], weights: [1, 1, 1]) == 1)
    // 4 in flight at weight 4 (1.25 per unit) beats 2 at weight 1 (3 per unit).
    #expect(balancer.pick(from: [0, 1], active: [4, 2], weights: [4, 1]) == 0)
    let ties = Set((0..<6).map { _ in balancer.pick(from: [0, 1, 2], active: [0, 0, 0], weights: [1, 1, 1]) })
    #expect(ties == [0, 1, 2])
}

@Test func randomTwoChoicesFollowsWeightsWhenLoadsAreEqual() {
    var balancer = PowerOfTwoChoices(seed: 42)
    var counts = [0, 0, 0]
    let draws = 100_000
    for _ in 0..<draws { counts[balancer.pick(from: [0, 1, 2], weights: [1, 2, 1]) { _ in 1 }] += 1 }
    let shares = counts.map { Double($0) / Double(draws) }
    #expect(abs(shares[0] - 0.25) < 0.01 && abs(shares[1] - 0.5) < 0.01 && abs(shares[2] - 0.25) < 0.01, "\(shares)")
}

@Test func randomTwoChoicesAvoidsTheLoadedTarget() {
    var balancer = PowerOfTwoChoices(seed: 7)
    var counts = [0, 0, 0]
    for _ in 0..<30_000 { counts[balancer.pick(from: [0, 1, 2], weights: [1, 1, 1]) { $0 == 0 ? 10 : 1 }] += 1 }
    // Target 0 wins only when drawn twice, which the distinct second draw rules out.
    #expect(counts[0] == 0 && counts[1] > 13_000 && counts[2] > 13_000, "\(counts)")
}

@Test func maglevSpreadsKeysByWeightAndMovesOnlyTheLostTargetsKeys() {
    let names = (1...5).map { "10.0.0.\($0):80" }
    let maglev = Maglev(names: names, weights: [1, 1, 1, 1, 2])
    let all = [Bool](repeating: true, count: 5)
    let idle = [Int](repeating: 0, count: 5)
    var random = SplitMix64(seed: 1)
    let keys = (0..<60_000).map { _ in random.next() }
    var before: [Int] = []
    var counts = [0, 0, 0, 0, 0]
    for key in keys {
        let target = maglev.pick(hash: key, eligible: all, active: idle)!
        before.append(target)
        counts[target] += 1
    }
    for target in 0..<4 { #expect(abs(Double(counts[target]) / 60_000 - 1.0 / 6) < 0.02, "\(counts)") }
    #expect(abs(Double(counts[4]) / 60_000 - 2.0 / 6) < 0.02, "\(counts)")
    // Target 2 leaves: its keys spread over the others, every other key stays where it was.
    var without = all
    without[2] = false
    var moved = [0, 0, 0, 0, 0]
    for (key, previous) in zip(keys, before) {
        let target = maglev.pick(hash: key, eligible: without, active: idle)!
        #expect(target != 2)
        if previous != 2 { #expect(target == previous) } else { moved[target] += 1 }
    }
    #expect(moved.filter { $0 > 0 }.count == 4, "\(moved)")
}

@Test func maglevBoundsTheLoadOfAHotKey() {
    let maglev = Maglev(names: ["a", "b", "c"], weights: [1, 1, 1], loadFactor: 1.25)
    let hot: UInt64 = 12345
    let home = maglev.pick(hash: hot, eligible: [true, true, true], active: [0, 0, 0])!
    var active = [0, 0, 0]
    active[home] = 10  // far above 1.25 × the average
    let elsewhere = maglev.pick(hash: hot, eligible: [true, true, true], active: active)!
    #expect(elsewhere != home)
    // Same key, same overflow target: the spill-over is consistent too.
    #expect(maglev.pick(hash: hot, eligible: [true, true, true], active: active) == elsewhere)
}

@Test func peakEWMAPrefersTheFastTargetAndReactsToAPeakAtOnce() {
    var balancer = PeakEWMA(targetCount: 2, seed: 3, decaySeconds: 10)
    for second in 0..<20 {
        balancer.observe(0, latency: 0.100, now: Double(second))
        balancer.observe(1, latency: 0.001, now: Double(second))
    }
    var counts = [0, 0]
    for _ in 0..<1000 { counts[balancer.pick(from: [0, 1], active: [0, 0], weights: [1, 1])] += 1 }
    #expect(counts[1] == 1000, "\(counts)")
    balancer.observe(1, latency: 0.5, now: 21)  // target 1 stalls once: its average jumps to the peak
    #expect(balancer.averageLatency(1) == 0.5)
    balancer.observe(1, latency: 0.001, now: 31)  // and recovers gradually
    #expect(balancer.averageLatency(1) > 0.1 && balancer.averageLatency(1) < 0.5)
}

// MARK: Health and the pool balancer

@Test func outlierDetectorEjectsForGrowingPeriodsAndResetsOnSuccess() {
    var detector = OutlierDetector(targetCount: 4, settings: .init(consecutiveFailures: 3, baseEjectionSeconds: 10))
    #expect(detector.recordFailure(0, now: 0) == nil)
    #expect(detector.recordFailure(0, now: 0) == nil)
    detector.recordSuccess(0, now: 0)  // the run is broken
    #expect(detector.recordFailure(0, now: 1) == nil)
    #expect(detector.recordFailure(0, now: 1) == nil)
    #expect(detector.recordFailure(0, now: 1) == .ejected(target: 0, seconds: 10))
    #expect(detector.isEjected(0, now: 10.9) && !detector.isEjected(0, now: 11))
    #expect(detector.nextReadmission(after: 5) == 11)
    for _ in 0..<2 { _ = detector.recordFailure(0, now: 12) }
    #expect(detector.recordFailure(0, now: 12) == .ejected(target: 0, seconds: 20))
}

@Test func outlierDetectorNeverEjectsMoreThanItsShare() {
    var detector = OutlierDetector(targetCount: 2, settings: .init(consecutiveFailures: 1, maxEjectedShare: 0.5))
    #expect(detector.recordFailure(0, now: 0) == .ejected(target: 0, seconds: 10))
    #expect(detector.recordFailure(1, now: 0) == .ejectionRefused(target: 1))
    #expect(!detector.isEjected(1, now: 0))
    var single = OutlierDetector(targetCount: 1, settings: .init(consecutiveFailures: 1, maxEjectedShare: 1))
    #expect(single.recordFailure(0, now: 0) == .ejectionRefused(target: 0))  // the last target always stays
}

@Test func slowStartRampsAReadmittedTargetsWeight() {
    var detector = OutlierDetector(targetCount: 2, settings: .init(consecutiveFailures: 1, baseEjectionSeconds: 10,
        slowStartSeconds: 20))
    _ = detector.recordFailure(0, now: 0)
    #expect(detector.weightFactor(0, now: 5) == 0)
    #expect(detector.weightFactor(0, now: 10) == 0.1)
    #expect(detector.weightFactor(0, now: 20) == 0.5)
    #expect(detector.weightFactor(0, now: 30) == 1)
    #expect(detector.weightFactor(1, now: 5) == 1)
}

@Test func poolFailsOverToTheNextPriorityGroupAndBack() {
    let targets = [
        UpstreamBalancer.Target(name: "a", priority: 0), UpstreamBalancer.Target(name: "b", priority: 0),
        UpstreamBalancer.Target(name: "backup", priority: 1),
    ]
    var pool = UpstreamBalancer(algorithm: .roundRobin, targets: targets,
        outlierSettings: .init(consecutiveFailures: 1, baseEjectionSeconds: 10, maxEjectedShare: 1), seed: 1)
    #expect(Set((0..<4).map { _ in pool.pick(hashKey: nil, now: 0)! }) == [0, 1])
    pool.connectFailed(0, now: 1)
    #expect((0..<4).map { _ in pool.pick(hashKey: nil, now: 1)! } == [1, 1, 1, 1])
    pool.connectFailed(1, now: 2)
    #expect(pool.pick(hashKey: nil, now: 2) == 2)  // both primaries out: the backup serves
    #expect(Set((0..<4).map { _ in pool.pick(hashKey: nil, now: 11)! }) == [0])  // a is back at 11, b not yet
    #expect(Set((0..<4).map { _ in pool.pick(hashKey: nil, now: 12)! }) == [0, 1])
}

@Test func poolRetriesGoElsewhere() {
    let targets = (0..<3).map { UpstreamBalancer.Target(name: "t\($0)") }
    var pool = UpstreamBalancer(algorithm: .hash, targets: targets, outlierSettings: .init(), seed: 1)
    let first = pool.pick(hashKey: 99, now: 0)!
    let second = pool.pick(hashKey: 99, now: 0, excluding: [first])!
    #expect(second != first)
    #expect(pool.pick(hashKey: 99, now: 0) == first)  // the exclusion lasted one pick
    #expect(pool.pick(hashKey: 99, now: 0, excluding: [0, 1, 2]) == nil)
    let withBackup = [UpstreamBalancer.Target(name: "a"), UpstreamBalancer.Target(name: "b", priority: 1)]
    var failover = UpstreamBalancer(algorithm: .roundRobin, targets: withBackup, outlierSettings: .init(), seed: 1)
    #expect(failover.pick(hashKey: nil, now: 0, excluding: [0]) == 1)
}

@Test func poolCountsRequestsInFlight() {
    var pool = UpstreamBalancer(algorithm: .leastRequests, targets: [.init(name: "a"), .init(name: "b")],
        outlierSettings: .init(), seed: 1)
    let first = pool.pick(hashKey: nil, now: 0)!
    pool.requestStarted(first)
    let second = pool.pick(hashKey: nil, now: 0)!
    #expect(second != first)
    pool.requestEnded(first, failed: false, latency: 0.01, now: 1)
    #expect(pool.active == [0, 0])
}

@Test func retryPolicyRetriesOnlyWhatIsSafe() {
    let policy = RetryPolicy(maxRetries: 2)
    #expect(policy.allows(.reset, retriesSoFar: 0, idempotent: true, hasBody: false))
    #expect(policy.allows(.status(503), retriesSoFar: 1, idempotent: true, hasBody: false))
    #expect(!policy.allows(.status(503), retriesSoFar: 2, idempotent: true, hasBody: false))  // attempts used up
    #expect(!policy.allows(.status(500), retriesSoFar: 0, idempotent: true, hasBody: false))  // not in retry_on
    #expect(!policy.allows(.reset, retriesSoFar: 0, idempotent: false, hasBody: false))  // POST
    #expect(!policy.allows(.reset, retriesSoFar: 0, idempotent: true, hasBody: true))  // a body is not kept
    var lenient = policy
    lenient.nonIdempotent = true
    #expect(lenient.allows(.reset, retriesSoFar: 0, idempotent: false, hasBody: false))
    #expect(policy.backoff(retriesSoFar: 0, random: 0.5) == 0.0125)
    #expect(policy.backoff(retriesSoFar: 10, random: 0.999) < 0.25)
}

@Test func retryBudgetIsAShareOfRequestsInFlightWithAFloor() {
    var budget = RetryBudget(share: 0.2, minimum: 3)
    #expect((0..<5).map { _ in budget.acquire(active: 5) } == [true, true, true, false, false])
    budget.release()
    let again = budget.acquire(active: 5)
    #expect(again)
    var busy = RetryBudget(share: 0.2, minimum: 3)
    #expect((0..<25).filter { _ in busy.acquire(active: 100) }.count == 20)
}

@Test func circuitBreakerOpensOnFailuresThenProbesBeforeClosing() {
    var breaker = CircuitBreaker(settings: .init(failureRatio: 0.5, minimumRequests: 4, windowSeconds: 10,
        openSeconds: 5, halfOpenRequests: 2))
    for success in [true, false, true] {
        #expect(breaker.admit(active: 0, now: 1) == nil)
        breaker.record(success: success, now: 1)
    }
    #expect(breaker.state == .closed)  // 1 of 3: too few requests yet
    breaker.record(success: false, now: 2)  // 2 of 4 failed: opens
    #expect(breaker.state == .open(until: 7))
    #expect(breaker.admit(active: 0, now: 6) == .open)
    // After open_for: two probes, a third waits; both succeed: closed.
    #expect(breaker.admit(active: 0, now: 7) == nil)
    #expect(breaker.admit(active: 1, now: 7) == nil)
    #expect(breaker.admit(active: 2, now: 7) == .open)
    breaker.record(success: true, now: 8)
    breaker.record(success: true, now: 8)
    #expect(breaker.state == .closed)
    // A failed probe opens it again at once.
    for _ in 0..<4 { breaker.record(success: false, now: 9) }
    _ = breaker.admit(active: 0, now: 14)
    breaker.record(success: false, now: 14)
    #expect(breaker.state == .open(until: 19))
}

@Test func circuitBreakerForgetsOldFailuresAndLimitsRequestsInFlight() {
    var breaker = CircuitBreaker(settings: .init(maxRequests: 2, failureRatio: 0.5, minimumRequests: 4, windowSeconds: 10))
    for _ in 0..<3 { breaker.record(success: false, now: 0) }
    breaker.record(success: false, now: 11)  // the first three are out of the window by now
    #expect(breaker.state == .closed)
    #expect(breaker.admit(active: 1, now: 11) == nil)
    #expect(breaker.admit(active: 2, now: 11) == .tooManyRequests)
}

@Test func tokenBucketAllowsABurstThenTheRate() {
    var bucket = TokenBucket(rate: 10, burst: 5)
    func take(_ now: Double) -> Bool { bucket.take(now: now) }
    #expect((0..<5).allSatisfy { _ in take(100) })
    #expect(!take(100))
    #expect(!take(100.05))  // half a token
    #expect(take(100.1))
    #expect(!take(100.1))
    // A long pause refills up to the burst, not beyond.
    #expect((0..<5).allSatisfy { _ in take(200) })
    #expect(!take(200))
}
