// SPDX-License-Identifier: Apache-2.0
/// Passive health: a target whose requests keep failing is ejected from its pool for a while, then readmitted
/// with a slow start. Pure: failures, successes and time come in; eligibility and weights go out.
///
/// - `consecutiveFailures` failures in a row (connect refused or timed out, reset before the response, a 502,
///   503 or 504 from the target) eject it for `baseEjectionSeconds` × 2^(times ejected before), capped at
///   `maxEjectionSeconds`; a success resets the count, and a target healthy for `maxEjectionSeconds` after its
///   last ejection starts from the base again.
/// - Never more than `maxEjectedShare` of the pool is ejected at once (at least one target stays), so a
///   failure that hits every target (the network, a bad deploy) does not empty the pool.
/// - After readmission a target's weight ramps up from 10 % to full over `slowStartSeconds`, so a cold cache
///   or JIT is not flooded.
///
/// Per worker: each worker ejects on the failures it sees itself. Requests spread over the workers, so a dead
/// target is ejected everywhere within a few requests per worker.
public struct OutlierDetector: Sendable {
    public struct Settings: Sendable, Equatable {
        public var consecutiveFailures: Int
        public var baseEjectionSeconds: Double
        public var maxEjectionSeconds: Double
        public var maxEjectedShare: Double
        public var slowStartSeconds: Double

        public init(
            consecutiveFailures: Int = 5, baseEjectionSeconds: Double = 10, maxEjectionSeconds: Double = 300,
            maxEjectedShare: Double = 0.5, slowStartSeconds: Double = 0
        ) {
            self.consecutiveFailures = consecutiveFailures
            self.baseEjectionSeconds = baseEjectionSeconds
            self.maxEjectionSeconds = maxEjectionSeconds
            self.maxEjectedShare = maxEjectedShare
            self.slowStartSeconds = slowStartSeconds
        }
    }

    /// What happened to a target as a consequence of an outcome.
    public enum Event: Sendable, Equatable {
        case ejected(target: Int, seconds: Double)
        /// The target would have been ejected, but `maxEjectedShare` of the pool already is.
        case ejectionRefused(target: Int)
    }

    public let settings: Settings
    private var failures: [Int]
    private var ejections: [Int]
    private var ejectedUntil: [Double]
    private var lastEjectionEnd: [Double]

    public init(targetCount: Int, settings: Settings) {
        self.settings = settings
        failures = Array(repeating: 0, count: targetCount)
        ejections = Array(repeating: 0, count: targetCount)
        ejectedUntil = Array(repeating: -.infinity, count: targetCount)
        lastEjectionEnd = Array(repeating: -.infinity, count: targetCount)
    }

    public func isEjected(_ target: Int, now: Double) -> Bool { now < ejectedUntil[target] }

    /// When the next ejected target is readmitted (so the pool knows when its eligible set changes).
    public func nextReadmission(after now: Double) -> Double? {
        ejectedUntil.filter { $0 > now }.min()
    }

    public mutating func recordSuccess(_ target: Int, now: Double) {
        failures[target] = 0
        if ejections[target] > 0, now - lastEjectionEnd[target] >= settings.maxEjectionSeconds { ejections[target] = 0 }
    }

    public mutating func recordFailure(_ target: Int, now: Double) -> Event? {
        guard settings.consecutiveFailures > 0, !isEjected(target, now: now) else { return nil }
        failures[target] += 1
        guard failures[target] >= settings.consecutiveFailures else { return nil }
        let ejectedNow = ejectedUntil.indices.filter { isEjected($0, now: now) }.count
        let allowed = min(failures.count - 1, Int(settings.maxEjectedShare * Double(failures.count)))
        guard ejectedNow < allowed else {
            failures[target] = 0
            return .ejectionRefused(target: target)
        }
        let seconds = min(settings.maxEjectionSeconds,
            settings.baseEjectionSeconds * Double(1 << min(ejections[target], 30)))
        ejections[target] += 1
        failures[target] = 0
        ejectedUntil[target] = now + seconds
        lastEjectionEnd[target] = now + seconds
        return .ejected(target: target, seconds: seconds)
    }

    /// The share of its weight a target gets now: 1, or less during the slow start after a readmission.
    public func weightFactor(_ target: Int, now: Double) -> Double {
        guard settings.slowStartSeconds > 0, ejections[target] > 0 else { return 1 }
        let since = now - lastEjectionEnd[target]
        guard since >= 0, since < settings.slowStartSeconds else { return since < 0 ? 0 : 1 }
        return max(0.1, since / settings.slowStartSeconds)
    }
}
