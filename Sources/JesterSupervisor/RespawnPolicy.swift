// SPDX-License-Identifier: Apache-2.0
/// Decides when a worker slot whose process died is refilled: at once the first time, then with exponential
/// backoff, and not at all once the slot crash-loops.
///
/// Pure: time comes in as seconds from any monotonic origin. The supervisor owns one per slot.
public struct RespawnPolicy: Sendable, Equatable {
    /// What to do about a worker that exited unexpectedly.
    public enum Decision: Sendable, Equatable {
        /// Spawn a replacement after this many seconds.
        case respawn(afterSeconds: Double)
        /// The slot crashed `crashes` times within the window: stop respawning it and say so loudly.
        case giveUp(crashes: Int)
    }

    /// Crashes within `windowSeconds` that make a crash loop.
    public var maxCrashes: Int
    public var windowSeconds: Double
    /// The first delay, doubled per consecutive crash up to `maxDelaySeconds`.
    public var initialDelaySeconds: Double
    public var maxDelaySeconds: Double
    /// A worker that ran this long before dying resets the backoff: it was healthy.
    public var healthyAfterSeconds: Double

    /// Every unexpected exit of this slot so far, shown by `jesterctl status`.
    public private(set) var totalCrashes = 0
    private var crashTimes: [Double] = []
    private var consecutive = 0

    public init(
        maxCrashes: Int = 10, windowSeconds: Double = 60, initialDelaySeconds: Double = 0.1,
        maxDelaySeconds: Double = 10, healthyAfterSeconds: Double = 30
    ) {
        self.maxCrashes = maxCrashes
        self.windowSeconds = windowSeconds
        self.initialDelaySeconds = initialDelaySeconds
        self.maxDelaySeconds = maxDelaySeconds
        self.healthyAfterSeconds = healthyAfterSeconds
    }

    /// A worker of this slot that started at `startedAt` died unexpectedly at `now`.
    public mutating func workerCrashed(startedAt: Double, now: Double) -> Decision {
        totalCrashes += 1
        if now - startedAt >= healthyAfterSeconds { consecutive = 0 }
        crashTimes.append(now)
        crashTimes.removeAll { now - $0 > windowSeconds }
        if crashTimes.count >= maxCrashes { return .giveUp(crashes: crashTimes.count) }
        let delay = min(maxDelaySeconds, initialDelaySeconds * Double(1 << min(consecutive, 20)))
        consecutive += 1
        return .respawn(afterSeconds: delay)
    }
}
