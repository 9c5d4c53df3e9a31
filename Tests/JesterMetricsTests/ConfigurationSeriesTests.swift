// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import Testing

@testable import JesterMetrics

/// The label sets a configuration registers, and the ids a worker resolves from them.
struct ConfigurationSeriesTests {
    /// Two listeners (one TLS without HTTP/2, one TCP), a proxy route with a filter, a split route, a local one.
    static func configuration() -> Configuration {
        var configuration = Configuration()
        var web = ListenerSettings(name: "web", address: SocketAddressSpec(host: "127.0.0.1", port: 8080))
        web.filters = ["limit"]
        var secure = ListenerSettings(name: "secure", address: SocketAddressSpec(host: "127.0.0.1", port: 8443))
        secure.http2 = false
        secure.tls = TLSListenerSettings()
        var relay = ListenerSettings(name: "relay", address: SocketAddressSpec(host: "127.0.0.1", port: 9000))
        relay.protocolName = "tcp"
        relay.upstream = "app"
        configuration.listeners = [web, secure, relay]
        configuration.upstreams = [
            UpstreamSettings(name: "app", targets: [
                UpstreamTarget(address: SocketAddressSpec(host: "10.0.0.1", port: 80)),
                UpstreamTarget(address: SocketAddressSpec(host: "10.0.0.2", port: 80)),
            ]),
            UpstreamSettings(
                name: "canary", targets: [UpstreamTarget(address: SocketAddressSpec(host: "10.0.0.3", port: 80))]),
        ]
        configuration.filters = [FilterSettings(name: "limit", kind: .rateLimit(RateLimitSettings(rate: 10)))]
        configuration.routes = [
            RouteSettings(name: "api", listeners: ["web"], action: .proxy(upstream: "app")),
            RouteSettings(name: "split", action: .split(targets: [
                SplitTarget(upstream: "app", weight: 9), SplitTarget(upstream: "canary", weight: 1),
                SplitTarget(upstream: "app", weight: 1),
            ], key: nil)),
            RouteSettings(name: "hello", listeners: ["secure"], action: .respond(status: 200, headers: [], body: "hi")),
        ]
        return configuration
    }

    func labels(_ sets: [ConfigurationSeries.LabelSet], _ family: MetricFamily) -> Set<[String]> {
        Set(sets.filter { $0.family == family }.map(\.labels))
    }

    @Test func listenersGetTheirProtocolsAndTLSHandshakes() {
        let sets = ConfigurationSeries(Self.configuration()).labelSets
        #expect(labels(sets, MetricCatalog.connections) == [
            ["web", "http1"], ["web", "http2"], ["secure", "http1"], ["relay", "tcp"],
        ])
        #expect(labels(sets, MetricCatalog.activeStreams) == [["web", "http2"]])
        #expect(labels(sets, MetricCatalog.tlsHandshakes) == [["secure"]])
        #expect(labels(sets, MetricCatalog.tlsHandshakeFailures) == [["secure"]])
    }

    @Test func requestsCoverEveryRouteUpstreamAndTargetAndTheEmptyOnes() {
        let sets = ConfigurationSeries(Self.configuration()).labelSets
        let requests = labels(sets, MetricCatalog.requests)
        // Each (listener, route, upstream, target) comes with every protocol of the listener and status class.
        let shapes = Set(requests.map { Array($0.prefix(4)) })
        #expect(shapes == [
            ["web", "", "", ""], ["web", "api", "app", ""], ["web", "api", "app", "10.0.0.1:80"],
            ["web", "api", "app", "10.0.0.2:80"], ["web", "split", "app", ""], ["web", "split", "app", "10.0.0.1:80"],
            ["web", "split", "app", "10.0.0.2:80"], ["web", "split", "canary", ""],
            ["web", "split", "canary", "10.0.0.3:80"],
            ["secure", "", "", ""], ["secure", "split", "app", ""], ["secure", "split", "app", "10.0.0.1:80"],
            ["secure", "split", "app", "10.0.0.2:80"], ["secure", "split", "canary", ""],
            ["secure", "split", "canary", "10.0.0.3:80"], ["secure", "hello", "", ""],
        ])
        #expect(requests.count == (9 * 2 + 7 * 1) * 5)
        #expect(!requests.contains { $0[0] == "relay" })
        #expect(labels(sets, MetricCatalog.retries) == [["api", "app"], ["split", "app"], ["split", "canary"]])
        // The listener's filter runs on its routes only.
        #expect(labels(sets, MetricCatalog.filterOutcomes) == Set(["api", "split"].flatMap { route in
            ["proceed", "respond", "fail"].map { [route, "limit", $0] }
        }))
        #expect(labels(sets, MetricCatalog.circuitState).count == 3 * 3)
        #expect(labels(sets, MetricCatalog.targetHealthy).isEmpty)
    }

    @Test func registeringAgainAddsNothingAndAReloadOnlyAppends() throws {
        var registry = try SeriesRegistry()
        registry.register(Self.configuration())
        let before = registry.series
        registry.register(Self.configuration())
        #expect(registry.series == before)
        var changed = Self.configuration()
        changed.routes.append(RouteSettings(name: "new", listeners: ["web"], action: .proxy(upstream: "canary")))
        registry.register(changed)
        #expect(Array(registry.series.prefix(before.count)) == before)
        #expect(registry.series.count > before.count)
        #expect(registry.foldedCounts.isEmpty)
    }

    @Test func aWorkerResolvesEveryIdTheMasterRegistered() throws {
        var master = try SeriesRegistry()
        master.register(Self.configuration())
        // A worker reads the published directory.
        let worker = try SeriesRegistry(directory: master.directory)
        let ids = ConfigurationMetricIDs(Self.configuration(), registry: worker)
        let others = Set(MetricCatalog.families.filter { !$0.labels.isEmpty }.map {
            worker.id($0, Array(repeating: MetricLabel.otherValue, count: $0.labels.count))
        })
        let web = try #require(ids.listeners["web"])
        #expect(!others.contains(web.connections[MetricProtocol.http2.index]))
        #expect(others.contains(web.connections[MetricProtocol.tcp.index]))  // web serves no tcp: other
        let api = try #require(ids.route("api", listener: "web"))
        let target = try #require(ids.targets["app"]?[1])
        #expect(target.target == "10.0.0.2:80")
        let grid = api.grid(target: target, upstream: "app")
        let answered = try #require(grid.id(protocol: .http2, status: 503))
        #expect(answered == master.id(MetricCatalog.requests, ["web", "api", "app", "10.0.0.2:80", "http2", "5xx"]))
        #expect(grid.id(protocol: .http1, status: 0) == nil)
        let noTarget = try #require(api.grid(target: nil, upstream: "app").id(protocol: .http1, status: 502))
        #expect(noTarget == master.id(MetricCatalog.requests, ["web", "api", "app", "", "http1", "5xx"]))
        let noRoute = try #require(web.noRoute.local.id(protocol: .http1, status: 404))
        #expect(noRoute == master.id(MetricCatalog.requests, ["web", "", "", "", "http1", "4xx"]))
        #expect(api.filterNames == ["limit"])
        #expect(api.filters[0][2] == master.id(MetricCatalog.filterOutcomes, ["api", "limit", "fail"]))
        #expect(ids.route("hello", listener: "web") == nil)
        // Every grid id of every route is registered, none folded into other.
        for routes in ids.routes.values {
            for route in routes.values {
                let grids = [route.local] + Array(route.noTarget.values) + Array(route.byTarget.values)
                #expect(!others.contains(route.duration))
                #expect(grids.contains { grid in grid.ids.contains { !others.contains($0) } })
            }
        }
    }
}
