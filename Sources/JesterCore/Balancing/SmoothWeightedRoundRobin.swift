// SPDX-License-Identifier: Apache-2.0
/// Weighted round-robin that interleaves instead of bursting (nginx's "smooth" algorithm): with weights 5, 1, 1
/// the order is a a b a c a a, not a a a a a b c.
///
/// Each pick adds every candidate's weight to its running score, takes the highest score and subtracts the
/// candidates' total from it. Over any window of total-weight picks each candidate is chosen exactly its weight
/// times, and only candidates take part, so a target that becomes ineligible simply stops accruing.
public struct SmoothWeightedRoundRobin: Sendable {
    private var scores: [Int]

    public init(targetCount: Int) {
        scores = Array(repeating: 0, count: targetCount)
    }

    /// One of `candidates` (indices into `weights`, not empty).
    public mutating func pick(from candidates: [Int], weights: [Int]) -> Int {
        var total = 0
        var best = candidates[0]
        var bestScore = Int.min
        for index in candidates {
            scores[index] += weights[index]
            total += weights[index]
            if scores[index] > bestScore {
                bestScore = scores[index]
                best = index
            }
        }
        scores[best] -= total
        return best
    }
}
