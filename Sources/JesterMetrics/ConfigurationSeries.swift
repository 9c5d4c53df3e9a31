// SPDX-License-Identifier: Apache-2.0
import JesterConfig

/// Every label set a configuration can produce, for the master to register before a generation's workers
/// spawn (at start and at every reload), so a worker only ever looks ids up and a scrape shows every series
/// from zero rather than from the first request (Prometheus's advice: a series that appears late hides the
/// increase up to its first sample).
///
/// Workers resolve the same shapes into ids (`ConfigurationMetricIDs`); both go through the helpers here
/// (`protocols(of:)`, `upstreams(of:)`, `routes(on:in:)`), so what a worker looks up is always registered.
/// A value absent from a request's answer is the empty label: `route=""` for a request no route took,
/// `upstream="" target=""` for a route answered by Jester itself, `target=""` for a proxied request no target
/// answered (every target down, a refusal before connecting).
///
/// Target health is not here: the master registers it once a health check has an opinion (a gauge of 1 or 0
/// for a target whose health is unknown would be a lie either way).
public struct ConfigurationSeries: Sendable {
    /// One series to register.
    public struct LabelSet: Sendable, Hashable {
        public let family: MetricFamily
        public let labels: [String]
    }

    /// The label sets, in the order they are registered (listeners' first, then routes', then upstreams').
    public let labelSets: [LabelSet]

    public init(_ configuration: Configuration) {
        var sets: [LabelSet] = []
        func add(_ family: MetricFamily, _ labels: [String]) { sets.append(LabelSet(family: family, labels: labels)) }
        let statuses = StatusClass.allCases.map(\.rawValue)
        for listener in configuration.listeners {
            let protocols = Self.protocols(of: listener)
            for proto in protocols.map(\.rawValue) {
                add(MetricCatalog.connections, [listener.name, proto])
                add(MetricCatalog.activeConnections, [listener.name, proto])
                add(MetricCatalog.receivedBytes, [listener.name, proto])
                add(MetricCatalog.sentBytes, [listener.name, proto])
                if proto == MetricProtocol.http2.rawValue || proto == MetricProtocol.http3.rawValue {
                    add(MetricCatalog.activeStreams, [listener.name, proto])
                }
            }
            if listener.tls != nil {
                add(MetricCatalog.tlsHandshakes, [listener.name])
                add(MetricCatalog.tlsHandshakeFailures, [listener.name])
            }
            if listener.servesHTTP3 {
                for disposition in QUICDatagramDisposition.allCases {
                    add(MetricCatalog.quicDatagrams, [listener.name, disposition.rawValue])
                }
                add(MetricCatalog.quicConnections, [listener.name])
                add(MetricCatalog.quicRetries, [listener.name])
            }
            guard !listener.isTCP else { continue }
            func requests(route: String, upstream: String, target: String) {
                for proto in protocols.map(\.rawValue) {
                    for status in statuses {
                        add(MetricCatalog.requests, [listener.name, route, upstream, target, proto, status])
                    }
                }
            }
            // Requests no route took (404, the redirect of a redirect_to_https listener).
            add(MetricCatalog.requestDuration, [listener.name, ""])
            requests(route: "", upstream: "", target: "")
            for route in Self.routes(on: listener, in: configuration) {
                add(MetricCatalog.requestDuration, [listener.name, route.name])
                let upstreams = Self.upstreams(of: route)
                if upstreams.isEmpty { requests(route: route.name, upstream: "", target: "") }
                for upstream in upstreams {
                    requests(route: route.name, upstream: upstream, target: "")
                    for target in configuration.upstream(named: upstream)?.targets ?? [] {
                        requests(route: route.name, upstream: upstream, target: target.description)
                    }
                }
                for filter in configuration.filterChain(for: route, listener: listener.name) {
                    for outcome in FilterOutcome.allCases {
                        add(MetricCatalog.filterOutcomes, [route.name, filter.name, outcome.rawValue])
                    }
                    add(MetricCatalog.filterDuration, [route.name, filter.name])
                }
            }
        }
        for (policy, stages) in Self.policyStages(configuration) {
            for stage in stages {
                for decision in PolicyDecision.allCases {
                    add(MetricCatalog.policyCalls, [policy, stage.rawValue, decision.rawValue])
                }
                add(MetricCatalog.policyDuration, [policy, stage.rawValue])
            }
            add(MetricCatalog.policyMemory, [policy])
        }
        for route in configuration.routes {
            for upstream in Self.upstreams(of: route) {
                add(MetricCatalog.retries, [route.name, upstream])
                add(MetricCatalog.replays, [route.name, upstream])
            }
        }
        for upstream in configuration.upstreams {
            for target in upstream.targets.map(\.description) {
                add(MetricCatalog.upstreamConnectDuration, [upstream.name, target])
                add(MetricCatalog.upstreamResponseDuration, [upstream.name, target])
                add(MetricCatalog.ejections, [upstream.name, target])
                for state in CircuitStateLabel.allCases {
                    add(MetricCatalog.circuitState, [upstream.name, target, state.rawValue])
                }
            }
        }
        labelSets = sets
    }

    /// What can carry a listener's connections: `tcp` for a TCP listener; HTTP/1.1, HTTP/2 unless it is off, and
    /// HTTP/3 when it is on.
    public static func protocols(of listener: ListenerSettings) -> [MetricProtocol] {
        if listener.isTCP { return [.tcp] }
        return (listener.servesHTTP2 ? [.http1, .http2] : [.http1]) + (listener.servesHTTP3 ? [.http3] : [])
    }

    /// The routes a listener serves, in configuration order: none for a TCP listener or a redirect_to_https one
    /// (it answers every request itself).
    public static func routes(on listener: ListenerSettings, in configuration: Configuration) -> [RouteSettings] {
        guard !listener.isTCP, listener.redirectToHTTPS == nil else { return [] }
        return configuration.routes.filter { $0.listeners.isEmpty || $0.listeners.contains(listener.name) }
    }

    /// The stages each policy is attached at (listeners' and routes'), by policy name in configuration order.
    public static func policyStages(_ configuration: Configuration) -> [(String, [PolicyStageName])] {
        let attachments = configuration.listeners.flatMap(\.policies) + configuration.routes.flatMap(\.policies)
        return configuration.policies.map { policy in
            (policy.name, PolicyStageName.allCases.filter { stage in
                attachments.contains { $0.policy == policy.name && $0.stage == stage }
            })
        }
    }

    /// The upstream pools a route may send a request to, each once, in configuration order (none for a local
    /// answer).
    public static func upstreams(of route: RouteSettings) -> [String] {
        switch route.action {
        case .proxy(let upstream): return [upstream]
        case .split(let targets, _):
            var seen = Set<String>()
            return targets.map(\.upstream).filter { seen.insert($0).inserted }
        case .respond, .redirect: return []
        }
    }
}

extension SeriesRegistry {
    /// Registers every label set `configuration` can produce (see `ConfigurationSeries`); the ones known already
    /// keep their ids. The master calls it before a generation's workers spawn, then publishes the directory.
    public mutating func register(_ configuration: Configuration) {
        for set in ConfigurationSeries(configuration).labelSets { register(set.family, set.labels) }
    }
}
