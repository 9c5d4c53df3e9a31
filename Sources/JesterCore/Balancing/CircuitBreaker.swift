// SPDX-License-Identifier: Apache-2.0
/// Protects a pool that is failing or overloaded by answering at once (503) instead of adding to its trouble.
/// Pure: requests, outcomes and time come in; admit or refuse goes out.
///
/// - Limit: at most `maxRequests` requests in flight (0: no limit); more are refused at once.
/// - Closed → open: within the last `windowSeconds`, at least `minimumRequests` requests of which a share of
///   at least `failureRatio` failed. Open refuses everything for `openSeconds`.
/// - Open → half-open: then `halfOpenRequests` requests are let through as probes; if they all succeed the
///   breaker closes, if one fails it opens again.
///
/// Per worker, like the outlier detector: each worker judges the failures it sees.
public struct CircuitBreaker: Sendable, Equatable {
    public struct Settings: Sendable, Equatable {
        public var maxRequests: Int
        public var failureRatio: Double
        public var minimumRequests: Int
        public var windowSeconds: Double
        public var openSeconds: Double
        public var halfOpenRequests: Int

        public init(
            maxRequests: Int = 0, failureRatio: Double = 0.5, minimumRequests: Int = 20, windowSeconds: Double = 10,
            openSeconds: Double = 5, halfOpenRequests: Int = 3
        ) {
            self.maxRequests = maxRequests
            self.failureRatio = failureRatio
            self.minimumRequests = minimumRequests
            self.windowSeconds = windowSeconds
            self.openSeconds = openSeconds
            self.halfOpenRequests = max(1, halfOpenRequests)
        }
    }

    public enum State: Sendable, Equatable {
        case closed
        case open(until: Double)
        /// `admitted` probes let through so far, `succeeded` of them answered well.
        case halfOpen(admitted: Int, succeeded: Int)
    }

    public enum Refusal: Sendable, Equatable {
        case tooManyRequests
        case open
    }

    public let settings: Settings
    public private(set) var state = State.closed
    /// Outcomes per tenth of the window: (start time, requests, failures).
    private var buckets: [(start: Double, requests: Int, failures: Int)] = []

    public init(settings: Settings) {
        self.settings = settings
    }

    public static func == (lhs: CircuitBreaker, rhs: CircuitBreaker) -> Bool {
        lhs.settings == rhs.settings && lhs.state == rhs.state
    }

    /// Whether a new request may go out (`active` requests are in flight); nil when it may.
    public mutating func admit(active: Int, now: Double) -> Refusal? {
        switch state {
        case .open(let until):
            guard now >= until else { return .open }
            state = .halfOpen(admitted: 0, succeeded: 0)
            return admit(active: active, now: now)
        case .halfOpen(let admitted, let succeeded):
            guard admitted < settings.halfOpenRequests else { return .open }
            state = .halfOpen(admitted: admitted + 1, succeeded: succeeded)
            return nil
        case .closed:
            if settings.maxRequests > 0, active >= settings.maxRequests { return .tooManyRequests }
            return nil
        }
    }

    /// The outcome of an admitted request.
    public mutating func record(success: Bool, now: Double) {
        switch state {
        case .halfOpen(let admitted, let succeeded):
            if !success {
                open(now: now)
            } else if succeeded + 1 >= settings.halfOpenRequests {
                state = .closed
                buckets = []
            } else {
                state = .halfOpen(admitted: admitted, succeeded: succeeded + 1)
            }
        case .open:
            break  // a request admitted before the breaker opened
        case .closed:
            let width = settings.windowSeconds / 10
            if let last = buckets.last, now - last.start < width {
                buckets[buckets.count - 1].requests += 1
                buckets[buckets.count - 1].failures += success ? 0 : 1
            } else {
                buckets.append((now, 1, success ? 0 : 1))
            }
            buckets.removeAll { now - $0.start >= settings.windowSeconds }
            let requests = buckets.reduce(0) { $0 + $1.requests }
            let failures = buckets.reduce(0) { $0 + $1.failures }
            if requests >= settings.minimumRequests,
                Double(failures) >= settings.failureRatio * Double(requests)
            {
                open(now: now)
            }
        }
    }

    private mutating func open(now: Double) {
        state = .open(until: now + settings.openSeconds)
        buckets = []
    }
}
