// SPDX-License-Identifier: Apache-2.0
/// Weighted least-requests: the candidate with the fewest requests in flight per unit of weight, ties broken in
/// turn so that an idle pool still spreads its requests.
///
/// The counts are this worker's own: each worker balances the requests it holds, which is what a target
/// receives from it. With N workers the target sees the sum of N balanced streams, which is balanced too; a
/// shared count would cost a cross-process write per request for no better spread.
public struct LeastRequests: Sendable {
    private var rotation = 0

    public init() {}

    /// One of `candidates` (not empty); `active[i]` requests in flight on target i, `weights[i]` > 0.
    public mutating func pick(from candidates: [Int], active: [Int], weights: [Int]) -> Int {
        rotation &+= 1
        let count = candidates.count
        let start = rotation % count
        var best = candidates[start]
        for offset in 1..<max(count, 1) {
            let index = candidates[(start + offset) % count]
            // (active + 1) / weight, compared without division.
            if (active[index] + 1) * weights[best] < (active[best] + 1) * weights[index] { best = index }
        }
        return best
    }
}
