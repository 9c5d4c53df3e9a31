// SPDX-License-Identifier: Apache-2.0

/// The words of every partition summed at one scrape: what the exposition renders with a registry.
public struct MetricsSnapshot: Sendable, Equatable {
    /// Sums of the cumulative region (counters, histogram buckets and sums), indexed by `SeriesID.word`.
    public var cumulative: [Int64]
    /// Sums of the gauge region.
    public var gauges: [Int64]

    public init(cumulative: [Int64], gauges: [Int64]) {
        self.cumulative = cumulative
        self.gauges = gauges
    }

    /// A snapshot of zeros sized for `registry` (tests, and filling in by hand).
    public init(sizedFor registry: SeriesRegistry) {
        self.init(
            cumulative: Array(repeating: 0, count: registry.cumulativeWordsUsed),
            gauges: Array(repeating: 0, count: registry.gaugeWordsUsed))
    }

    /// The value of `id`'s word `offset` (0 for a word past the snapshot: registered after it was taken).
    public func value(_ id: SeriesID, offset: Int = 0) -> Int64 {
        let words = id.region == .cumulative ? cumulative : gauges
        let index = id.word + offset
        return index < words.count ? words[index] : 0
    }

    /// Adds `value` to `id`'s word `offset`, as a process's increment would (tests and the exposition's golden
    /// files build snapshots with it).
    public mutating func add(_ id: SeriesID, _ value: Int64, offset: Int = 0) {
        switch id.region {
        case .cumulative: cumulative[id.word + offset] += value
        case .gauge: gauges[id.word + offset] += value
        }
    }

    /// Counts one observation of `nanoseconds` in histogram `id` of `family`, as `MetricsTable` does.
    public mutating func observe(_ id: SeriesID, nanoseconds: Int64, family: MetricFamily) {
        add(id, 1, offset: HistogramBuckets.index(of: nanoseconds, in: HistogramBuckets.nanoseconds(family.buckets)))
        add(id, nanoseconds, offset: family.buckets.count + 1)
    }
}

/// Histogram bucket arithmetic in integer nanoseconds: the hot path compares integers, never floats.
public enum HistogramBuckets {
    /// The duration buckets' upper bounds in nanoseconds (`MetricCatalog.durationBuckets`).
    public static let durationNanoseconds: [Int64] = nanoseconds(MetricCatalog.durationBuckets)
    /// The policy-call buckets' bounds (`MetricCatalog.policyBuckets`).
    public static let policyNanoseconds: [Int64] = nanoseconds(MetricCatalog.policyBuckets)

    /// Bounds in seconds as nanoseconds.
    public static func nanoseconds(_ seconds: [Double]) -> [Int64] {
        seconds.map { Int64(($0 * 1e9).rounded()) }
    }

    /// The bucket `value` falls in: the first whose bound is ≥ it (Prometheus's `le`), or `bounds.count` (+Inf).
    @inlinable
    public static func index(of value: Int64, in bounds: [Int64]) -> Int {
        // Eleven bounds: a linear scan beats a binary search, and most requests stop in the first few.
        var index = 0
        while index < bounds.count, value > bounds[index] { index += 1 }
        return index
    }
}
