// SPDX-License-Identifier: Apache-2.0

/// Everything said on Jester's control channels: jesterctl ↔ master over the control socket, and master ↔ worker
/// over each worker's socketpair. One vocabulary for both keeps the seam later features (metrics aggregation,
/// shared rate limits, pushed configuration) plug into in one place.
///
/// The wire format is documented in jester(8) under CONTROL PROTOCOL: a 4-byte big-endian length, then that many
/// bytes of JSON holding a `ControlEnvelope`.
public enum ControlMessage: Codable, Sendable, Equatable {
    // MARK: jesterctl → master
    /// Asks for `StatusReport`.
    case status
    /// Re-read the configuration and replace the workers; answered with `reloadResult`.
    case reload
    /// A reload whose requester wants to watch it: `progress` lines (validated, spawning, ready, draining), then
    /// the `reloadResult` once the old generation has drained (or as soon as the reload failed).
    case reloadAndWait
    /// Stop accepting, finish in-flight work and exit; answered with `progress` lines, then `done`.
    case drain(timeoutSeconds: Double?)
    /// Stop (gracefully, like SIGTERM, unless `fast`); answered with `done`. With `wait`, a second `done` follows
    /// as the master exits, saying whether it exited cleanly (status 0, no request cut by the drain timeout); a
    /// master from before `wait` ignores it and only closes the connection as it exits.
    case stop(fast: Bool, wait: Bool? = nil)
    /// Switch to the binary now installed (like SIGUSR2): `progress` lines (probing, exec), then either a failed
    /// `reloadResult` or, once the master has executed the new binary, the end of the connection. The requester
    /// then reconnects and sends `awaitUpgrade`.
    case upgrade
    /// Pools and targets: health, admin state and the workers' counters; answered with `upstreamsReport`.
    case upstreams
    /// Changes a target's admin state ("enabled", "drain", "disabled") on every worker; answered with `done`, or
    /// with a `notFound` failure for an unknown pool or target. `upstream` nil: in every pool that has the target
    /// (a server under maintenance is usually in several).
    case setTargetAdmin(upstream: String?, target: String, state: String)
    /// Opens the access-log file afresh (after logrotate moved it) and hands it to every worker; answered with
    /// `done` once every worker has swapped (or naming those that did not). Like SIGUSR1 to the master.
    case reopenLogs
    /// Sent to the new binary after an upgrade's exec: `progress` lines while its generation starts, then the
    /// `reloadResult` once it serves or, with `untilDrained`, once the old generation has drained too (as for
    /// `reloadAndWait`).
    case awaitUpgrade(untilDrained: Bool)
    /// The instance's metrics (jester-metrics(7)) in the format `accept` (an HTTP Accept header; nil: the
    /// Prometheus text format) negotiates: answered with `metricsExposition`. The admin API's `GET /metrics`
    /// goes through the same dispatcher.
    case metrics(accept: String?)
    /// A live stream of access records from every worker that `filter` matches: answered with `tapRecords`
    /// batches until the requester closes the connection.
    case tap(TapFilter)
    /// The shared HTTP cache's size and counters: answered with `cacheReport`, or a `notFound` failure when no
    /// route caches.
    case cacheStatus
    /// Removes one stored response, or every one whose key starts with a prefix, from the shared cache on
    /// every worker: answered with `cachePurged`, or a `notFound` failure when no route caches.
    case cachePurge(CachePurgeTarget)

    // MARK: master → jesterctl
    case statusReport(StatusReport)
    /// A scrape's answer to `metrics`: the exposition text and the Content-Type it is in.
    case metricsExposition(contentType: String, body: String)
    case upstreamsReport([TargetReport])
    /// The answer to `cacheStatus`.
    case cacheReport(CacheStatusReport)
    /// The answer to `cachePurge`: how many entries it removed.
    case cachePurged(CachePurgeResult)
    /// The outcome of a reload: the new generation, or every configuration error with file:line:column.
    case reloadResult(ReloadResult)
    /// A progress line of a longer operation (drain).
    case progress(ProgressReport)
    /// A finished operation.
    case done(success: Bool, message: String)
    /// The request was refused or failed; `reason` lets jesterctl choose its exit status (nil from a master
    /// that did not say: a refusal).
    case failure(message: String, reason: FailureReason? = nil)

    // MARK: master → worker
    /// The worker's slot, generation and configuration: sent once, before the worker serves.
    case assignment(WorkerAssignment)
    /// Stop accepting and finish in-flight requests within `timeoutSeconds`, then exit.
    case beginDrain(timeoutSeconds: Double)
    /// The health (from the master's active checks) and admin state of every target the master knows of: the
    /// whole picture each time, so a worker that missed one message is right with the next.
    case targetStates([TargetState])
    /// The TLS session-ticket keys (80 bytes each), newest first: the newest encrypts, all decrypt. Sent to every
    /// worker whenever the master rotates them.
    case ticketKeys([Base64Bytes])
    /// Upstream target host names → the address each resolved to (the master looks them up every
    /// `resolve_interval`); the whole map each time.
    case resolvedAddresses([String: String])
    /// A jwt filter's key set as the master last fetched it from the filter's `jwks_url`: sent to every worker
    /// when a fetch brings a set that differs from the last one. A worker applies it only to its filter of that
    /// name whose URL is the same (a draining generation may have a filter of that name with other keys).
    case keySet(FilterKeySet)
    /// The filters of every open tap (empty: none, and the worker stops rendering records for it).
    case tapFilters([TapFilter])

    // MARK: worker → master
    /// The worker holds its listeners and serves.
    case workerReady(pid: Int32)
    /// Periodic counters.
    case workerStats(WorkerStats)
    /// The worker stopped accepting; `connections` are still open.
    case workerDraining(connections: Int)
    /// Every connection is closed; the worker exits next. `cutRequests`: how many requests were still in flight
    /// when the drain timeout passed and were cut (nil from a worker of a release that did not count them).
    case workerDrained(cutRequests: Int? = nil)
    /// The worker writes its access log to the descriptor the master sent with reopen number `sequence` (see
    /// `AccessLogChannel`), everything written before it flushed to the previous one.
    case accessLogReopened(sequence: UInt64)
    /// Access records a tap filter matched (worker → master, a batch at most every 100 ms; master → jesterctl,
    /// those the requester's filter matches). `dropped`: records left out because the bounded queue was full.
    case tapRecords([TapRecord], dropped: Int)
    /// Worker → master: the loopback UDP ports where this worker takes QUIC datagrams other workers forward to
    /// it (HTTP/3 without steering by connection ID; see `QUICPeer`).
    case quicInboxes([QUICInbox])
    /// Master → worker: every live worker's forwarding inboxes, so a datagram that reached the wrong worker goes
    /// on to its owner (sent when one is added or gone, and when a generation starts serving).
    case quicPeers([QUICPeer])
}

/// Why the master refused or failed a request, so jesterctl's exit status tells a script what went wrong.
public enum FailureReason: String, Codable, Sendable, Equatable {
    /// The request named an upstream pool or target the configuration does not have.
    case notFound
    /// The request was malformed or not a request (a bug or a version mismatch, not the operator's doing).
    case invalidRequest
    /// The peer may not use the control socket.
    case permissionDenied
}

/// The version every frame carries. A peer with another major version is refused with a clear message, so a
/// jesterctl from another release never misreads a master's answer.
public enum ControlProtocol {
    public static let version = 1
    /// The largest frame accepted (the configuration sent to workers is the largest message).
    public static let maxFrameSize = 16 * 1024 * 1024
}

/// A message with the protocol version it was written in.
public struct ControlEnvelope: Codable, Sendable, Equatable {
    public var version: Int
    /// Correlation id: a requester may number its requests, and every answer to a request carries the request's
    /// id, so a client with several requests in flight (the admin API, a control plane) can tell the answers
    /// apart. Optional, so a peer from a release without ids (an old worker or jesterctl across a binary upgrade)
    /// reads and writes frames as before: JSON decoding ignores the unknown key, and a missing one is nil.
    public var id: UInt64?
    public var message: ControlMessage

    public init(_ message: ControlMessage, id: UInt64? = nil) {
        self.version = ControlProtocol.version
        self.id = id
        self.message = message
    }
}

/// Where the answers to one control request go, whatever carried it: the control socket's connection today,
/// the admin HTTP API and a control plane later. The master's dispatcher answers through this and knows nothing
/// of the transport; each target stamps its answers with the request's correlation id.
public protocol ControlReplyTarget: AnyObject, Sendable {
    /// Sends one answer (possibly one of several: progress lines, then a result).
    func send(_ message: ControlMessage)
    /// Whether answers can still arrive (a watcher that left stops getting progress).
    var isOpen: Bool { get }
    /// Ends the exchange (after a refusal or the last answer).
    func close()
}

/// `jesterctl status`: the master and one row per worker.
public struct StatusReport: Codable, Sendable, Equatable {
    public var pid: Int32
    public var version: String
    public var startedAt: Double
    public var configFile: String
    public var configHash: String
    public var generation: Int
    public var state: String
    public var workers: [WorkerStatus]
    /// The binary file was replaced on disk since the master started (a package upgrade): `jesterctl upgrade`
    /// switches to it. Optional so status from an older master still decodes.
    public var binaryReplaced: Bool?
    /// The last reload or upgrade that failed since the master started (nil: none did). Optional so status from
    /// an older master still decodes.
    public var lastFailedReload: FailedReload?
    /// The listeners of the serving configuration (nil from an older master).
    public var listeners: [ListenerStatus]?
    /// The serving configuration's Wasm policies, with what the serving generation's workers report of them
    /// (nil from an older master; empty without policies).
    public var policies: [PolicyStatus]?
    /// The control plane link (nil without `[control_plane]`, or from an older master).
    public var controlPlane: ControlPlaneStatus?

    public init(
        pid: Int32, version: String, startedAt: Double, configFile: String, configHash: String, generation: Int,
        state: String, workers: [WorkerStatus], binaryReplaced: Bool? = nil, lastFailedReload: FailedReload? = nil,
        listeners: [ListenerStatus]? = nil, policies: [PolicyStatus]? = nil, controlPlane: ControlPlaneStatus? = nil
    ) {
        self.controlPlane = controlPlane
        self.policies = policies
        self.binaryReplaced = binaryReplaced
        self.lastFailedReload = lastFailedReload
        self.listeners = listeners
        self.pid = pid
        self.version = version
        self.startedAt = startedAt
        self.configFile = configFile
        self.configHash = configHash
        self.generation = generation
        self.state = state
        self.workers = workers
    }
}

/// The master's link to its control plane, as `jesterctl status` shows it.
public struct ControlPlaneStatus: Codable, Sendable, Equatable {
    public var address: String
    /// "connected", "waiting to reconnect", "disconnected: why".
    public var state: String
    /// The control plane's version served (nil: the bootstrap file alone).
    public var version: Int?
    /// The last version this instance refused, and why (nil once a later one was applied).
    public var lastRefusal: String?

    public init(address: String, state: String, version: Int?, lastRefusal: String?) {
        self.address = address
        self.state = state
        self.version = version
        self.lastRefusal = lastRefusal
    }
}

/// One Wasm policy of the serving configuration, summed over the serving generation's workers.
public struct PolicyStatus: Codable, Sendable, Equatable {
    public var name: String
    public var module: String
    /// The module's SHA-256 (hex): which build runs.
    public var digest: String
    public var version: String?
    public var calls: Int
    public var failures: Int
    /// Workers where the policy failed `failure_threshold` calls in a row (it stays fail closed there).
    public var failedWorkers: Int
    public var memoryBytes: Int

    public init(
        name: String, module: String, digest: String, version: String?, calls: Int, failures: Int,
        failedWorkers: Int, memoryBytes: Int
    ) {
        self.name = name
        self.module = module
        self.digest = digest
        self.version = version
        self.calls = calls
        self.failures = failures
        self.failedWorkers = failedWorkers
        self.memoryBytes = memoryBytes
    }
}

/// One policy in one worker, as the worker reports it every second.
public struct PolicyStats: Codable, Sendable, Equatable {
    public var name: String
    public var calls: Int
    public var failures: Int
    /// Failed calls in a row now.
    public var consecutiveFailures: Int
    /// Past its failure_threshold.
    public var failed: Bool
    public var memoryBytes: Int
    /// What the policy counted (`counter-add`) in this worker since it started, by counter name.
    public var counters: [String: Int64]?

    public init(
        name: String, calls: Int, failures: Int, consecutiveFailures: Int, failed: Bool, memoryBytes: Int,
        counters: [String: Int64]? = nil
    ) {
        self.counters = counters
        self.name = name
        self.calls = calls
        self.failures = failures
        self.consecutiveFailures = consecutiveFailures
        self.failed = failed
        self.memoryBytes = memoryBytes
    }
}

/// A reload or binary upgrade that failed, for `jesterctl status`: the operator who missed the reload's own
/// answer (SIGHUP from a deploy script) sees that the running configuration is not the file on disk, and why.
public struct FailedReload: Codable, Sendable, Equatable {
    /// Seconds since the epoch when it failed.
    public var at: Double
    /// "reload" or "upgrade".
    public var kind: String
    /// Every error, each `file:line:column: error: message` or the reason the new workers failed.
    public var errors: [String]

    public init(at: Double, kind: String, errors: [String]) {
        self.at = at
        self.kind = kind
        self.errors = errors
    }
}

/// One listener as the serving configuration has it, for `jesterctl status`.
public struct ListenerStatus: Codable, Sendable, Equatable {
    public var name: String
    /// "host:port" as configured.
    public var address: String
    /// "http" (HTTP/1.1, and HTTP/2 unless turned off) or "tcp".
    public var `protocol`: String
    /// Whether it terminates TLS.
    public var tls: Bool

    public init(name: String, address: String, protocol: String, tls: Bool) {
        self.name = name
        self.address = address
        self.protocol = `protocol`
        self.tls = tls
    }
}

/// One worker as the master sees it.
public struct WorkerStatus: Codable, Sendable, Equatable {
    public var pid: Int32
    public var slot: Int
    public var generation: Int
    public var state: String
    public var connections: Int
    public var requests: Int
    public var rssBytes: Int
    public var restarts: Int
    /// The hash of the configuration this worker's generation runs.
    public var configHash: String?
    /// Seconds since the epoch when this worker started.
    public var startedAt: Double?
    /// When a draining worker's remaining connections are closed (seconds since the epoch).
    public var drainDeadline: Double?
    /// Its QUIC counters (nil without HTTP/3).
    public var quic: QUICStats?

    public init(
        pid: Int32, slot: Int, generation: Int, state: String, connections: Int, requests: Int, rssBytes: Int,
        restarts: Int
    ) {
        self.pid = pid
        self.slot = slot
        self.generation = generation
        self.state = state
        self.connections = connections
        self.requests = requests
        self.rssBytes = rssBytes
        self.restarts = restarts
    }

    public init(
        pid: Int32, slot: Int, generation: Int, state: String, connections: Int, requests: Int, rssBytes: Int,
        restarts: Int, configHash: String?, startedAt: Double?, drainDeadline: Double?, quic: QUICStats? = nil
    ) {
        self.init(pid: pid, slot: slot, generation: generation, state: state, connections: connections,
            requests: requests, rssBytes: rssBytes, restarts: restarts)
        self.configHash = configHash
        self.startedAt = startedAt
        self.drainDeadline = drainDeadline
        self.quic = quic
    }
}

/// Counters a worker reports about itself.
public struct WorkerStats: Codable, Sendable, Equatable {
    public var connections: Int
    public var requests: Int
    public var bytesIn: Int
    public var bytesOut: Int
    public var errors: Int
    /// Per-target counters of the worker's pools.
    public var targets: [TargetStats]?
    /// The worker's resident set size, read by the worker itself: under jester.service (ProtectProc=invisible)
    /// the master cannot see /proc of processes running as another user.
    public var rssBytes: Int?
    /// The worker's Wasm policies (nil without any).
    public var policies: [PolicyStats]?
    /// The worker's QUIC counters (nil without HTTP/3).
    public var quic: QUICStats?

    public init(
        connections: Int = 0, requests: Int = 0, bytesIn: Int = 0, bytesOut: Int = 0, errors: Int = 0,
        targets: [TargetStats]? = nil, rssBytes: Int? = nil, policies: [PolicyStats]? = nil, quic: QUICStats? = nil
    ) {
        self.quic = quic
        self.policies = policies
        self.targets = targets
        self.connections = connections
        self.requests = requests
        self.bytesIn = bytesIn
        self.bytesOut = bytesOut
        self.errors = errors
        self.rssBytes = rssBytes
    }
}

/// What the master decided about one target: its health (active checks) and its admin state.
public struct TargetState: Codable, Sendable, Equatable {
    public var upstream: String
    /// The target's address as configured ("host:port").
    public var target: String
    /// "healthy", "unhealthy", or "unknown" (not checked, or not yet).
    public var health: String
    /// "enabled", "drain" (no new requests) or "disabled" (no new requests, idle connections closed).
    public var admin: String

    public init(upstream: String, target: String, health: String, admin: String) {
        self.upstream = upstream
        self.target = target
        self.health = health
        self.admin = admin
    }
}

/// One target's counters in one worker (summed over workers in `TargetReport`).
public struct TargetStats: Codable, Sendable, Equatable {
    public var upstream: String
    public var target: String
    public var active: Int
    public var requests: Int
    public var failures: Int
    /// Ejected by this worker's passive health check.
    public var ejected: Bool
    /// The least-latency average, in milliseconds (0 when not measured).
    public var latencyMilliseconds: Double

    public init(
        upstream: String, target: String, active: Int, requests: Int, failures: Int, ejected: Bool,
        latencyMilliseconds: Double
    ) {
        self.upstream = upstream
        self.target = target
        self.active = active
        self.requests = requests
        self.failures = failures
        self.ejected = ejected
        self.latencyMilliseconds = latencyMilliseconds
    }
}

/// `jesterctl upstreams`: one row per target.
public struct TargetReport: Codable, Sendable, Equatable {
    public var state: TargetState
    /// Summed over the workers (the latency: their mean).
    public var active: Int
    public var requests: Int
    public var failures: Int
    /// Workers that have ejected it (passive health).
    public var ejectedBy: Int
    public var latencyMilliseconds: Double
    /// The target's pool fails open: every target still enabled fails its active checks, so all get requests
    /// anyway. Optional so a master from before the field (a binary upgrade's other side) still decodes.
    public var failOpen: Bool?

    public init(
        state: TargetState, active: Int, requests: Int, failures: Int, ejectedBy: Int, latencyMilliseconds: Double,
        failOpen: Bool? = nil
    ) {
        self.state = state
        self.active = active
        self.requests = requests
        self.failures = failures
        self.ejectedBy = ejectedBy
        self.latencyMilliseconds = latencyMilliseconds
        self.failOpen = failOpen
    }
}

/// The result of `jesterctl reload`.
public struct ReloadResult: Codable, Sendable, Equatable {
    public var success: Bool
    public var generation: Int
    public var configHash: String
    /// Configuration errors, each `file:line:column: error: message`, or the reason the new workers failed.
    public var errors: [String]

    public init(success: Bool, generation: Int, configHash: String, errors: [String]) {
        self.success = success
        self.generation = generation
        self.configHash = configHash
        self.errors = errors
    }
}

/// A progress line of a drain.
public struct ProgressReport: Codable, Sendable, Equatable {
    /// "draining" for a drain; for a reload "validated", "spawning", "ready", "draining".
    public var phase: String
    public var connections: Int
    public var workers: Int
    /// The generation the line is about (reloads: the new one while spawning, the old one while draining).
    public var generation: Int?

    public init(phase: String, connections: Int, workers: Int, generation: Int? = nil) {
        self.phase = phase
        self.connections = connections
        self.workers = workers
        self.generation = generation
    }
}

/// What a worker needs to serve, handed over by the master so workers never read configuration or key files.
public struct WorkerAssignment: Codable, Sendable, Equatable {
    public var slot: Int
    public var generation: Int
    /// The configuration, as JSON of `JesterConfig.Configuration` (kept opaque here so this module stays free of
    /// configuration types).
    public var configuration: Base64Bytes
    /// The listener names, in the order their sockets were passed (fds 4, 5, ...).
    public var listenerNames: [String]
    /// The user and group ids to switch to, or nil to keep the current ones (master not running as root).
    public var userID: UInt32?
    public var groupID: UInt32?
    /// Target health and admin states as the master knows them now.
    public var targetStates: [TargetState]?
    /// The TLS session-ticket keys, newest first (see `ControlMessage.ticketKeys`).
    public var ticketKeys: [Base64Bytes]?
    /// Target host names → addresses, as the master resolved them (see `ControlMessage.resolvedAddresses`).
    public var resolvedAddresses: [String: String]?
    /// The instance's shared connection counts (`ConnectionTable`): the descriptor passed after the listeners,
    /// and the partition this worker counts in. Nil when the master has none for it.
    public var connectionTableFD: Int32?
    public var connectionPartition: Int?
    /// The instance's shared rate-limit state (`RateLimitTable`): the descriptor passed after the listeners and
    /// the connection table's. Nil when the master has none (or is of a version without one).
    public var rateLimitTableFD: Int32?
    /// HTTP/3 0-RTT's replay records (a `RateLimitTable` of their own): the descriptor passed last of all. Nil
    /// from a master without one.
    public var earlyDataTableFD: Int32?
    /// The instance's metrics (`MetricsTable`): the descriptor passed after the rate-limit table's, and the
    /// partition this worker counts in. Nil from a master without one (or of a version without metrics).
    public var metricsTableFD: Int32?
    public var metricsPartition: Int?
    /// The shared HTTP cache's index (`CacheIndex`), passed after the access-log channel; nil when no route
    /// caches (or from a master of a version without a cache).
    public var cacheIndexFD: Int32?
    /// The access-log file (`[log] access_log_file`), opened by the master and passed after the tables; nil:
    /// standard output.
    public var accessLogFD: Int32?
    /// The worker's end of its access-log channel (`AccessLogChannel`), passed last: the master sends a freshly
    /// opened access-log file over it on reopen. Nil from a master without one.
    public var accessLogChannelFD: Int32?
    /// The key sets the master has fetched for the configuration's jwt filters with a `jwks_url`, so a worker
    /// serves with keys from its first request (see `ControlMessage.keySet`). Nil from a master without them.
    public var keySets: [FilterKeySet]?
    /// The UDP sockets of listeners with `http3 = true` (this worker slot's), by listener name: descriptors passed
    /// after everything else. Nil from a master without HTTP/3.
    public var datagramSocketFDs: [String: Int32]?
    /// The instance's QUIC secrets (stateless-reset secret, then token secret, 32 bytes each), made by the master
    /// and the same in every worker and generation, so a token or a reset made by one is honoured by another.
    public var quicKeys: Base64Bytes?
    /// The listeners whose QUIC datagrams the master steers by connection ID (`QUICSteering`): there a datagram
    /// for a connection this worker does not know belongs to no live worker, and the client is told at once with
    /// a stateless reset. On the others the kernel spreads datagrams by address, and the workers forward a
    /// datagram to the worker that owns it. Nil from a master without steering.
    public var quicSteeredListeners: [String]?

    public init(
        slot: Int, generation: Int, configuration: some Sequence<UInt8>, listenerNames: [String], userID: UInt32?,
        groupID: UInt32?
    ) {
        self.slot = slot
        self.generation = generation
        self.configuration = Base64Bytes(configuration)
        self.listenerNames = listenerNames
        self.userID = userID
        self.groupID = groupID
    }
}

/// A JWK Set fetched by the master for one jwt filter (`ControlMessage.keySet`, `WorkerAssignment.keySets`).
public struct FilterKeySet: Codable, Sendable, Equatable {
    /// The filter's name in the configuration.
    public var filter: String
    /// The `jwks_url` it was fetched from; a worker whose filter of that name has another URL ignores it.
    public var url: String
    /// The set's JSON as served (the master checked that it holds at least one usable key).
    public var jwks: Base64Bytes

    public init(filter: String, url: String, jwks: some Sequence<UInt8>) {
        self.filter = filter
        self.url = url
        self.jwks = Base64Bytes(jwks)
    }
}
