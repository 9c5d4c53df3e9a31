// SPDX-License-Identifier: Apache-2.0
import Glibc
import JesterConfig
import JesterCore
import JesterMetrics
import JesterSystem
import NIOCore
import NIOEmbedded
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

    @Test func streamsBytesAndHandshakesAreCountedPerListener() throws {
        let (metrics, table, registry) = try metrics()
        let web = try #require(metrics.ids.listeners["web"])
        func value(_ family: MetricFamily, _ labels: [String]) -> Int64 {
            table.snapshot(for: registry).value(registry.id(family, labels))
        }
        for _ in 0..<3 { metrics.streamOpened(listener: web, protocol: .http2) }
        metrics.streamClosed(listener: web, protocol: .http2)
        #expect(value(MetricCatalog.activeStreams, ["web", "http2"]) == 2)
        // The connection went with its last two streams; a later call with none left changes nothing.
        metrics.streamClosed(listener: web, protocol: .http2, count: 2)
        metrics.streamClosed(listener: web, protocol: .http2, count: 0)
        #expect(value(MetricCatalog.activeStreams, ["web", "http2"]) == 0)
        metrics.bytesRelayed(listener: web, received: 10, sent: 0)
        metrics.bytesRelayed(listener: web, received: 0, sent: 7)
        #expect(value(MetricCatalog.receivedBytes, ["web", "tcp"]) == 10)
        #expect(value(MetricCatalog.sentBytes, ["web", "tcp"]) == 7)
        #expect(value(MetricCatalog.receivedBytes, ["web", "http1"]) == 0)
        metrics.tlsHandshake(listener: web, failed: false)
        metrics.tlsHandshake(listener: web, failed: false)
        metrics.tlsHandshake(listener: web, failed: true)
        #expect(value(MetricCatalog.tlsHandshakes, ["web"]) == 2)
        #expect(value(MetricCatalog.tlsHandshakeFailures, ["web"]) == 1)
    }

    @Test func aPoolsBreakerMovesEveryTargetsStateAndEjectionsCountPerTarget() throws {
        var configuration = Self.configuration()
        configuration.upstreams = [UpstreamSettings(name: "app", targets: [
            UpstreamTarget(address: SocketAddressSpec(host: "10.0.0.1", port: 80)),
            UpstreamTarget(address: SocketAddressSpec(host: "10.0.0.2", port: 80)),
        ])]
        let table = try MetricsTable.create(
            partitions: 3, cumulativeWords: 8192, gaugeWords: 1024, directoryBytes: 1 << 18)
        var registry = try table.registry()
        registry.register(configuration)
        table.publishDirectory(registry.directory)
        table.partitionClaimed(1)
        let metrics = try WorkerMetrics.attach(fd: dup(table.fd), partition: 1, configuration: configuration)
        let pool = try #require(metrics.pool("app"))
        #expect(metrics.pool("nowhere") == nil)
        func state(_ target: String, _ state: String) -> Int64 {
            table.snapshot(for: registry).value(registry.id(MetricCatalog.circuitState, ["app", target, state]))
        }
        pool.circuit(.closed)  // no change: nothing moves
        #expect(state("10.0.0.1:80", "closed") == 1 && state("10.0.0.2:80", "closed") == 1)
        pool.circuit(.open(until: 5))
        pool.circuit(.open(until: 5))
        for target in ["10.0.0.1:80", "10.0.0.2:80"] {
            #expect(state(target, "closed") == 0 && state(target, "open") == 1 && state(target, "half_open") == 0)
        }
        pool.circuit(.halfOpen(admitted: 1, succeeded: 0))
        pool.circuit(.halfOpen(admitted: 2, succeeded: 1))
        #expect(state("10.0.0.2:80", "open") == 0 && state("10.0.0.2:80", "half_open") == 1)
        pool.circuit(.closed)
        #expect(state("10.0.0.1:80", "closed") == 1 && state("10.0.0.1:80", "half_open") == 0)
        pool.ejected(1)
        pool.ejected(1)
        pool.ejected(7)  // no such target: ignored
        let snapshot = table.snapshot(for: registry)
        #expect(snapshot.value(registry.id(MetricCatalog.ejections, ["app", "10.0.0.2:80"])) == 2)
        #expect(snapshot.value(registry.id(MetricCatalog.ejections, ["app", "10.0.0.1:80"])) == 0)
    }

    @Test func filterVerdictsAreCountedPerRouteAndFilterInChainOrder() throws {
        let configuration = try ConfigLoader(environment: [:]).load(text: """
            [[listeners]]
            name = "web"
            address = "127.0.0.1:8080"

            [filters.loopback]
            kind = "ip_rules"
            allow = ["127.0.0.0/8"]

            [filters.office]
            kind = "ip_rules"
            allow = ["10.0.0.0/8"]

            [[routes]]
            name = "open"
            path_prefix = "/open"
            filters = ["loopback"]
            respond = { status = 200 }

            [[routes]]
            name = "closed"
            path_prefix = "/closed"
            filters = ["loopback", "office"]
            respond = { status = 200 }
            """, file: "test.toml")
        let table = try MetricsTable.create(
            partitions: 3, cumulativeWords: 8192, gaugeWords: 1024, directoryBytes: 1 << 18)
        var registry = try table.registry()
        registry.register(configuration)
        table.publishDirectory(registry.directory)
        table.partitionClaimed(1)
        let loop = EmbeddedEventLoop()
        let runtime = WorkerRuntime(configuration: configuration, eventLoop: loop, slot: 0)
        runtime.attachMetrics(try WorkerMetrics.attach(fd: dup(table.fd), partition: 1, configuration: configuration))
        #expect(runtime.filterMetrics.metrics === runtime.metrics)
        let channel = EmbeddedChannel(handler: DownstreamConnection(runtime: runtime, listener: "web"), loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
        for path in ["/open", "/open", "/closed"] {
            try channel.writeInbound(ByteBuffer(string: "GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n"))
        }
        func outcome(_ route: String, _ filter: String, _ outcome: String) -> Int64 {
            table.snapshot(for: registry).value(registry.id(MetricCatalog.filterOutcomes, [route, filter, outcome]))
        }
        #expect(outcome("open", "loopback", "proceed") == 2)
        #expect(outcome("closed", "loopback", "proceed") == 1)
        #expect(outcome("closed", "office", "fail") == 1)
        #expect(outcome("closed", "office", "proceed") == 0)
        #expect(outcome("open", "loopback", "fail") == 0)
        _ = try? channel.finish()
    }

    @Test func aPartitionOutOfRangeIsRefused() throws {
        let table = try MetricsTable.create(partitions: 2, cumulativeWords: 1024, gaugeWords: 64, directoryBytes: 1 << 14)
        #expect(throws: (any Error).self) {
            try WorkerMetrics.attach(fd: dup(table.fd), partition: 0, configuration: Self.configuration())
        }
    }
}
