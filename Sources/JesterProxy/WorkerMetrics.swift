// SPDX-License-Identifier: Apache-2.0
import Glibc
import JesterConfig
import JesterCore
import JesterMetrics
import JesterSystem
import NIOCore

/// A worker's handle on the instance's metrics (jester-metrics(7)): its partition of the shared table, and the
/// series ids of its configuration resolved once, so that counting is an array index and an atomic add.
///
/// The master registered every id before the worker spawned (`ConfigurationSeries`); the worker never
/// registers, it only looks up (`ConfigurationMetricIDs`). Every method takes ids or plain values, never a
/// label string: the request path finds the ids on what it already holds (`ids.listeners[name]` once per
/// listener, `ids.route(_:listener:)` once per compiled route, `ids.targets[upstream][index]` once per
/// target). Loop-confined to the worker's event loop like `WorkerRuntime` (the connection side table is
/// the only mutable state; the adds themselves are atomic).
final class WorkerMetrics: @unchecked Sendable {
    /// The worker's own partition.
    let writer: MetricsWriter
    /// This configuration's ids.
    let ids: ConfigurationMetricIDs

    /// A client connection as counted: its listener and the protocol it is counted under now.
    private struct OpenConnection {
        let listener: ListenerMetricIDs
        var proto: MetricProtocol
        /// Whether `jester_downstream_connections_total` has it yet: a connection on a listener that serves
        /// HTTP/2 is counted once its protocol is known (handed to HTTP/2, settled, or closed as HTTP/1).
        var counted: Bool
    }

    private var open: [ObjectIdentifier: OpenConnection] = [:]
    /// See `routeIDs`: compiled routes live as long as the worker's runtime, so their identities stay unique.
    private var routesByIdentity: [ObjectIdentifier: RouteMetricIDs?] = [:]
    /// Filter outcome ids by route name, then filter name (a filter's series carry no listener, so the same
    /// names give the same ids on every listener); see `filterIDs`.
    private let filterSeries: [String: [String: [SeriesID]]]
    /// A compiled route's filter outcome ids in its chain's order, found once per compiled route.
    private var filtersByIdentity: [ObjectIdentifier: [[SeriesID]]] = [:]

    init(writer: MetricsWriter, ids: ConfigurationMetricIDs) {
        self.writer = writer
        self.ids = ids
        var filterSeries: [String: [String: [SeriesID]]] = [:]
        for routes in ids.routes.values {
            for route in routes.values {
                for (name, outcomes) in zip(route.filterNames, route.filters) {
                    filterSeries[route.name, default: [:]][name] = outcomes
                }
            }
        }
        self.filterSeries = filterSeries
        // Every breaker starts closed: the gauge counts the workers whose breaker is in each state.
        for targets in ids.targets.values {
            for target in targets { writer.add(target.circuitStates[0], 1) }
        }
    }

    /// Attaches the table the master passed (`WorkerAssignment.metricsTableFD`) and resolves `configuration`'s
    /// ids from its directory. Throws when the descriptor is not a table or its directory is damaged.
    static func attach(fd: Int32, partition: Int, configuration: Configuration) throws -> WorkerMetrics {
        let table = try MetricsTable.attach(fd: fd)
        guard partition > MetricsTable.masterPartition, partition < table.partitions else {
            throw SystemError("attach", "metrics table (partition \(partition) out of range)", errno: EINVAL)
        }
        let registry = try table.registry()
        return WorkerMetrics(writer: table.writer(partition: partition), ids: ConfigurationMetricIDs(configuration,
            registry: registry))
    }

    // MARK: Connections (WorkerRuntime.register / transfer / unregister)

    /// A client connection was admitted on `listener`, carried by `proto`. `settled`: its protocol cannot change
    /// (false for an HTTP/1 connection on a listener that serves HTTP/2, counted once it is known).
    func connectionOpened(_ connection: AnyObject, listener: ListenerMetricIDs, protocol proto: MetricProtocol,
        settled: Bool)
    {
        open[ObjectIdentifier(connection)] = OpenConnection(listener: listener, proto: proto, counted: settled)
        writer.add(listener.activeConnections[proto.index], 1)
        if settled { writer.add(listener.connections[proto.index]) }
    }

    /// A connection's handler changed (`WorkerRuntime.transfer`: HTTP/1 handed to HTTP/2): it is counted under
    /// `proto` from now on.
    func connectionTransferred(from old: AnyObject, to new: AnyObject, protocol proto: MetricProtocol) {
        guard var connection = open.removeValue(forKey: ObjectIdentifier(old)) else { return }
        if connection.proto != proto {
            writer.add(connection.listener.activeConnections[connection.proto.index], -1)
            writer.add(connection.listener.activeConnections[proto.index], 1)
            connection.proto = proto
        }
        if !connection.counted {
            writer.add(connection.listener.connections[proto.index])
            connection.counted = true
        }
        open[ObjectIdentifier(new)] = connection
    }

    /// The connection's protocol is known and will not change (its first HTTP/1 request): counted now rather
    /// than when it closes. For the request path; harmless when called twice.
    func connectionSettled(_ connection: AnyObject) {
        guard let entry = open[ObjectIdentifier(connection)], !entry.counted else { return }
        writer.add(entry.listener.connections[entry.proto.index])
        open[ObjectIdentifier(connection)]?.counted = true
    }

    /// The connection closed.
    func connectionClosed(_ connection: AnyObject) {
        guard let entry = open.removeValue(forKey: ObjectIdentifier(connection)) else { return }
        writer.add(entry.listener.activeConnections[entry.proto.index], -1)
        if !entry.counted { writer.add(entry.listener.connections[entry.proto.index]) }
    }

    /// Connections open now, as counted (tests).
    var openConnections: Int { open.count }

    // MARK: Requests (for the request path)

    /// The ids of `route` on `listener`, found once per compiled route (by its identity, cheap to hash) rather
    /// than by two name lookups per request.
    func routeIDs(_ route: CompiledRoute, listener: String) -> RouteMetricIDs? {
        let key = ObjectIdentifier(route)
        if let found = routesByIdentity[key] { return found }
        let found = ids.route(route.name, listener: listener)
        routesByIdentity[key] = found
        return found
    }

    /// A request's response ended (or the request was cut): counted by listener, route, upstream, target,
    /// protocol and status class (`status` outside 100...599: not counted by class), its duration observed, and
    /// its bytes added. `route` nil: no route took it; `target` nil with `upstream` set: no target answered.
    func requestFinished(
        listener: ListenerMetricIDs, route: RouteMetricIDs?, upstream: String? = nil, target: TargetMetricIDs?,
        protocol proto: MetricProtocol, status: Int, durationNanoseconds: Int64, bytesIn: Int64, bytesOut: Int64
    ) {
        let route = route ?? listener.noRoute
        let grid = route.grid(target: target, upstream: upstream ?? target?.upstream)
        if let id = grid.id(protocol: proto, status: status) { writer.add(id) }
        writer.observe(route.duration, nanoseconds: durationNanoseconds)
        if bytesIn > 0 { writer.add(listener.receivedBytes[proto.index], bytesIn) }
        if bytesOut > 0 { writer.add(listener.sentBytes[proto.index], bytesOut) }
    }

    /// Bytes a TCP listener relayed (its connections have no requests): client to target `received`, back
    /// `sent`.
    func bytesRelayed(listener: ListenerMetricIDs, received: Int64, sent: Int64) {
        if received > 0 { writer.add(listener.receivedBytes[MetricProtocol.tcp.index], received) }
        if sent > 0 { writer.add(listener.sentBytes[MetricProtocol.tcp.index], sent) }
    }

    /// An HTTP/2 (or HTTP/3) stream opened or closed on a connection of `listener`.
    func streamOpened(listener: ListenerMetricIDs, protocol proto: MetricProtocol) {
        writer.add(listener.activeStreams[proto.index], 1)
    }

    /// `count` streams closed (more than one: the connection went with its streams).
    func streamClosed(listener: ListenerMetricIDs, protocol proto: MetricProtocol, count: Int = 1) {
        if count > 0 { writer.add(listener.activeStreams[proto.index], Int64(-count)) }
    }

    // MARK: Upstreams

    /// A connection to `target` opened, `nanoseconds` after it was begun (TLS handshake included).
    func upstreamConnected(target: TargetMetricIDs, nanoseconds: Int64) {
        writer.observe(target.connectDuration, nanoseconds: nanoseconds)
    }

    /// `target`'s response head came `nanoseconds` after the request was sent.
    func upstreamResponded(target: TargetMetricIDs, nanoseconds: Int64) {
        writer.observe(target.responseDuration, nanoseconds: nanoseconds)
    }

    /// The route's retry policy sent a request again (to `upstream`).
    func retry(route: RouteMetricIDs, upstream: String) {
        if let id = route.retries[upstream] { writer.add(id) }
    }

    /// A request was replayed on a new connection after a kept-alive one closed before answering.
    func replay(route: RouteMetricIDs, upstream: String) {
        if let id = route.replays[upstream] { writer.add(id) }
    }

    /// The ids a pool counts its ejections and breaker states under (`UpstreamPool.metrics`).
    func pool(_ name: String) -> PoolMetrics? {
        ids.targets[name].map { PoolMetrics(metrics: self, targets: $0) }
    }

    /// Outlier detection ejected `target`.
    func ejected(target: TargetMetricIDs) {
        writer.add(target.ejections)
    }

    /// `target`'s circuit breaker in this worker moved from `old` to `new`.
    func circuitChanged(target: TargetMetricIDs, from old: CircuitStateLabel, to new: CircuitStateLabel) {
        guard old != new else { return }
        writer.add(target.circuitStates[Self.position(old)], -1)
        writer.add(target.circuitStates[Self.position(new)], 1)
    }

    private static func position(_ state: CircuitStateLabel) -> Int {
        switch state {
        case .closed: 0
        case .open: 1
        case .halfOpen: 2
        }
    }

    // MARK: Filters and TLS

    /// The filter at position `filter` of the route's chain (as `RouteMetricIDs.filters` orders it) decided.
    func filterOutcome(route: RouteMetricIDs, filter: Int, outcome: FilterOutcome) {
        guard filter >= 0, filter < route.filters.count else { return }
        writer.add(route.filters[filter][Self.column(outcome)])
    }

    /// A run of `route`'s filter chain ended at the filter at position `decider` with `outcome`: every filter
    /// before it proceeded (a run that went through: the last filter, `.proceed`). The one call per run
    /// (`FilterContext`), with the chain's compiled route: no listener needed, see `filterSeries`.
    func filtersDecided(route: CompiledRoute, decider: Int, outcome: FilterOutcome) {
        let outcomes = filterIDs(route)
        guard decider >= 0, decider < outcomes.count else { return }
        for position in 0..<decider where !outcomes[position].isEmpty { writer.add(outcomes[position][0]) }
        if !outcomes[decider].isEmpty { writer.add(outcomes[decider][Self.column(outcome)]) }
    }

    /// The filter at position `filter` of `route`'s chain took `nanoseconds` to decide (its waits included).
    func filterTook(route: CompiledRoute, filter: Int, nanoseconds: Int64) {
        let ids = filterIDs(route)
        let column = FilterOutcome.allCases.count
        guard filter >= 0, filter < ids.count, ids[filter].count > column else { return }
        writer.observe(ids[filter][column], nanoseconds: nanoseconds)
    }

    /// `route`'s filter outcome ids in chain order; empty for a filter the master registered no series for
    /// (none such while it registers every configuration before its workers spawn): not counted.
    private func filterIDs(_ route: CompiledRoute) -> [[SeriesID]] {
        let key = ObjectIdentifier(route)
        if let found = filtersByIdentity[key] { return found }
        let byName = filterSeries[route.name] ?? [:]
        let found = route.filters.filters.map { byName[$0.name] ?? [] }
        filtersByIdentity[key] = found
        return found
    }

    /// An outcome's place in `RouteMetricIDs.filters`' rows.
    private static func column(_ outcome: FilterOutcome) -> Int {
        switch outcome {
        case .proceed: 0
        case .respond: 1
        case .fail: 2
        }
    }

    /// A datagram of `listener`'s HTTP/3 side met `disposition`.
    func quicDatagram(listener: ListenerMetricIDs, _ disposition: QUICDatagramDisposition) {
        writer.add(listener.quicDatagrams[disposition.index])
    }

    /// `listener` accepted a QUIC connection, or sent a Retry.
    func quicConnection(listener: ListenerMetricIDs, retry: Bool) {
        writer.add(retry ? listener.quicRetries : listener.quicConnections)
    }

    /// A client's TLS handshake on `listener` completed, or failed.
    func tlsHandshake(listener: ListenerMetricIDs, failed: Bool) {
        writer.add(failed ? listener.tlsHandshakeFailures : listener.tlsHandshakes)
    }
}

/// One upstream pool's share of the worker's metrics: its targets' ids, and the state its circuit breaker was
/// last counted in. A pool has one breaker for all its targets, so every target's series follows it (the
/// family counts, per target, the workers whose breaker guarding it is in each state).
final class PoolMetrics {
    let metrics: WorkerMetrics
    /// In the pool's target order.
    let targets: [TargetMetricIDs]
    /// Every breaker starts closed (`WorkerMetrics.init` counted it so).
    private var circuit = CircuitStateLabel.closed

    init(metrics: WorkerMetrics, targets: [TargetMetricIDs]) {
        self.metrics = metrics
        self.targets = targets
    }

    /// A new connection to the pool's target at `index` is ready (connected, and TLS done), `began` when its
    /// attempt started.
    func connected(_ index: Int, began: NIODeadline) {
        guard index < targets.count else { return }
        metrics.upstreamConnected(target: targets[index], nanoseconds: (NIODeadline.now() - began).nanoseconds)
    }

    /// Outlier detection ejected the pool's target at `index`.
    func ejected(_ index: Int) {
        if index < targets.count { metrics.ejected(target: targets[index]) }
    }

    /// The pool's breaker is now in `state`: counted when that is another state than the last one counted.
    /// (Called on every change of the breaker, so cheap when nothing moved.)
    func circuit(_ state: CircuitBreaker.State) {
        let label = CircuitStateLabel(state)
        guard label != circuit else { return }
        for target in targets { metrics.circuitChanged(target: target, from: circuit, to: label) }
        circuit = label
    }
}

extension CircuitStateLabel {
    /// The label of a breaker's state.
    init(_ state: CircuitBreaker.State) {
        switch state {
        case .closed: self = .closed
        case .open: self = .open
        case .halfOpen: self = .halfOpen
        }
    }
}

/// Where a worker's filter chains count their verdicts: one per runtime, shared by every chain. Chains are
/// compiled with the runtime and the metrics table is attached after, so the chains hold this and
/// `WorkerRuntime.attachMetrics` fills it. Loop-confined like the chains.
final class FilterMetrics: @unchecked Sendable {
    var metrics: WorkerMetrics?
}

extension WorkerRuntime {
    /// Counts from now on in `metrics` (`Worker.start`, once, before the listeners accept): the runtime, its
    /// pools (ejections, breaker states) and its filter chains get it.
    func attachMetrics(_ metrics: WorkerMetrics) {
        self.metrics = metrics
        for pool in pools.values { pool.metrics = metrics.pool(pool.name) }
        filterMetrics.metrics = metrics
        for policy in policies.values {
            policy.metrics = metrics.ids.policies[policy.name].map { (metrics.writer, $0) }
        }
    }

    /// Counts a newly admitted client connection under its listener (`register`): a TCP relay as tcp, an HTTP
    /// connection as http1 until it is handed to HTTP/2 (`transfer`).
    func metricsConnectionOpened(_ connection: any ClientConnection) {
        guard let metrics else { return }
        if let http = connection as? DownstreamConnection, let listener = metrics.ids.listeners[http.listener] {
            metrics.connectionOpened(http, listener: listener, protocol: .http1, settled: !http.servesHTTP2)
        } else if let tcp = connection as? TCPProxyConnection, let listener = metrics.ids.listeners[tcp.listener.name] {
            metrics.connectionOpened(tcp, listener: listener, protocol: .tcp, settled: true)
        } else if let quic = connection as? HTTP3Connection, let listener = quic.metricsListener {
            metrics.connectionOpened(quic, listener: listener, protocol: .http3, settled: true)
        }
    }

    /// Moves a connection's count to the handler that took it over (`transfer`).
    func metricsConnectionTransferred(from old: any ClientConnection, to new: any ClientConnection) {
        metrics?.connectionTransferred(from: old, to: new, protocol: new is HTTP2Connection ? .http2 : .http1)
    }
}
