// SPDX-License-Identifier: Apache-2.0

/// Every metric family Jester exposes: the one definition that the exposition, the shared table's layout,
/// jester-metrics(7) and its test are held to (as `ConfigSchema` is for the configuration).
///
/// Adding a family: declare it here, list it in `families`, document it in Man/jester-metrics.7 (the test
/// `theManualPageDocumentsEveryFamily` fails until it is), and count it where it happens.
public enum MetricCatalog {
    /// The duration buckets, in seconds: Prometheus's default buckets (5 ms … 10 s), the ones its users'
    /// dashboards and `histogram_quantile` recording rules expect. Fixed, so every process and every binary
    /// of an upgrade agrees on what a bucket word means.
    public static let durationBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    // MARK: Requests (workers)

    public static let requests = MetricFamily(
        "jester_http_requests", .counter,
        labels: [.listener, .route, .upstream, .target, .protocol, .statusClass],
        help: "HTTP requests answered, by listener, route, upstream and target, protocol and status class.")
    public static let requestDuration = MetricFamily(
        "jester_http_request_duration_seconds", .histogram, unit: .seconds, labels: [.listener, .route],
        help: "Time from a request's head to the end of its response.", buckets: durationBuckets)
    public static let receivedBytes = MetricFamily(
        "jester_downstream_received_bytes", .counter, unit: .bytes, labels: [.listener, .protocol],
        help: "Bytes received from clients.")
    public static let sentBytes = MetricFamily(
        "jester_downstream_sent_bytes", .counter, unit: .bytes, labels: [.listener, .protocol],
        help: "Bytes sent to clients.")
    public static let connections = MetricFamily(
        "jester_downstream_connections", .counter, labels: [.listener, .protocol],
        help: "Client connections accepted.")
    public static let activeConnections = MetricFamily(
        "jester_downstream_connections_active", .gauge, labels: [.listener, .protocol],
        help: "Client connections open now.")
    public static let activeStreams = MetricFamily(
        "jester_downstream_streams_active", .gauge, labels: [.listener, .protocol],
        help: "HTTP/2 and HTTP/3 streams open now.")

    // MARK: Upstreams (workers; health by the master)

    public static let upstreamConnectDuration = MetricFamily(
        "jester_upstream_connect_duration_seconds", .histogram, unit: .seconds, labels: [.upstream, .target],
        help: "Time to open a connection to a target (TLS handshake included).", buckets: durationBuckets)
    public static let upstreamResponseDuration = MetricFamily(
        "jester_upstream_response_duration_seconds", .histogram, unit: .seconds, labels: [.upstream, .target],
        help: "Time from sending a request to a target to its response head.", buckets: durationBuckets)
    public static let targetHealthy = MetricFamily(
        "jester_upstream_target_healthy", .gauge, labels: [.upstream, .target],
        help: "1 when the target is healthy, 0 when not.")
    public static let ejections = MetricFamily(
        "jester_upstream_ejections", .counter, labels: [.upstream, .target],
        help: "Times outlier detection ejected the target.")
    public static let retries = MetricFamily(
        "jester_upstream_retries", .counter, labels: [.route, .upstream],
        help: "Requests sent again to another attempt under the route's retry policy.")
    public static let replays = MetricFamily(
        "jester_upstream_replays", .counter, labels: [.route, .upstream],
        help: "Requests replayed on a new connection after a kept-alive one closed before answering.")
    public static let circuitState = MetricFamily(
        "jester_upstream_circuit_state", .gauge, labels: [.upstream, .target, .state],
        help: "Workers whose circuit breaker for the target is in the state.")

    // MARK: TLS and filters (workers)

    public static let tlsHandshakes = MetricFamily(
        "jester_tls_handshakes", .counter, labels: [.listener],
        help: "TLS handshakes completed with clients.")
    public static let tlsHandshakeFailures = MetricFamily(
        "jester_tls_handshake_failures", .counter, labels: [.listener],
        help: "TLS handshakes with clients that failed.")
    public static let quicDatagrams = MetricFamily(
        "jester_quic_datagrams", .counter, labels: [.listener, .disposition],
        help: "QUIC datagrams of HTTP/3 listeners, by what the worker did with them.")
    public static let quicConnections = MetricFamily(
        "jester_quic_connections", .counter, labels: [.listener],
        help: "QUIC connections accepted (their handshakes begun).")
    public static let quicRetries = MetricFamily(
        "jester_quic_retries", .counter, labels: [.listener],
        help: "Retry packets sent to new QUIC clients to validate their address.")
    public static let filterOutcomes = MetricFamily(
        "jester_filter_outcomes", .counter, labels: [.route, .filter, .outcome],
        help: "Filter verdicts, by route, filter and outcome.")
    public static let filterDuration = MetricFamily(
        "jester_filter_duration_seconds", .histogram, unit: .seconds, labels: [.route, .filter],
        help: "Time a filter took to decide, its waits included (Redis, a password hash).", buckets: durationBuckets)

    // MARK: Wasm policies (workers)

    public static let policyCalls = MetricFamily(
        "jester_policy_calls", .counter, labels: [.policy, .stage, .decision],
        help: "Wasm policy calls, by policy, stage and decision (failure: refused with the error status).")
    public static let policyDuration = MetricFamily(
        "jester_policy_call_duration_seconds", .histogram, unit: .seconds, labels: [.policy, .stage],
        help: "Time a Wasm policy call took, context and action included.", buckets: policyBuckets)
    public static let policyMemory = MetricFamily(
        "jester_policy_memory_bytes", .gauge, unit: .bytes, labels: [.policy],
        help: "Linear memory of the policy's instances, summed over the workers (one instance per worker).")
    public static let policyCounter = MetricFamily(
        "jester_policy_counter", .counter, labels: [.policy, .counter],
        help: "What Wasm policies counted (counter-add), by policy and counter; workers report them every second.")
    /// Policy calls take microseconds: finer buckets than requests'.
    public static let policyBuckets: [Double] = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
        0.0025, 0.005, 0.025, 0.1]

    // MARK: The master

    public static let reloads = MetricFamily(
        "jester_master_reloads", .counter, labels: [.result],
        help: "Configuration reloads, by result.")
    public static let generation = MetricFamily(
        "jester_master_generation", .gauge,
        help: "The serving generation (one more at every successful reload or upgrade).")
    public static let workerRestarts = MetricFamily(
        "jester_master_worker_restarts", .counter,
        help: "Workers started again after exiting unasked.")
    public static let seriesFolded = MetricFamily(
        "jester_metrics_series_folded", .counter, labels: [.family],
        help: "Label sets counted under the family's other series, past its series limit.")

    // MARK: The shared HTTP cache (the index's own counts, read by the master at every scrape)

    public static let cacheHits = MetricFamily(
        "jester_cache_hits", .counter, help: "Requests answered from the shared HTTP cache.")
    public static let cacheMisses = MetricFamily(
        "jester_cache_misses", .counter,
        help: "Cacheable requests sent upstream because nothing usable was stored.")
    public static let cacheStores = MetricFamily(
        "jester_cache_stores", .counter, help: "Responses written to the shared HTTP cache.")
    public static let cacheEvictions = MetricFamily(
        "jester_cache_evictions", .counter,
        help: "Entries dropped from the shared HTTP cache to make room (not purges, not expiries).")
    public static let cacheCollapsed = MetricFamily(
        "jester_cache_collapsed", .counter,
        help: "Requests that waited for another request's fetch of the same key and were answered by it.")
    public static let cacheSize = MetricFamily(
        "jester_cache_size_bytes", .gauge, unit: .bytes,
        help: "Bytes the shared HTTP cache's stored responses take.")
    public static let cacheEntries = MetricFamily(
        "jester_cache_entries", .gauge, help: "Responses stored in the shared HTTP cache (each variant counts).")

    /// Every family, in exposition order.
    public static let families: [MetricFamily] = [
        requests, requestDuration, receivedBytes, sentBytes, connections, activeConnections, activeStreams,
        upstreamConnectDuration, upstreamResponseDuration, targetHealthy, ejections, retries, replays, circuitState,
        tlsHandshakes, tlsHandshakeFailures, quicDatagrams, quicConnections, quicRetries, filterOutcomes, filterDuration,
        policyCalls, policyDuration, policyMemory, policyCounter,
        reloads, generation, workerRestarts, seriesFolded,
        cacheHits, cacheMisses, cacheStores, cacheEvictions, cacheCollapsed, cacheSize, cacheEntries,
    ]

    /// The family called `name` (its OpenMetrics name, without `_total`).
    public static func family(named name: String) -> MetricFamily? {
        families.first { $0.name == name }
    }
}
