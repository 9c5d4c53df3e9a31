// SPDX-License-Identifier: Apache-2.0
import Foundation
@testable import JesterMetrics
import Testing

/// A registry as the master would hold it after one configuration, with values in every kind of series.
func populatedExposition() throws -> (SeriesRegistry, MetricsSnapshot) {
    var registry = try SeriesRegistry(seriesLimit: 4)
    let ok = registry.register(MetricCatalog.requests, ["web", "api", "app", "10.0.0.1:80", "http1", "2xx"])
    let failed = registry.register(MetricCatalog.requests, ["web", "api", "app", "10.0.0.1:80", "http2", "5xx"])
    // A route name with every character that needs escaping in a label value.
    let odd = registry.register(MetricCatalog.requests, ["web", "say \"hi\"\\\n", "app", "10.0.0.2:80", "http1", "4xx"])
    let duration = registry.register(MetricCatalog.requestDuration, ["web", "api"])
    let active = registry.register(MetricCatalog.activeConnections, ["web", "http1"])
    let healthy = registry.register(MetricCatalog.targetHealthy, ["app", "10.0.0.1:80"])
    let open = registry.register(MetricCatalog.circuitState, ["app", "10.0.0.1:80", "open"])
    let sent = registry.register(MetricCatalog.sentBytes, ["web", "http1"])
    // Two more than the limit of 4 (the fourth is the one above's neighbour): folded into other.
    let spare = registry.register(MetricCatalog.requests, ["web", "static", "app", "10.0.0.1:80", "http1", "2xx"])
    let folded = registry.register(MetricCatalog.requests, ["web", "late", "app", "10.0.0.1:80", "http1", "2xx"])
    let folded2 = registry.register(MetricCatalog.requests, ["web", "later", "app", "10.0.0.1:80", "http1", "3xx"])
    #expect(folded == folded2 && folded == registry.id(MetricCatalog.requests, Array(repeating: "other", count: 6)))
    var snapshot = MetricsSnapshot(sizedFor: registry)
    snapshot.add(ok, 41)
    snapshot.add(failed, 2)
    snapshot.add(odd, 1)
    snapshot.add(spare, 0)
    snapshot.add(folded, 3)
    // 2 ms, 30 ms, 30 ms and 12 s: buckets 0.005, 0.05, 0.05, +Inf.
    for milliseconds: Int64 in [2, 30, 30, 12_000] {
        snapshot.observe(duration, nanoseconds: milliseconds * 1_000_000, family: MetricCatalog.requestDuration)
    }
    snapshot.add(active, 7)
    snapshot.add(healthy, 1)
    snapshot.add(open, 2)
    snapshot.add(sent, 1_234_567)
    snapshot.add(registry.id(MetricCatalog.reloads, ["success"]), 3)
    snapshot.add(registry.id(MetricCatalog.generation, []), 4)
    return (registry, snapshot)
}

/// Both exposition formats, held to golden files (Golden/): what a scraper reads, byte for byte.
@Suite struct ExpositionTests {
    private static let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Golden")

    private func check(_ format: ExpositionFormat, file: String) throws {
        let (registry, snapshot) = try populatedExposition()
        let text = MetricsExposition.render(registry, snapshot, format: format)
        let url = Self.golden.appendingPathComponent(file)
        // JESTER_UPDATE_GOLDEN=1 writes the files afresh; the diff is then reviewed like code.
        if ProcessInfo.processInfo.environment["JESTER_UPDATE_GOLDEN"] == "1" {
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
        let expected = try String(contentsOf: url, encoding: .utf8)
        #expect(text == expected)
    }

    @Test func prometheusTextMatchesItsGoldenFile() throws {
        try check(.prometheusText, file: "exposition.prom")
    }

    @Test func openMetricsMatchesItsGoldenFile() throws {
        try check(.openMetrics, file: "exposition.openmetrics")
    }

    @Test func theFormatsDifferWhereTheSpecificationsDo() throws {
        let (registry, snapshot) = try populatedExposition()
        let text = MetricsExposition.render(registry, snapshot, format: .prometheusText)
        let open = MetricsExposition.render(registry, snapshot, format: .openMetrics)
        // 0.0.4 names a counter's family with _total; OpenMetrics without, its samples with.
        #expect(text.contains("# TYPE jester_http_requests_total counter\n"))
        #expect(open.contains("# TYPE jester_http_requests counter\n"))
        #expect(open.contains("\njester_http_requests_total{listener=\"web\""))
        // Units are declared in OpenMetrics only; only it ends with # EOF.
        #expect(open.contains("# UNIT jester_downstream_sent_bytes bytes\n") && !text.contains("# UNIT"))
        #expect(open.hasSuffix("# EOF\n") && !text.contains("# EOF"))
        // The cumulative buckets end at +Inf with the count; the sum is in seconds.
        #expect(text.contains(
            "jester_http_request_duration_seconds_bucket{listener=\"web\",route=\"api\",le=\"+Inf\"} 4\n"))
        #expect(text.contains("jester_http_request_duration_seconds_sum{listener=\"web\",route=\"api\"} 12.062\n"))
        #expect(text.contains("jester_http_request_duration_seconds_count{listener=\"web\",route=\"api\"} 4\n"))
        // Escaped label values; the folded count; an empty other series left out, a non-empty one kept.
        #expect(text.contains("route=\"say \\\"hi\\\"\\\\\\n\""))
        #expect(text.contains("jester_metrics_series_folded_total{family=\"jester_http_requests\"} 2\n"))
        #expect(text.contains("jester_http_requests_total{listener=\"other\""))
        #expect(!text.contains("jester_upstream_retries_total{route=\"other\""))
    }

    @Test func helpAndLabelValuesAreEscapedPerFormat() throws {
        // 0.0.4 escapes backslash and newline in help; OpenMetrics double quotes too; label values all three.
        #expect(MetricsExposition.escapeHelp("a \\ b\n\"c\"", quotes: false) == "a \\\\ b\\n\"c\"")
        #expect(MetricsExposition.escapeHelp("a \\ b\n\"c\"", quotes: true) == "a \\\\ b\\n\\\"c\\\"")
        #expect(MetricsExposition.escapeLabel("plain") == "plain")
        #expect(MetricsExposition.escapeLabel("x\"\\\n") == "x\\\"\\\\\\n")
        // A snapshot taken before a series was registered reads it as zero rather than failing.
        let text = MetricsExposition.render(try SeriesRegistry(), MetricsSnapshot(cumulative: [], gauges: []),
            format: .prometheusText)
        #expect(text.contains("jester_master_generation 0\n"))
    }
}
