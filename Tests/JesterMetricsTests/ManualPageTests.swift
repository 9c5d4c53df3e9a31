// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterMetrics
import Testing

/// jester-metrics(7) held to the catalog, as the configuration's pages are held to ConfigSchema: every family
/// documented with its type, unit, labels and help, no family documented that does not exist, and the buckets,
/// the limit and every fixed label value stated.
@Suite struct ManualPageTests {
    private static let page: String = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return (try? String(contentsOf: root.appendingPathComponent("Man/jester-metrics.7"), encoding: .utf8)) ?? ""
    }()

    /// Each `.B jester_…` entry of the FAMILIES section: the name, its "type; labels" line, and its text.
    private static func entries() -> [String: (meta: String, help: String)] {
        let lines = page.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var entries: [String: (String, String)] = [:]
        for (index, line) in lines.enumerated() where line.hasPrefix(".B jester_") && index + 2 < lines.count {
            let text = lines[(index + 2)...].prefix { !$0.hasPrefix(".") }.joined(separator: " ")
            entries[String(line.dropFirst(3))] = (lines[index + 1], text)
        }
        return entries
    }

    @Test func thePageExists() {
        #expect(Self.page.hasPrefix(".TH JESTER-METRICS 7"))
    }

    @Test(arguments: MetricCatalog.families.map(\.name))
    func everyFamilyIsDocumentedAsDeclared(name: String) throws {
        let family = try #require(MetricCatalog.family(named: name))
        // Histograms are named by their family; counters and gauges by their samples.
        let documented = family.type == .histogram ? family.name : family.sampleName
        let entry = try #require(Self.entries()[documented], "jester-metrics(7) does not document \(documented)")
        let unit = family.unit == .none ? "" : ", unit \(family.unit.rawValue)"
        let labels = family.labels.isEmpty ? "no labels." : "labels: " + family.labels.map(\.rawValue)
            .joined(separator: ", ") + "."
        #expect(entry.meta == "\(family.type.rawValue)\(unit); \(labels)")
        #expect(entry.help == family.help)
    }

    @Test func noFamilyIsDocumentedThatDoesNotExist() {
        let declared = Set(MetricCatalog.families.map { $0.type == .histogram ? $0.name : $0.sampleName })
        #expect(Set(Self.entries().keys).subtracting(declared).isEmpty)
        #expect(Self.entries().count == MetricCatalog.families.count)
    }

    @Test func theBucketsTheLimitAndEveryFixedLabelValueAreStated() {
        let buckets = MetricCatalog.durationBuckets.map { $0 == $0.rounded() ? "\(Int($0))" : "\($0)" }
        #expect(Self.page.contains(buckets.joined(separator: ", ") + " and +Inf"))
        #expect(Self.page.contains("at most \(SeriesRegistry.defaultSeriesLimit) series"))
        #expect(Self.page.contains(MetricLabel.otherValue))
        for label in MetricLabel.allCases where label != .family {
            #expect(Self.page.contains(".B \(label.rawValue)") || Self.page.contains(" \(label.rawValue) "))
            for value in label.fixedValues ?? [] { #expect(Self.page.contains(value), "\(label): \(value)") }
        }
    }
}
