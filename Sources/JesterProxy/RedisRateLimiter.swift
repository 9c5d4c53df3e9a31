// SPDX-License-Identifier: Apache-2.0
import JesterCore
import Logging
import NIOCore
import NIOPosix

/// The `cluster` scope of rate limits: one limit shared by every Jester instance through Redis.
///
/// One per worker and Redis server, on the worker's loop. Each check runs `RedisGCRAScript` atomically in Redis,
/// pipelined over a small pool of connections. Each connection opens with the `RedisHandshake` (AUTH, SELECT)
/// before any script; a refused handshake counts as a failed connection attempt (Redis known down, `on_failure`
/// at once, logged once per interval with Redis's reason, retried with backoff). A server named by host name is
/// connected to at the address the master resolved (`follow(resolved:)`). Redis being down, slow or confused
/// never stalls a request longer than `timeout`: the check answers `.unavailable` by then, and at once while
/// Redis is known to be down (the last connection attempt failed), when the caller applies its `on_failure`.
/// Connections come back in the background with exponential backoff; the unavailability is logged at most once
/// per `reportInterval`, with the number of checks it affected. Keys already over their limit are answered from
/// an `OverLimitCache` without a round trip. Loop-confined, hence `@unchecked Sendable`.
///
/// Its timers, connections and the replies they wait for hold it strongly (weak references would move its
/// reference count to a side table, as `ConnectionTimer` explains): `shutdown()` cancels and closes them all,
/// and must be called when the worker drops the limiter (a reload with another address, the worker's exit).
final class RedisRateLimiter: RedisConnectionOwner, @unchecked Sendable {
    /// One check in flight: completed exactly once, by its reply, a failure, or its deadline.
    private final class Call {
        let key: String
        let arguments: [String]
        let deadline: NIODeadline
        var completion: ((ClusterRateDecision) -> Void)?
        /// Sent as EVAL already after a NOSCRIPT: a second NOSCRIPT is an error, not a loop.
        var retriedWithEval = false

        init(
            key: String, arguments: [String], deadline: NIODeadline,
            completion: @escaping (ClusterRateDecision) -> Void
        ) {
            self.key = key
            self.arguments = arguments
            self.deadline = deadline
            self.completion = completion
        }
    }

    let eventLoop: any EventLoop
    /// The server as configured: an IP literal, or a host name the master looks up.
    let host: String
    let port: Int
    /// Where new connections go: the literal, or the host's address as last resolved; nil until it is known.
    private(set) var address: SocketAddress?
    let poolSize: Int
    let keyPrefix: String
    private let timeout: TimeAmount
    private let handshake: RedisHandshake
    private let logger: Logger
    /// A connection whose oldest command has waited this long is considered stuck and replaced.
    private let stuckAfter: TimeAmount
    /// Connections open and usable, and how many are being opened.
    private var connections: [RedisConnection] = []
    private var connecting = 0
    /// The last connection attempt failed: checks answer `.unavailable` at once until one succeeds.
    private var isDown = false
    private var backoff = ReconnectBackoff()
    private var reconnect: Scheduled<Void>?
    /// Checks waiting for a first connection (only while one is being opened and Redis is not known down).
    private var waitingForConnection: [Call] = []
    /// Checks not completed yet, in deadline order (one timeout for all, so arrival order is deadline order): one
    /// timer, for the first, serves them all.
    private var inFlight = CircularBuffer<Call>(initialCapacity: 64)
    private var deadlineTimer: Scheduled<Void>?
    /// The script's SHA-1 as the server reported it to SCRIPT LOAD; EVAL until it is known.
    private var scriptSHA: String?
    private var overLimit = OverLimitCache(capacity: 10_000)
    private var unavailability: UnavailabilityReport
    private var reportFlush: Scheduled<Void>?
    private var isShutDown = false
    /// The last (rate, period, burst, delay) and its script arguments: a route's limit is the same on every
    /// request.
    private var lastLimit: (rate: Int, period: Duration, burst: Int, delay: Int, arguments: [String])?

    /// Checks answered by Redis, and from the over-limit cache (for tests and, later, metrics).
    private(set) var roundTrips = 0
    private(set) var cacheHits = 0

    /// `host` and `port`: `redis.address`; a host name's address is looked up in `resolved` (the master's
    /// lookups). `poolSize`: most connections to keep (commands are pipelined, so a few carry thousands of checks
    /// a second). `keyPrefix` goes before every key, separating Jester's keys from other users of the Redis.
    /// `handshake`: what each connection sends first (AUTH, SELECT).
    init(
        eventLoop: any EventLoop, host: String, port: Int, resolved: [String: String] = [:],
        handshake: RedisHandshake = RedisHandshake(), poolSize: Int, timeout: Duration, keyPrefix: String,
        logger: Logger, reportInterval: Duration = .seconds(10)
    ) {
        self.eventLoop = eventLoop
        self.host = host
        self.port = port
        address = Self.address(host: host, port: port, resolved: resolved)
        self.handshake = handshake
        self.poolSize = max(1, poolSize)
        self.timeout = TimeAmount(timeout)
        self.keyPrefix = keyPrefix
        self.logger = logger
        stuckAfter = max(.seconds(1), self.timeout * 10)
        unavailability = UnavailabilityReport(interval: TimeAmount(reportInterval))
    }

    /// `host`'s address: itself when it is an IP literal, else the master's lookup in `resolved`; nil when there
    /// is none yet.
    static func address(host: String, port: Int, resolved: [String: String]) -> SocketAddress? {
        if let literal = try? SocketAddress(ipAddress: host, port: port) { return literal }
        return resolved[host].flatMap { try? SocketAddress(ipAddress: $0, port: port) }
    }

    /// "host:port" as configured, for logs.
    var server: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Follows the master's lookups of host names: when the server's name resolves to another address, new
    /// connections go there, and the open ones leave the pool and close once every check sent on them has been
    /// answered or timed out (a fail-over behind a DNS name moves without failing the checks in flight).
    func follow(resolved: [String: String]) {
        eventLoop.assertInEventLoop()
        guard !isShutDown, let new = Self.address(host: host, port: port, resolved: resolved), new != address else {
            return
        }
        logger.notice("redis address changed", metadata: ["redis": "\(server)", "address": "\(new)"])
        address = new
        let retired = connections
        connections = []
        if !retired.isEmpty {
            eventLoop.scheduleTask(in: timeout) { for connection in retired { connection.close() } }
        }
        // Not waiting out a backoff that was about the old address (or about having none).
        reconnect?.cancel()
        reconnect = nil
        if isDown || !waitingForConnection.isEmpty { connect() }
    }

    /// Checks one request against the limit of `rate` requests per `period` (plus `burst` at once, of which
    /// `delay` pass without waiting: `GCRA`'s terms) for `key`. Called on the loop; `completion` runs on the loop,
    /// at most `timeout` after `now` (possibly before this returns).
    func check(
        key: String, rate: Int, period: Duration, burst: Int, delay: Int = .max, now: NIODeadline,
        completion: @escaping (ClusterRateDecision) -> Void
    ) {
        eventLoop.assertInEventLoop()
        let fullKey = keyPrefix + key
        if let refusal = overLimit.refusal(for: fullKey, now: now) {
            cacheHits += 1
            completion(refusal)
            return
        }
        guard !isShutDown else {
            completion(.unavailable)
            return
        }
        let arguments: [String]
        if let lastLimit, lastLimit.rate == rate, lastLimit.period == period, lastLimit.burst == burst,
            lastLimit.delay == delay
        {
            arguments = lastLimit.arguments
        } else {
            arguments = RedisGCRAScript.arguments(rate: rate, period: period, burst: burst, delay: delay)
            lastLimit = (rate, period, burst, delay, arguments)
        }
        if isDown {
            unavailable(reason: nil, now: now)
            completion(.unavailable)
            return
        }
        let call = Call(key: fullKey, arguments: arguments, deadline: now + timeout, completion: completion)
        inFlight.append(call)
        armDeadlineTimer()
        dispatch(call, now: now)
    }

    /// Closes the connections and answers every check in flight with `.unavailable`; later checks get it too.
    func shutdown() {
        guard eventLoop.inEventLoop else {
            eventLoop.execute { self.shutdown() }
            return
        }
        guard !isShutDown else { return }
        isShutDown = true
        reconnect?.cancel()
        deadlineTimer?.cancel()
        reportFlush?.cancel()
        for connection in connections { connection.close() }
        connections = []
        let calls = inFlight
        inFlight.removeAll()
        waitingForConnection = []
        for call in calls { complete(call, .unavailable) }
    }

    // MARK: Sending

    /// Sends on the least busy connection, opening another while the pool has room and every open one is busy.
    private func dispatch(_ call: Call, now: NIODeadline) {
        let connection = leastBusy()
        if connections.count + connecting < poolSize, connection.map({ $0.outstanding > 0 }) ?? true {
            connect()
        }
        guard let connection else {
            waitingForConnection.append(call)
            return
        }
        send(call, on: connection, now: now)
    }

    /// The open connection with the fewest commands waiting (one told to close may linger until it is).
    private func leastBusy() -> RedisConnection? {
        var best: RedisConnection?
        for connection in connections where connection.isUsable {
            if best == nil || connection.outstanding < best!.outstanding { best = connection }
        }
        return best
    }

    private func send(_ call: Call, on connection: RedisConnection, now: NIODeadline) {
        let command: [UInt8]
        if let scriptSHA, !call.retriedWithEval {
            command = RedisGCRAScript.evalSHA(scriptSHA, key: call.key, arguments: call.arguments)
        } else {
            command = RedisGCRAScript.eval(key: call.key, arguments: call.arguments)
        }
        connection.send(command, now: now) { result in
            self.received(result, for: call)
        }
    }

    private func received(_ result: Result<RESPValue, RedisConnectionFailure>, for call: Call) {
        guard call.completion != nil else { return }  // timed out already
        let now = NIODeadline.now()
        switch result {
        case .failure(let failure):
            unavailable(reason: failure.reason, now: now)
            complete(call, .unavailable)
        case .success(let reply):
            if reply.errorKind == "NOSCRIPT", !call.retriedWithEval {
                // The script cache was flushed (SCRIPT FLUSH, a restart behind a proxy, a fail-over): EVAL
                // carries the script itself, and the next connection's SCRIPT LOAD is not waited for.
                call.retriedWithEval = true
                scriptSHA = nil
                reloadScript()
                if let connection = leastBusy() {
                    send(call, on: connection, now: now)
                } else {
                    waitingForConnection.append(call)
                }
                return
            }
            guard let decision = RedisGCRAScript.decision(from: reply) else {
                unavailable(reason: "unexpected script reply: \(reply)", now: now)
                complete(call, .unavailable)
                return
            }
            roundTrips += 1
            // Only a served reply proves the connection good: one Redis accepts and then closes (maxclients)
            // must not make the pool reconnect in a tight loop.
            backoff.succeeded()
            if case .refuse(let retryAfter) = decision {
                overLimit.insert(call.key, until: now + TimeAmount(retryAfter), now: now)
            }
            complete(call, decision)
        }
    }

    private func complete(_ call: Call, _ decision: ClusterRateDecision) {
        guard let completion = call.completion else { return }
        call.completion = nil
        // Completed calls leave the deadline queue when they reach its front.
        while let first = inFlight.first, first.completion == nil { inFlight.removeFirst() }
        completion(decision)
    }

    // MARK: Deadlines

    private func armDeadlineTimer() {
        guard deadlineTimer == nil, let first = inFlight.first else { return }
        deadlineTimer = eventLoop.scheduleTask(deadline: first.deadline) {
            self.deadlinePassed()
        }
    }

    /// Answers every check past its deadline with `.unavailable`, and replaces connections that stopped
    /// answering (a Redis stopped, or a network path lost, shows no close for minutes).
    private func deadlinePassed() {
        deadlineTimer = nil
        guard !isShutDown else { return }
        let now = NIODeadline.now()
        while let first = inFlight.first, first.deadline <= now {
            inFlight.removeFirst()
            if first.completion != nil {
                unavailable(reason: "no reply within the timeout", now: now)
                complete(first, .unavailable)
            }
        }
        waitingForConnection.removeAll { $0.completion == nil }
        for connection in connections {
            if let sentAt = connection.oldestSentAt, now - sentAt > stuckAfter { connection.close() }
        }
        armDeadlineTimer()
    }

    // MARK: Connections

    private func connect() {
        guard !isShutDown else { return }
        guard let address else {
            connectFailed(reason: "\(host) has no address yet (the master looks it up)")
            return
        }
        connecting += 1
        let connection = RedisConnection(owner: self)
        let connectTimeout = max(timeout, .seconds(1))
        ClientBootstrap(group: eventLoop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(connection)
                }
            }
            .connect(to: address)
            .hop(to: eventLoop)
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    guard !self.isShutDown else {
                        self.connecting -= 1
                        channel.close(promise: nil)
                        return
                    }
                    self.open(connection, within: connectTimeout)
                case .failure(let error):
                    self.connecting -= 1
                    self.connectFailed(reason: "connect failed: \(error)")
                }
            }
    }

    /// Runs the handshake on a new connection; it joins the pool once Redis accepted it. A Redis that accepts
    /// the connection and never answers is given up after `limit`, like a connection that never opens.
    private func open(_ connection: RedisConnection, within limit: TimeAmount) {
        // Closing fails the handshake's commands, which answers `open` below (and cancelling after that is moot).
        let giveUp = eventLoop.scheduleTask(in: limit) { connection.close() }
        connection.open(handshake, now: NIODeadline.now()) { result in
            giveUp.cancel()
            self.connecting -= 1
            switch result {
            case .success:
                guard !self.isShutDown else {
                    connection.close()
                    return
                }
                self.connected(connection)
            case .failure(.refused(let reason)):
                self.connectFailed(reason: reason)
            case .failure(let failure):
                self.connectFailed(reason: "handshake failed: \(failure.reason)")
            }
        }
    }

    private func connected(_ connection: RedisConnection) {
        if isDown {
            logger.notice("redis available again", metadata: ["redis": "\(server)"])
        }
        isDown = false
        connections.append(connection)
        // Pipelined ahead of any check on this connection, so EVALSHA after it finds the script.
        if scriptSHA == nil { reloadScript(on: connection) }
        let waiting = waitingForConnection
        waitingForConnection = []
        let now = NIODeadline.now()
        for call in waiting where call.completion != nil { send(call, on: connection, now: now) }
    }

    private func connectFailed(reason: String) {
        let now = NIODeadline.now()
        if connections.isEmpty {
            // Known down: checks answer at once instead of each waiting out its timeout.
            isDown = true
            let waiting = waitingForConnection
            waitingForConnection = []
            for call in waiting where call.completion != nil {
                unavailable(reason: reason, now: now)
                complete(call, .unavailable)
            }
        }
        unavailable(reason: reason, now: now, affected: 0)
        scheduleReconnect(after: backoff.failed())
    }

    func redisConnectionClosed(_ connection: RedisConnection, failure: RedisConnectionFailure) {
        connections.removeAll { $0 === connection }
        guard !isShutDown, connections.isEmpty, connecting == 0 else { return }
        // The first delay is short (a Redis restart, an idle connection cut); repeated losses back off.
        scheduleReconnect(after: backoff.failed())
    }

    private func scheduleReconnect(after delay: TimeAmount) {
        guard reconnect == nil, !isShutDown else { return }
        reconnect = eventLoop.scheduleTask(in: delay) {
            self.reconnect = nil
            if self.connections.isEmpty, self.connecting == 0 { self.connect() }
        }
    }

    /// Asks Redis for the script's SHA-1 (and loads it), on `connection` or the least busy one.
    private func reloadScript(on connection: RedisConnection? = nil) {
        guard let connection = connection ?? leastBusy() else { return }
        connection.send(RedisGCRAScript.load, now: NIODeadline.now()) { result in
            if case .success(.bulkString(let sha?)) = result { self.scriptSHA = String(decoding: sha, as: UTF8.self) }
        }
    }

    // MARK: Reporting

    /// Counts `affected` checks answered `.unavailable` and logs, at most once per interval, how many.
    private func unavailable(reason: String?, now: NIODeadline, affected: Int = 1) {
        guard let report = unavailability.record(reason: reason, affected: affected, now: now) else {
            scheduleReportFlush()
            return
        }
        log(report)
    }

    private func log(_ report: UnavailabilityReport.Report) {
        logger.warning("redis unavailable for cluster rate limits", metadata: [
            "redis": "\(server)", "reason": "\(report.reason)",
            "affected_requests": .stringConvertible(report.affected),
            "seconds": .stringConvertible(report.seconds),
        ])
    }

    /// Logs what was counted since the last report once the interval is over, so the last count of an outage
    /// is not lost when no check comes after it.
    private func scheduleReportFlush() {
        guard reportFlush == nil, let due = unavailability.nextReport else { return }
        reportFlush = eventLoop.scheduleTask(deadline: due) {
            self.reportFlush = nil
            if let report = self.unavailability.flush(now: NIODeadline.now()) { self.log(report) }
        }
    }
}
