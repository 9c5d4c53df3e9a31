// SPDX-License-Identifier: Apache-2.0
/// Consistent hashing with Google's Maglev lookup table: a key always maps to the same target while the set of
/// targets stays the same, and when a target leaves only its share of keys moves. Weighted (a target fills
/// table slots in proportion to its weight) and with bounded loads (a key whose target already carries more
/// than `loadFactor` times the average of requests in flight goes to the next slot's target), so one hot key
/// cannot melt a target.
///
/// The table is built once per configuration from the targets' names, so every worker and every instance with
/// the same targets maps keys the same way.
public struct Maglev: Sendable {
    /// The table: slot → target index.
    public let table: [Int32]
    public var loadFactor: Double

    /// Table sizes (primes); the smallest with at least 100 slots per target is used.
    static let sizes = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131_071]

    /// `names` identify targets across instances (their addresses); `weights` are positive.
    public init(names: [String], weights: [Int], loadFactor: Double = 1.25) {
        self.loadFactor = loadFactor
        let count = names.count
        let size = Self.sizes.first { $0 >= 100 * max(count, 1) } ?? Self.sizes[Self.sizes.count - 1]
        var table = [Int32](repeating: -1, count: size)
        guard count > 0 else {
            self.table = table
            return
        }
        let offsets = names.map { Int(SplitMix64.hash(Array($0.utf8)) % UInt64(size)) }
        let skips = names.map { Int(SplitMix64.hash(Array("skip:\($0)".utf8)) % UInt64(size - 1)) + 1 }
        var next = [Int](repeating: 0, count: count)
        var credit = [Int](repeating: 0, count: count)
        let heaviest = weights.max() ?? 1
        var filled = 0
        // Rounds: each target earns its weight in credit and places one entry per `heaviest` credit, so slots
        // end up in proportion to weight.
        while filled < size {
            for target in 0..<count where filled < size {
                credit[target] += weights[target]
                while credit[target] >= heaviest, filled < size {
                    credit[target] -= heaviest
                    var slot = (offsets[target] + next[target] * skips[target]) % size
                    while table[slot] >= 0 {
                        next[target] += 1
                        slot = (offsets[target] + next[target] * skips[target]) % size
                    }
                    table[slot] = Int32(target)
                    next[target] += 1
                    filled += 1
                }
            }
        }
        self.table = table
    }

    /// The target for `hash` among eligible targets (`eligible[i]`), skipping targets over the load bound.
    /// Nil when no target is eligible.
    public func pick(hash: UInt64, eligible: [Bool], active: [Int]) -> Int? {
        var eligibleCount = 0
        var totalActive = 0
        for index in eligible.indices where eligible[index] {
            eligibleCount += 1
            totalActive += active[index]
        }
        guard eligibleCount > 0 else { return nil }
        let bound = Int((loadFactor * Double(totalActive + 1) / Double(eligibleCount)).rounded(.up))
        var slot = Int(hash % UInt64(table.count))
        var firstEligible: Int?
        for _ in 0..<table.count {
            let target = Int(table[slot])
            if eligible[target] {
                if active[target] < bound { return target }
                if firstEligible == nil { firstEligible = target }
            }
            slot = slot + 1 == table.count ? 0 : slot + 1
        }
        return firstEligible
    }
}
