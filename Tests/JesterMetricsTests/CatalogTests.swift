// SPDX-License-Identifier: Apache-2.0
import JesterMetrics
import Testing

/// The catalog: Prometheus naming conventions, held for every family.
@Suite struct CatalogTests {
    @Test(arguments: MetricCatalog.families.map(\.name))
    func namesFollowPrometheusConventions(name: String) throws {
        let family = try #require(MetricCatalog.family(named: name))
        // jester_<subsystem>_<name>[_<unit>]: lowercase words joined by underscores, at least three of them.
        let words = name.split(separator: "_", omittingEmptySubsequences: false)
        #expect(words.count >= 3 && words.first == "jester")
        #expect(words.allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.isLowercase || $0.isNumber } })
        #expect(family.sampleName == (family.type == .counter ? name + "_total" : name))
        // Base units only, and the unit last (Prometheus: seconds not milliseconds, bytes not kilobytes).
        for wrong in ["milliseconds", "microseconds", "kilobytes", "millis", "ms"] {
            #expect(!words.contains(Substring(wrong)))
        }
        if family.unit != .none { #expect(name.hasSuffix("_" + family.unit.rawValue)) }
        if family.type == .histogram {
            // Durations share Prometheus's default buckets; policy calls, which take microseconds, finer ones.
            let buckets = family == MetricCatalog.policyDuration ? MetricCatalog.policyBuckets : MetricCatalog.durationBuckets
            #expect(family.unit == .seconds && family.buckets == buckets)
        }
        #expect(!family.help.isEmpty && family.help.hasSuffix("."))
        // A label appears once, and `le` is the histogram's own.
        #expect(Set(family.labels).count == family.labels.count)
    }

    @Test func namesAreUniqueIncludingTheSamplesTheyMake() {
        var names: [String] = []
        for family in MetricCatalog.families {
            switch family.type {
            case .histogram: names += ["_bucket", "_sum", "_count"].map { family.name + $0 }
            case .counter, .gauge: names.append(family.sampleName)
            }
        }
        #expect(Set(names).count == names.count)
    }

    @Test func theDurationBucketsAreTheOnesPrometheusUsersExpect() {
        // client_golang's DefBuckets: 5 ms to 10 s.
        #expect(MetricCatalog.durationBuckets == [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])
        #expect(HistogramBuckets.durationNanoseconds.first == 5_000_000)
        #expect(HistogramBuckets.durationNanoseconds.last == 10_000_000_000)
    }

    @Test func anObservationFallsInTheFirstBucketWhoseBoundIsNotBelowIt() {
        let bounds = HistogramBuckets.durationNanoseconds
        #expect(HistogramBuckets.index(of: 0, in: bounds) == 0)
        #expect(HistogramBuckets.index(of: 5_000_000, in: bounds) == 0)  // le: "less or equal"
        #expect(HistogramBuckets.index(of: 5_000_001, in: bounds) == 1)
        #expect(HistogramBuckets.index(of: 1_000_000_000, in: bounds) == 7)
        #expect(HistogramBuckets.index(of: 10_000_000_001, in: bounds) == 11)  // +Inf
        #expect(HistogramBuckets.index(of: .max, in: bounds) == bounds.count)
    }

    @Test func statusClassesCoverTheHundredsAndNothingElse() {
        #expect(StatusClass(status: 100) == .informational && StatusClass(status: 199) == .informational)
        #expect(StatusClass(status: 200) == .success && StatusClass(status: 304) == .redirection)
        #expect(StatusClass(status: 499) == .clientError && StatusClass(status: 599) == .serverError)
        #expect(StatusClass(status: 0) == nil && StatusClass(status: 99) == nil && StatusClass(status: 600) == nil)
        #expect(StatusClass.allCases.map(\.rawValue) == ["1xx", "2xx", "3xx", "4xx", "5xx"])
    }

    @Test func labelsWithoutFixedValuesAreTheConfigurationsNames() {
        let configured = MetricLabel.allCases.filter { $0.fixedValues == nil }
        #expect(configured == [.listener, .route, .upstream, .target, .filter, .policy, .counter])
        #expect(MetricLabel.family.fixedValues?.count == MetricCatalog.families.count)
    }
}
