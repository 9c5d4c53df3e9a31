// SPDX-License-Identifier: Apache-2.0
import JesterConfig

/// The series ids of one configuration, resolved once by a worker (when its `WorkerRuntime` is made) so that
/// counting on the request path is an array index and an atomic add: no label strings, no registry.
///
/// The shapes are `ConfigurationSeries`'s; a label set the master did not register (a worker of a newer
/// configuration than the table's directory, which cannot happen while the master registers before it
/// spawns) resolves to the family's `other` series, never to nothing.
public struct ConfigurationMetricIDs: Sendable {
    /// By listener name.
    public let listeners: [String: ListenerMetricIDs]
    /// By listener name, then route name: a route's series carry the listener's name.
    public let routes: [String: [String: RouteMetricIDs]]
    /// By upstream name, in the pool's target order (the index a pool's target has).
    public let targets: [String: [TargetMetricIDs]]
    /// By policy name.
    public let policies: [String: PolicyMetricIDs]

    public init(_ configuration: Configuration, registry: SeriesRegistry) {
        var targets: [String: [TargetMetricIDs]] = [:]
        var index = 0
        for upstream in configuration.upstreams {
            targets[upstream.name] = upstream.targets.map { target in
                defer { index += 1 }
                return TargetMetricIDs(upstream: upstream.name, target: target.description, index: index, registry)
            }
        }
        var listeners: [String: ListenerMetricIDs] = [:]
        var routes: [String: [String: RouteMetricIDs]] = [:]
        for listener in configuration.listeners {
            let ids = ListenerMetricIDs(listener, registry)
            listeners[listener.name] = ids
            var byName: [String: RouteMetricIDs] = [:]
            for route in ConfigurationSeries.routes(on: listener, in: configuration) where byName[route.name] == nil {
                byName[route.name] = RouteMetricIDs(
                    listener: listener.name, route: route, configuration: configuration, targets: targets, registry)
            }
            routes[listener.name] = byName
        }
        self.listeners = listeners
        self.routes = routes
        self.targets = targets
        var policies: [String: PolicyMetricIDs] = [:]
        for (policy, _) in ConfigurationSeries.policyStages(configuration) {
            policies[policy] = PolicyMetricIDs(policy: policy, registry)
        }
        self.policies = policies
    }

    /// The route `route` of listener `listener` (nil: no such route there).
    public func route(_ route: String, listener: String) -> RouteMetricIDs? {
        routes[listener]?[route]
    }
}

/// One policy's ids: calls by stage and decision, call durations by stage, its instances' memory.
public struct PolicyMetricIDs: Sendable {
    /// Indexed by stage position (`PolicyStageName.allCases`) × decision count + decision position.
    public let calls: [SeriesID]
    /// Indexed by stage position.
    public let durations: [SeriesID]
    public let memory: SeriesID

    init(policy: String, _ registry: SeriesRegistry) {
        calls = PolicyStageName.allCases.flatMap { stage in
            PolicyDecision.allCases.map { registry.id(MetricCatalog.policyCalls, [policy, stage.rawValue, $0.rawValue]) }
        }
        durations = PolicyStageName.allCases.map { registry.id(MetricCatalog.policyDuration, [policy, $0.rawValue]) }
        memory = registry.id(MetricCatalog.policyMemory, [policy])
    }
}

/// A protocol's position in `MetricProtocol.allCases`: the index of per-protocol id arrays.
extension MetricProtocol {
    @inlinable
    public var index: Int {
        switch self {
        case .http1: 0
        case .http2: 1
        case .http3: 2
        case .tcp: 3
        }
    }
}

/// One listener's ids: connections and bytes per protocol, TLS handshakes, and the requests no route took.
public final class ListenerMetricIDs: Sendable {
    public let name: String
    /// Indexed by `MetricProtocol.index`.
    public let connections: [SeriesID]
    public let activeConnections: [SeriesID]
    public let activeStreams: [SeriesID]
    public let receivedBytes: [SeriesID]
    public let sentBytes: [SeriesID]
    public let tlsHandshakes: SeriesID
    public let tlsHandshakeFailures: SeriesID
    /// Indexed by `QUICDatagramDisposition.index`.
    public let quicDatagrams: [SeriesID]
    public let quicConnections: SeriesID
    public let quicRetries: SeriesID
    /// Requests that matched no route (`route=""`).
    public let noRoute: RouteMetricIDs

    init(_ listener: ListenerSettings, _ registry: SeriesRegistry) {
        name = listener.name
        func perProtocol(_ family: MetricFamily) -> [SeriesID] {
            MetricProtocol.allCases.map { registry.id(family, [listener.name, $0.rawValue]) }
        }
        connections = perProtocol(MetricCatalog.connections)
        activeConnections = perProtocol(MetricCatalog.activeConnections)
        activeStreams = perProtocol(MetricCatalog.activeStreams)
        receivedBytes = perProtocol(MetricCatalog.receivedBytes)
        sentBytes = perProtocol(MetricCatalog.sentBytes)
        tlsHandshakes = registry.id(MetricCatalog.tlsHandshakes, [listener.name])
        tlsHandshakeFailures = registry.id(MetricCatalog.tlsHandshakeFailures, [listener.name])
        quicDatagrams = QUICDatagramDisposition.allCases.map {
            registry.id(MetricCatalog.quicDatagrams, [listener.name, $0.rawValue])
        }
        quicConnections = registry.id(MetricCatalog.quicConnections, [listener.name])
        quicRetries = registry.id(MetricCatalog.quicRetries, [listener.name])
        noRoute = RouteMetricIDs(listener: listener.name, registry)
    }
}

/// The request counts of one (listener, route, upstream, target): a grid of protocol × status class.
public struct RequestGrid: Sendable {
    /// Indexed by `MetricProtocol.index * 5 + status class position`.
    @usableFromInline let ids: [SeriesID]

    init(_ registry: SeriesRegistry, listener: String, route: String, upstream: String, target: String) {
        ids = MetricProtocol.allCases.flatMap { proto in
            StatusClass.allCases.map { status in
                registry.id(
                    MetricCatalog.requests, [listener, route, upstream, target, proto.rawValue, status.rawValue])
            }
        }
    }

    /// The series of a request carried by `proto` answered with `status`; nil for a status outside 100...599
    /// (a request that got no answer is timed, not counted by class).
    @inlinable
    public func id(protocol proto: MetricProtocol, status: Int) -> SeriesID? {
        let column: Int
        switch status {
        case 100..<200: column = 0
        case 200..<300: column = 1
        case 300..<400: column = 2
        case 400..<500: column = 3
        case 500..<600: column = 4
        default: return nil
        }
        return ids[proto.index * 5 + column]
    }
}

/// One route as one listener serves it: its duration histogram, its request grids (no upstream, each upstream
/// with no target, each target), its retries and replays per upstream, its filters' outcomes in chain order.
public final class RouteMetricIDs: Sendable {
    public let name: String
    public let duration: SeriesID
    /// Requests Jester answered itself, or (for `noRoute`) that no route took.
    public let local: RequestGrid
    /// By upstream name: requests that reached no target of it.
    public let noTarget: [String: RequestGrid]
    /// By `TargetMetricIDs.index`: requests a target answered.
    public let byTarget: [Int: RequestGrid]
    /// By upstream name.
    public let retries: [String: SeriesID]
    public let replays: [String: SeriesID]
    /// In the order of the route's filter chain on this listener (listener-wide filters first), as the
    /// compiled chain runs them: indexed by a filter's position, then by `FilterOutcome` (proceed, respond, fail),
    /// then (`FilterOutcome.allCases.count`) the filter's duration histogram.
    public let filters: [[SeriesID]]
    /// The filters' names, in the same order.
    public let filterNames: [String]

    init(
        listener: String, route: RouteSettings, configuration: Configuration, targets: [String: [TargetMetricIDs]],
        _ registry: SeriesRegistry
    ) {
        name = route.name
        duration = registry.id(MetricCatalog.requestDuration, [listener, route.name])
        local = RequestGrid(registry, listener: listener, route: route.name, upstream: "", target: "")
        var noTarget: [String: RequestGrid] = [:]
        var byTarget: [Int: RequestGrid] = [:]
        var retries: [String: SeriesID] = [:]
        var replays: [String: SeriesID] = [:]
        for upstream in ConfigurationSeries.upstreams(of: route) {
            noTarget[upstream] = RequestGrid(
                registry, listener: listener, route: route.name, upstream: upstream, target: "")
            for target in targets[upstream] ?? [] {
                byTarget[target.index] = RequestGrid(
                    registry, listener: listener, route: route.name, upstream: upstream, target: target.target)
            }
            retries[upstream] = registry.id(MetricCatalog.retries, [route.name, upstream])
            replays[upstream] = registry.id(MetricCatalog.replays, [route.name, upstream])
        }
        self.noTarget = noTarget
        self.byTarget = byTarget
        self.retries = retries
        self.replays = replays
        let chain = configuration.filterChain(for: route, listener: listener)
        filterNames = chain.map(\.name)
        filters = chain.map { filter in
            FilterOutcome.allCases.map {
                registry.id(MetricCatalog.filterOutcomes, [route.name, filter.name, $0.rawValue])
            } + [registry.id(MetricCatalog.filterDuration, [route.name, filter.name])]
        }
    }

    /// The requests no route of `listener` took.
    init(listener: String, _ registry: SeriesRegistry) {
        name = ""
        duration = registry.id(MetricCatalog.requestDuration, [listener, ""])
        local = RequestGrid(registry, listener: listener, route: "", upstream: "", target: "")
        noTarget = [:]
        byTarget = [:]
        retries = [:]
        replays = [:]
        filters = []
        filterNames = []
    }

    /// The grid a request of this route counts in: its target's, its upstream's when no target answered, or
    /// the local one.
    public func grid(target: TargetMetricIDs?, upstream: String?) -> RequestGrid {
        if let target, let grid = byTarget[target.index] { return grid }
        if let upstream, let grid = noTarget[upstream] { return grid }
        return local
    }
}

/// One target of one upstream pool: its connect and response histograms and its ejections.
public final class TargetMetricIDs: Sendable {
    public let upstream: String
    public let target: String
    /// The target's position among every upstream's targets (configuration order): how routes find its grid.
    public let index: Int
    public let connectDuration: SeriesID
    public let responseDuration: SeriesID
    public let ejections: SeriesID
    /// Indexed like `CircuitStateLabel.allCases` (closed, open, half_open).
    public let circuitStates: [SeriesID]

    init(upstream: String, target: String, index: Int, _ registry: SeriesRegistry) {
        self.upstream = upstream
        self.target = target
        self.index = index
        connectDuration = registry.id(MetricCatalog.upstreamConnectDuration, [upstream, target])
        responseDuration = registry.id(MetricCatalog.upstreamResponseDuration, [upstream, target])
        ejections = registry.id(MetricCatalog.ejections, [upstream, target])
        circuitStates = CircuitStateLabel.allCases.map {
            registry.id(MetricCatalog.circuitState, [upstream, target, $0.rawValue])
        }
    }
}
