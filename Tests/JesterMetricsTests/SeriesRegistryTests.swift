// SPDX-License-Identifier: Apache-2.0
import JesterMetrics
import Testing

/// Series ids: assigned append-only, bounded per family, and the same in every process that reads the directory.
@Suite struct SeriesRegistryTests {
    private let requests = MetricCatalog.requests

    private func labels(route: String, target: String = "10.0.0.1:80", status: StatusClass = .success) -> [String] {
        ["web", route, "app", target, MetricProtocol.http1.rawValue, status.rawValue]
    }

    @Test func everyFamilyHasItsBuiltInSeriesFromTheStart() throws {
        let registry = try SeriesRegistry()
        // Unlabelled: its one series. All labels fixed: every combination. Labelled: an `other` series.
        #expect(registry.series(of: MetricCatalog.generation).map(\.labels) == [[]])
        #expect(registry.series(of: MetricCatalog.reloads).map(\.labels) == [["other"], ["success"], ["failure"]])
        #expect(registry.series(of: MetricCatalog.seriesFolded).count == MetricCatalog.families.count + 1)
        #expect(registry.series(of: requests).map(\.isOther) == [true])
        // Gauges and counters live in their own regions, each word given once.
        #expect(registry.series(of: MetricCatalog.generation)[0].id.region == .gauge)
        var taken: [SeriesID.Region: Set<Int>] = [:]
        for series in registry.series {
            for word in series.id.word..<series.id.word + series.family.width {
                #expect(taken[series.id.region, default: []].insert(word).inserted)
            }
        }
        #expect(registry.cumulativeWordsUsed == taken[.cumulative]?.count)
        #expect(registry.gaugeWordsUsed == taken[.gauge]?.count)
    }

    @Test func registeringIsIdempotentAndAppendOnly() throws {
        var registry = try SeriesRegistry()
        let api = registry.register(requests, labels(route: "api"))
        let used = registry.cumulativeWordsUsed
        #expect(registry.register(requests, labels(route: "api")) == api)
        #expect(registry.cumulativeWordsUsed == used)
        let histogram = registry.register(MetricCatalog.requestDuration, ["web", "api"])
        #expect(histogram.word == used && registry.cumulativeWordsUsed == used + 13)
        #expect(registry.id(requests, labels(route: "api")) == api)
    }

    @Test func aReloadAppendsAndOldIdsKeepTheirWords() throws {
        // Generation 1 has routes a and b; generation 2 drops b and adds c. Every process of either generation
        // decodes the same directory, so ids agree; b keeps its words for its draining workers and its totals.
        var master = try SeriesRegistry()
        let a = master.register(requests, labels(route: "a"))
        let b = master.register(requests, labels(route: "b"))
        let generation1 = try SeriesRegistry(directory: master.directory)
        let c = master.register(requests, labels(route: "c"))
        let generation2 = try SeriesRegistry(directory: master.directory)
        #expect(generation1.id(requests, labels(route: "a")) == a && generation1.id(requests, labels(route: "b")) == b)
        #expect(generation2.id(requests, labels(route: "a")) == a && generation2.id(requests, labels(route: "b")) == b)
        #expect(generation2.id(requests, labels(route: "c")) == c && Set([a, b, c]).count == 3)
        // A route an older generation never had is counted under `other` there, not in another's words.
        let other = generation1.id(requests, Array(repeating: "other", count: 6))
        #expect(generation1.id(requests, labels(route: "c")) == other)
        // Decoding re-encodes to the same bytes: a new binary appends after them.
        #expect(generation2.directory == master.directory)
        #expect(generation2.cumulativeWordsUsed == master.cumulativeWordsUsed)
    }

    @Test func labelSetsPastTheLimitAreFoldedIntoOtherAndCounted() throws {
        var registry = try SeriesRegistry(seriesLimit: 3)
        let other = registry.id(requests, Array(repeating: "other", count: 6))
        let kept = (0..<3).map { registry.register(requests, labels(route: "r\($0)")) }
        #expect(!kept.contains(other))
        let used = registry.cumulativeWordsUsed
        #expect(registry.register(requests, labels(route: "r3")) == other)
        #expect(registry.register(requests, labels(route: "r4")) == other)
        #expect(registry.register(requests, labels(route: "r3")) == other)  // once folded, counted once
        #expect(registry.foldedCounts == [requests.name: 2] && registry.cumulativeWordsUsed == used)
        // Other families have their own limit.
        let otherRetries = registry.id(MetricCatalog.retries, ["other", "other"])
        #expect(registry.register(MetricCatalog.retries, ["r0", "app"]) != otherRetries)
        // The folds are in the directory: a worker's registry maps them to other, and a new binary counts them.
        let decoded = try SeriesRegistry(directory: registry.directory, seriesLimit: 3)
        #expect(decoded.id(requests, labels(route: "r4")) == other && decoded.foldedCounts == [requests.name: 2])
    }

    @Test func aFullRegionFoldsToo() throws {
        // Room for the built-in series and two more counters: the third label set is folded.
        let builtIn = try SeriesRegistry().cumulativeWordsUsed
        var registry = try SeriesRegistry(cumulativeCapacity: builtIn + 2)
        let other = registry.id(requests, Array(repeating: "other", count: 6))
        #expect(registry.register(requests, labels(route: "a")) != other)
        #expect(registry.register(requests, labels(route: "b")) != other)
        #expect(registry.register(requests, labels(route: "c")) == other)
        #expect(registry.register(MetricCatalog.requestDuration, ["web", "a"]) == registry.id(
            MetricCatalog.requestDuration, ["other", "other"]))
        #expect(registry.foldedCounts == [requests.name: 1, MetricCatalog.requestDuration.name: 1])
        #expect(registry.cumulativeWordsUsed == builtIn + 2)
    }

    @Test func aDirectoryFromAnotherCatalogKeepsItsWordsReserved() throws {
        // A record of a family this binary does not know (an upgrade from a newer one, or a removed family):
        // skipped, and its words are never handed to another series.
        var bytes: [UInt8] = [1, 0, 0, 0, 0, 0, 4, 0]  // a series, cumulative, word 0, width 4
        let name = Array("jester_gone_things".utf8)
        bytes += [UInt8(name.count), 0] + name + [0]
        let registry = try SeriesRegistry(directory: bytes)
        #expect(registry.series.allSatisfy { $0.id.region == .gauge || $0.id.word >= 4 })
        #expect(registry.directory.starts(with: bytes))
    }

    @Test func aDamagedDirectoryIsRefused() throws {
        var registry = try SeriesRegistry()
        registry.register(requests, labels(route: "a"))
        // Cut inside a record.
        #expect(throws: MetricsDirectoryError.self) {
            try SeriesRegistry(directory: Array(registry.directory.dropLast(3)))
        }
        // An unknown record kind.
        #expect(throws: MetricsDirectoryError.self) { try SeriesRegistry(directory: [9, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]) }
        // Words past the region: they would be another partition's.
        #expect(throws: MetricsDirectoryError.self) {
            try SeriesRegistry(directory: registry.directory, cumulativeCapacity: 10)
        }
    }
}
