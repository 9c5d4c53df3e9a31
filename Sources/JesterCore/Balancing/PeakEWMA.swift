// SPDX-License-Identifier: Apache-2.0
import Foundation

/// Least latency: each target's cost is its peak-sensitive moving average response time times its requests in
/// flight (plus one), divided by its weight; two candidates are drawn at random and the cheaper one wins
/// (Finagle's and Linkerd's "peak EWMA").
///
/// The average decays with a time constant (`decaySeconds`): a target that was slow a minute ago is judged on
/// what it does now. "Peak": a response slower than the average replaces it at once, so a target that starts
/// to struggle loses traffic immediately, while recovering is gradual.
public struct PeakEWMA: Sendable {
    public var decaySeconds: Double
    /// What a target that has not answered yet is assumed to take: 0 by default, so new targets are tried
    /// first instead of starving behind the averages of the ones already measured.
    public var initialLatency: Double
    private var averages: [Double]
    private var stamps: [Double]
    private var choices: PowerOfTwoChoices

    public init(targetCount: Int, seed: UInt64, decaySeconds: Double = 10, initialLatency: Double = 0) {
        self.decaySeconds = decaySeconds
        self.initialLatency = initialLatency
        averages = Array(repeating: initialLatency, count: targetCount)
        stamps = Array(repeating: 0, count: targetCount)
        choices = PowerOfTwoChoices(seed: seed)
    }

    /// Records that target `index` answered in `latency` seconds at time `now` (seconds, any monotonic origin).
    public mutating func observe(_ index: Int, latency: Double, now: Double) {
        if latency > averages[index] {
            averages[index] = latency
        } else {
            let weight = exp(-max(0, now - stamps[index]) / decaySeconds)
            averages[index] = averages[index] * weight + latency * (1 - weight)
        }
        stamps[index] = now
    }

    public func averageLatency(_ index: Int) -> Double { averages[index] }

    public mutating func pick(from candidates: [Int], active: [Int], weights: [Int]) -> Int {
        let averages = self.averages
        return choices.pick(from: candidates, weights: weights) { index in
            averages[index] * Double(active[index] + 1) / Double(weights[index])
        }
    }
}
