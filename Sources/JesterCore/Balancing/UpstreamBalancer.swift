// SPDX-License-Identifier: Apache-2.0
/// Chooses a target of one upstream pool for each request: which targets may take it (priority groups,
/// passive health), then which of those by the pool's algorithm. Pure: the pool feeds it requests in flight,
/// outcomes and time, and it returns target indices.
public struct UpstreamBalancer: Sendable {
    public enum Algorithm: String, Sendable, CaseIterable {
        /// Smooth weighted round-robin (the default).
        case roundRobin = "round_robin"
        /// Fewest requests in flight per weight.
        case leastRequests = "least_requests"
        /// Two random choices, the one with fewer requests in flight per weight.
        case randomTwo = "random_two"
        /// Consistent hashing of a request key (Maglev, bounded loads).
        case hash
        /// Peak-EWMA latency × requests in flight.
        case leastLatency = "least_latency"
    }

    public struct Target: Sendable, Equatable {
        /// Identifies the target across workers and instances (its address), for consistent hashing.
        public var name: String
        public var weight: Int
        /// Lower groups serve first; a group serves only when every lower one has no eligible target. Backup
        /// targets are the last group.
        public var priority: Int

        public init(name: String, weight: Int = 1, priority: Int = 0) {
            self.name = name
            self.weight = max(1, weight)
            self.priority = priority
        }
    }

    public let algorithm: Algorithm
    public let targets: [Target]
    public private(set) var outliers: OutlierDetector
    /// Requests in flight per target (this worker's).
    public private(set) var active: [Int]
    /// Requests started and failed per target, since this worker started.
    public private(set) var requests: [Int]
    public private(set) var failures: [Int]
    /// Taken out by an operator (`jesterctl upstream drain|disable`).
    private var adminOut: [Bool]
    /// Failing the master's active health checks.
    private var unhealthy: [Bool]

    private let groups: [[Int]]
    private var roundRobin: SmoothWeightedRoundRobin
    private var leastRequests = LeastRequests()
    private var randomTwo: PowerOfTwoChoices
    private var latency: PeakEWMA
    private let maglev: Maglev?
    /// The eligible targets of the serving group, recomputed when an ejection starts or ends.
    private var candidates: [Int] = []
    private var eligible: [Bool]
    private var validUntil = -Double.infinity
    private var baseWeights: [Int]
    private var weights: [Int]

    public init(algorithm: Algorithm, targets: [Target], outlierSettings: OutlierDetector.Settings, seed: UInt64) {
        self.algorithm = algorithm
        self.targets = targets
        outliers = OutlierDetector(targetCount: targets.count, settings: outlierSettings)
        active = Array(repeating: 0, count: targets.count)
        requests = Array(repeating: 0, count: targets.count)
        failures = Array(repeating: 0, count: targets.count)
        adminOut = Array(repeating: false, count: targets.count)
        unhealthy = Array(repeating: false, count: targets.count)
        eligible = Array(repeating: false, count: targets.count)
        groups = Dictionary(grouping: targets.indices, by: { targets[$0].priority }).sorted { $0.key < $1.key }.map(\.value)
        roundRobin = SmoothWeightedRoundRobin(targetCount: targets.count)
        randomTwo = PowerOfTwoChoices(seed: seed)
        latency = PeakEWMA(targetCount: targets.count, seed: seed ^ 0x5EED)
        maglev = algorithm == .hash ? Maglev(names: targets.map(\.name), weights: targets.map(\.weight)) : nil
        baseWeights = targets.map(\.weight)
        weights = baseWeights
    }

    /// The target for the next request, or nil when no target may take one. `hashKey` is used by `.hash`.
    public mutating func pick(hashKey: UInt64?, now: Double) -> Int? {
        if now >= validUntil { refresh(now: now) }
        return choose(hashKey: hashKey)
    }

    /// The algorithm's choice among the current candidates.
    private mutating func choose(hashKey: UInt64?) -> Int? {
        guard !candidates.isEmpty else { return nil }
        switch algorithm {
        case .roundRobin:
            return roundRobin.pick(from: candidates, weights: weights)
        case .leastRequests:
            return leastRequests.pick(from: candidates, active: active, weights: weights)
        case .randomTwo:
            let (active, weights) = (self.active, self.weights)
            return randomTwo.pick(from: candidates, weights: weights) { Double(active[$0] + 1) / Double(weights[$0]) }
        case .leastLatency:
            return latency.pick(from: candidates, active: active, weights: weights)
        case .hash:
            return maglev!.pick(hash: hashKey ?? 0, eligible: eligible, active: active)
        }
    }

    /// The eligible targets other than `excluded` (for a retry that must go elsewhere), by the same algorithm.
    public mutating func pick(hashKey: UInt64?, now: Double, excluding excluded: Set<Int>) -> Int? {
        guard !excluded.isEmpty else { return pick(hashKey: hashKey, now: now) }
        if now >= validUntil { refresh(now: now) }
        let saved = (candidates, eligible)
        candidates.removeAll { excluded.contains($0) }
        for index in excluded where index < eligible.count { eligible[index] = false }
        if candidates.isEmpty {
            // The serving group is used up: the next groups, in order.
            let ignoringHealth = unhealthy.indices.allSatisfy { unhealthy[$0] || adminOut[$0] }
            for group in groups {
                let rest = group.filter { !excluded.contains($0) && available($0, now: now, ignoringHealth: ignoringHealth) }
                if !rest.isEmpty {
                    candidates = rest
                    for index in rest { eligible[index] = true }
                    break
                }
            }
        }
        defer { (candidates, eligible) = saved }
        return choose(hashKey: hashKey)
    }

    public mutating func requestStarted(_ target: Int) {
        active[target] += 1
        requests[target] += 1
    }

    /// Sets what the master decided: an operator took the target out (`adminOut`), or active checks found it
    /// `unhealthy`. An unhealthy target gets no requests unless every target of the pool is unhealthy (then
    /// the checks, not all the targets, are more likely wrong); a target taken out gets none, ever.
    public mutating func setAvailability(_ target: Int, adminOut: Bool, unhealthy: Bool) {
        guard self.adminOut[target] != adminOut || self.unhealthy[target] != unhealthy else { return }
        self.adminOut[target] = adminOut
        self.unhealthy[target] = unhealthy
        validUntil = -.infinity
    }

    /// A request to `target` ended. `failed`: it counts against the target's health (a connect failure, a reset
    /// before the response, a 502/503/504 from it). `latency`: seconds to its response, when there was one.
    @discardableResult
    public mutating func requestEnded(_ target: Int, failed: Bool, latency seconds: Double?, now: Double)
        -> OutlierDetector.Event?
    {
        active[target] = max(0, active[target] - 1)
        if let seconds { latency.observe(target, latency: seconds, now: now) }
        if failed {
            failures[target] += 1
            let event = outliers.recordFailure(target, now: now)
            if case .ejected = event { validUntil = now }
            return event
        }
        outliers.recordSuccess(target, now: now)
        return nil
    }

    /// A connection attempt failed before any request was sent: health only, no request in flight.
    @discardableResult
    public mutating func connectFailed(_ target: Int, now: Double) -> OutlierDetector.Event? {
        failures[target] += 1
        let event = outliers.recordFailure(target, now: now)
        if case .ejected = event { validUntil = now }
        return event
    }

    /// Whether target `index` takes requests now (not ejected, in the serving group).
    public mutating func isEligible(_ index: Int, now: Double) -> Bool {
        if now >= validUntil { refresh(now: now) }
        return eligible[index]
    }

    public func averageLatency(_ index: Int) -> Double { latency.averageLatency(index) }

    /// Whether a target may be picked at all (before priority groups): not taken out, not failing the active
    /// checks (unless every target does), not ejected.
    private func available(_ index: Int, now: Double, ignoringHealth: Bool) -> Bool {
        !adminOut[index] && (ignoringHealth || !unhealthy[index]) && !outliers.isEjected(index, now: now)
    }

    private mutating func refresh(now: Double) {
        for index in eligible.indices { eligible[index] = false }
        candidates = []
        let ignoringHealth = unhealthy.indices.allSatisfy { unhealthy[$0] || adminOut[$0] }
        for group in groups {
            let healthy = group.filter { available($0, now: now, ignoringHealth: ignoringHealth) }
            if !healthy.isEmpty {
                candidates = healthy
                break
            }
        }
        for index in candidates { eligible[index] = true }
        var nextChange = outliers.nextReadmission(after: now) ?? .infinity
        // Slow start: weights ramp, so they are recomputed often while a ramp runs.
        weights = baseWeights
        for index in candidates {
            let factor = outliers.weightFactor(index, now: now)
            if factor < 1 {
                weights[index] = max(1, Int((Double(baseWeights[index] * 100) * factor).rounded()))
                nextChange = min(nextChange, now + 0.5)
            } else {
                weights[index] = baseWeights[index] * 100
            }
        }
        validUntil = nextChange
    }
}
