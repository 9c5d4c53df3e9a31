// SPDX-License-Identifier: Apache-2.0
import Glibc
import JesterConfig
import JesterMetrics
import JesterSystem
import Testing

@testable import JesterProxy

/// A worker's counting: ids found from the directory the master published, connections counted once under
/// the protocol they end up with, gauges back to zero when they close.
struct WorkerMetricsTests {
    final class Connection {}

    static func configuration() -> Configuration {
        var configuration = Configuration()
        configuration.listeners = [
            ListenerSettings(name: "web", address: SocketAddressSpec(host: "127.0.0.1", port: 80))]
        configuration.upstreams = [UpstreamSettings(name: "app", targets: [
            UpstreamTarget(address: SocketAddressSpec(host: "10.0.0.1", port: 80))])]
        configuration.routes = [RouteSettings(name: "api", action: .proxy(upstream: "app"))]
        return configuration
    }

    func metrics() throws -> (WorkerMetrics, MetricsTable, SeriesRegistry) {
        let table = try MetricsTable.create(
            partitions: 3, cumulativeWords: 8192, gaugeWords: 1024, directoryBytes: 1 << 18)
        var registry = try table.registry()
        registry.register(Self.configuration())
        table.publishDirectory(registry.directory)
        table.partitionClaimed(1)
        let worker = try WorkerMetrics.attach(fd: dup(table.fd), partition: 1, configuration: Self.configuration())
        return (worker, table, registry)
    }

    @Test func connectionsAreCountedUnderTheProtocolTheyEndUpWith() throws {
        let (metrics, table, registry) = try metrics()
        let web = try #require(metrics.ids.listeners["web"])
        let first = Connection(), second = Connection(), upgraded = Connection()
        metrics.connectionOpened(first, listener: web, protocol: .http1, settled: false)
        metrics.connectionOpened(second, listener: web, protocol: .http1, settled: false)
        func value(_ family: MetricFamily, _ proto: String) -> Int64 {
            table.snapshot(for: registry).value(registry.id(family, ["web", proto]))
        }
        #expect(value(MetricCatalog.activeConnections, "http1") == 2)
        #expect(value(MetricCatalog.connections, "http1") == 0)  // not known yet
        metrics.connectionTransferred(from: second, to: upgraded, protocol: .http2)
        #expect(value(MetricCatalog.activeConnections, "http1") == 1)
        #expect(value(MetricCatalog.activeConnections, "http2") == 1)
        #expect(value(MetricCatalog.connections, "http2") == 1)
        metrics.connectionSettled(first)
        metrics.connectionSettled(first)
        #expect(value(MetricCatalog.connections, "http1") == 1)
        metrics.connectionClosed(first)
        metrics.connectionClosed(upgraded)
        metrics.connectionClosed(upgraded)  // twice: no harm
        #expect(value(MetricCatalog.activeConnections, "http1") == 0)
        #expect(value(MetricCatalog.activeConnections, "http2") == 0)
        #expect(value(MetricCatalog.connections, "http1") == 1)
        #expect(metrics.openConnections == 0)
    }

    @Test func aRequestCountsInItsTargetsSeries() throws {
        let (metrics, table, registry) = try metrics()
        let web = try #require(metrics.ids.listeners["web"])
        let route = try #require(metrics.ids.route("api", listener: "web"))
        let target = try #require(metrics.ids.targets["app"]?.first)
        metrics.requestFinished(listener: web, route: route, target: target, protocol: .http1, status: 204,
            durationNanoseconds: 3_000_000, bytesIn: 100, bytesOut: 50)
        metrics.requestFinished(listener: web, route: nil, target: nil, protocol: .http1, status: 404,
            durationNanoseconds: 1_000, bytesIn: 10, bytesOut: 0)
        let snapshot = table.snapshot(for: registry)
        let answered = registry.id(MetricCatalog.requests, ["web", "api", "app", "10.0.0.1:80", "http1", "2xx"])
        #expect(snapshot.value(answered) == 1)
        #expect(snapshot.value(registry.id(MetricCatalog.requests, ["web", "", "", "", "http1", "4xx"])) == 1)
        #expect(snapshot.value(registry.id(MetricCatalog.receivedBytes, ["web", "http1"])) == 110)
        // 3 ms falls in the first bucket (5 ms).
        #expect(snapshot.value(registry.id(MetricCatalog.requestDuration, ["web", "api"]), offset: 0) == 1)
        #expect(snapshot.value(registry.id(MetricCatalog.circuitState, ["app", "10.0.0.1:80", "closed"])) == 1)
    }

    @Test func aPartitionOutOfRangeIsRefused() throws {
        let table = try MetricsTable.create(partitions: 2, cumulativeWords: 1024, gaugeWords: 64, directoryBytes: 4096)
        #expect(throws: (any Error).self) {
            try WorkerMetrics.attach(fd: dup(table.fd), partition: 0, configuration: Self.configuration())
        }
    }
}
