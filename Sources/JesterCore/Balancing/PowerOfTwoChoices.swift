// SPDX-License-Identifier: Apache-2.0
/// Random with two choices: two candidates drawn at random (in proportion to their weights), the less loaded
/// of the two wins. Nearly as even as least-requests, without its herd behaviour when many balancers (workers,
/// instances) see the same idle target at once.
public struct PowerOfTwoChoices: Sendable {
    private var random: SplitMix64

    public init(seed: UInt64) {
        random = SplitMix64(seed: seed)
    }

    /// One of `candidates` (not empty); `load(i)` is target i's cost, lower is better.
    public mutating func pick(from candidates: [Int], weights: [Int], load: (Int) -> Double) -> Int {
        guard candidates.count > 1 else { return candidates[0] }
        let first = weightedDraw(candidates, weights)
        var second = weightedDraw(candidates, weights)
        if second == first {
            // A second distinct draw: the next candidate in order (keeps the cost of a draw bounded).
            let position = candidates.firstIndex(of: first)!
            second = candidates[(position + 1 + Int(random.next() % UInt64(candidates.count - 1))) % candidates.count]
        }
        return load(second) < load(first) ? second : first
    }

    private mutating func weightedDraw(_ candidates: [Int], _ weights: [Int]) -> Int {
        var total = 0
        for index in candidates { total += weights[index] }
        var point = Int(random.next() % UInt64(max(total, 1)))
        for index in candidates {
            point -= weights[index]
            if point < 0 { return index }
        }
        return candidates[candidates.count - 1]
    }
}
