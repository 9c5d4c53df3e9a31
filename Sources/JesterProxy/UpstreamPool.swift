// SPDX-License-Identifier: Apache-2.0
#if canImport(Glibc)
import Glibc
#endif
import JesterConfig
import JesterControl
import JesterCore
import JesterLogging
import JesterTLS
import Logging
import NIOCore
import NIOPosix

/// Why an exchange with an upstream failed, and so which status the client gets.
enum UpstreamFailure: Error, Sendable {
    /// The target refused or reset the connection attempt: 502.
    case connectFailed(String)
    /// No connection within `connect_timeout`: 504.
    case connectTimedOut
    /// No response head within `response_timeout`: 504.
    case responseTimedOut
    /// The connection closed before the response was complete.
    case closedEarly
    /// An HTTP/2 target reset the request's stream, refused it (GOAWAY), or its connection failed, before the
    /// response was complete; the text says which, for the log: 502. Retried like `closedEarly`.
    case streamReset(String)
    /// The target's TLS failed the connection after the handshake (an alert): 502.
    case tlsFailed(String)
    /// The response could not be parsed or was framed ambiguously: 502.
    case invalidResponse(HTTPParseError)
    /// The target answered 101 Switching Protocols to a request that asked for no upgrade: 502.
    case unaskedUpgrade
    /// No target may take a request (every one excluded after failures): 503.
    case noTarget
    /// The pool's circuit breaker is open, or the pool is at its max_requests: 503 at once.
    case circuitOpen(String)
    /// The request's body cannot go upstream as the route promised it (decoded: too large once decoded, 413; not
    /// valid for its coding, 400; a coding Jester cannot remove, 415). Not the target's fault; never retried.
    case requestBodyRefused(status: Int, reason: String)

    /// What a failed connection attempt to `target` is: a timeout (504) or a refusal or reset (502), said as
    /// `connect 127.0.0.1:8080: connection refused` rather than in SwiftNIO's nested wording.
    init(connecting error: any Error, target: String) {
        if case ChannelError.connectTimeout = error {
            self = .connectTimedOut
        } else {
            self = .connectFailed("connect \(target): \(Self.plainText(of: error))")
        }
    }

    /// An error as an operator reads it: the system's words for an errno, lowercased (`connection refused`).
    static func plainText(of error: any Error) -> String {
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)).lowercased() }
        if let error = error as? NIOConnectionError, let first = error.connectionErrors.first {
            return plainText(of: first.error)
        }
        return "\(error)"
    }

    var status: Int {
        switch self {
        case .connectTimedOut, .responseTimedOut: return 504
        case .noTarget, .circuitOpen: return 503
        case .requestBodyRefused(let status, _): return status
        default: return 502
        }
    }

    var reason: String {
        switch self {
        case .connectFailed(let reason): return reason
        case .connectTimedOut: return "connect timed out"
        case .responseTimedOut: return "response timed out"
        case .closedEarly: return "upstream closed the connection early"
        case .streamReset(let reason): return reason
        case .tlsFailed(let reason): return "upstream TLS failed: \(reason)"
        case .invalidResponse(let error): return "invalid response: \(error.reason)"
        case .unaskedUpgrade: return "invalid response: 101 Switching Protocols to a request without an upgrade"
        case .noTarget: return "no upstream target available"
        case .circuitOpen(let why): return "circuit breaker: \(why)"
        case .requestBodyRefused(_, let reason): return reason
        }
    }
}

/// What waits for `UpstreamPool.acquire`: a client connection or an HTTP/2 stream.
protocol UpstreamWaiter: AnyObject {
    /// The exchange's upstream (an HTTP/1.1 connection, or a stream on an HTTP/2 one), or why there is none.
    /// Called on the pool's loop, possibly before `acquire` returns.
    func upstreamAcquired(_ result: Result<any ExchangeUpstream, UpstreamFailure>, from pool: UpstreamPool)
}

/// One upstream pool in one worker: its balancer (algorithm, priority groups, passive health), and its idle
/// keep-alive connections.
///
/// Pools are per worker on purpose: a connection belongs to the event loop that opened it, and each worker
/// balancing the requests it holds balances the sum too (see `LeastRequests`). Passive health is per worker as
/// well (see `OutlierDetector`). Loop-confined, hence `@unchecked Sendable`.
final class UpstreamPool: @unchecked Sendable {
    let settings: UpstreamSettings
    let eventLoop: any EventLoop
    /// Each target's address: resolved by the master for host names (and followed when it changes).
    private var addresses: [SocketAddress?]
    /// "host:port" of each target, rendered once: logs and headers ask for it on every request.
    private let descriptions: [String]
    private var balancer: UpstreamBalancer
    /// What `balance = "hash"` hashes; nil for the other algorithms.
    private let balancingKey: BalancingKey?
    private var idle: [[UpstreamConnection]]
    private var retryBudget: RetryBudget
    private var breaker: CircuitBreaker? {
        // Every change of state passes here, whichever call made it (no `oldValue`: mutated in place).
        didSet { if let metrics, let state = breaker?.state { metrics.circuit(state) } }
    }
    /// The worker's metrics for this pool (ejections, breaker states); nil without metrics.
    var metrics: PoolMetrics?
    /// Requests admitted whose connection is not settled yet (still connecting): they count against
    /// max_requests like the ones in flight.
    private var acquiring = 0
    private let logger = Logger(component: .upstream)
    /// TLS to the targets, when the pool has `tls`.
    private let tls: TLSClientContext?
    /// The name each target's certificate must carry (and SNI): `server_name`, else the target's host.
    private let tlsHosts: [String]
    /// Connections to each target, for pools that speak HTTP/2 (`protocol = "h2"`): streams share them.
    private var http2Connections: [[HTTP2UpstreamConnection]]
    /// Each target's `max_requests` (0: no limit), and whether any target has one.
    private let requestLimits: [Int]
    private let hasRequestLimits: Bool
    /// `sticky_cookie`: the cookie's name, and each target's token (a hash of the pool and target names: the
    /// same in every worker and after a reload, and it does not reveal the address).
    let stickyCookie: [UInt8]?
    let stickyTokens: [[UInt8]]
    /// The worker's deadlines, where idle connections keep theirs.
    let timers: TimerQueue
    /// `response_timeout` and `idle_timeout` as NIO time, converted once (each is armed on every request).
    let responseTimeout: TimeAmount
    let idleTimeout: TimeAmount
    /// The last TLS session of each target, resumed by the next connection (`session_reuse`).
    private var tlsSessions: [TLSSession?]
    /// What opens the connections to targets: sockets in production, embedded channels in the exchange tests.
    private let connector: any UpstreamConnector

    init(
        settings: UpstreamSettings, eventLoop: any EventLoop, timers: TimerQueue, firstTarget: Int,
        resolved: [String: String] = [:], connector: any UpstreamConnector = SocketConnector()
    ) {
        self.settings = settings
        self.connector = connector
        self.eventLoop = eventLoop
        self.timers = timers
        responseTimeout = TimeAmount(settings.responseTimeout)
        idleTimeout = TimeAmount(settings.idleTimeout)
        // The loader checked the settings with the same call; a failure here would be a changed file, which the
        // master's next load reports.
        tls = settings.tls.flatMap { try? UpstreamTLS.makeContext($0, http2: settings.protocolName == "h2") }
        http2Connections = Array(repeating: [], count: settings.targets.count)
        tlsHosts = settings.targets.map { settings.tls?.serverName ?? $0.address.host }
        tlsSessions = Array(repeating: nil, count: settings.targets.count)
        requestLimits = settings.targets.map { $0.maxRequests ?? settings.maxRequestsPerTarget ?? 0 }
        hasRequestLimits = requestLimits.contains { $0 > 0 }
        stickyCookie = settings.stickyCookie.map { Array($0.utf8) }
        stickyTokens = settings.targets.map { target in
            let hash = SplitMix64.hash("\(settings.name)/\(target.description)".utf8)
            let hex = String(hash, radix: 16)
            return Array((String(repeating: "0", count: 16 - hex.count) + hex).utf8)
        }
        addresses = settings.targets.map { target in
            // The master's lookup when it has one; a name it has not looked up yet (new in this reload) is
            // resolved here, once, before the worker serves.
            if let ip = resolved[target.address.host] { return try? SocketAddress(ipAddress: ip, port: target.address.port) }
            return try? SocketAddress.makeAddressResolvingHost(target.address.host, port: target.address.port)
        }
        descriptions = settings.targets.map(\.description)
        let algorithm = UpstreamBalancer.Algorithm(rawValue: settings.balance) ?? .roundRobin
        balancer = UpstreamBalancer(
            algorithm: algorithm,
            targets: settings.targets.map {
                UpstreamBalancer.Target(name: $0.description, weight: $0.weight, priority: $0.backup ? 1 : 0)
            },
            outlierSettings: OutlierDetector.Settings(
                consecutiveFailures: settings.maxFails, baseEjectionSeconds: Self.seconds(settings.failTimeout),
                slowStartSeconds: Self.seconds(settings.slowStart)),
            seed: UInt64.random(in: .min ... .max))
        balancingKey = algorithm == .hash ? BalancingKey(settings.hashKey) : nil
        retryBudget = RetryBudget(share: Double(settings.retryBudgetPercent) / 100)
        breaker = settings.circuitBreaker.map {
            CircuitBreaker(settings: .init(
                maxRequests: $0.maxRequests, failureRatio: Double($0.failurePercent) / 100,
                minimumRequests: $0.minimumRequests, windowSeconds: Self.seconds($0.window),
                openSeconds: Self.seconds($0.openFor), halfOpenRequests: $0.halfOpenRequests))
        }
        idle = Array(repeating: [], count: settings.targets.count)
        // Workers start at different points of the rotation, so their first requests do not all go to one target.
        for _ in 0..<(firstTarget % max(1, settings.targets.count)) { _ = balancer.pick(hashKey: nil, now: now) }
    }

    var name: String { settings.name }

    private var now: Double { Double(NIODeadline.now().uptimeNanoseconds) / 1e9 }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// The balancing hash of a request, when the pool hashes (`balance = "hash"`).
    func hashKey(head: HTTPHead, bytes: UnsafeRawBufferPointer, clientAddress: String) -> UInt64? {
        balancingKey?.hash(head: head, bytes: bytes, clientAddress: clientAddress)
    }

    /// Follows the master's lookups of target host names: new connections go to the new address at once, idle
    /// ones to the old address are closed; requests in flight finish where they are.
    func updateAddresses(_ resolved: [String: String]) {
        for (index, target) in settings.targets.enumerated() {
            guard let ip = resolved[target.address.host], addresses[index]?.ipAddress != ip,
                let address = try? SocketAddress(ipAddress: ip, port: target.address.port)
            else { continue }
            addresses[index] = address
            for connection in idle[index] { connection.close() }
            idle[index] = []
        }
    }

    // MARK: HTTP/2 targets

    var speaksHTTP2: Bool { settings.protocolName == "h2" }

    /// A connection to a target for one more stream: an open one with room, or a new one (prior knowledge, or
    /// ALPN h2 over TLS). The stream is counted as a request in flight until `http2StreamEnded`.
    /// `preferred`: a sticky client's target, taken while it takes requests (as `acquire` does).
    ///
    /// The same rules as `acquire`: `excluded` (the targets a retried request already failed on) and targets at
    /// their `max_requests` are skipped, a request still connecting counts against the circuit breaker's
    /// `max_requests`, and when every target is full the answer is 503 at once.
    func acquireHTTP2(
        hashKey: UInt64?, excluding excluded: Set<Int> = [], connectTimeout: Duration?,
        preferring preferred: Int? = nil,
        _ completion: @escaping (Result<HTTP2UpstreamConnection, UpstreamFailure>) -> Void
    ) {
        if let refusal = admit() {
            completion(.failure(refusal))
            return
        }
        acquiring += 1
        attemptHTTP2(hashKey: hashKey, excluded: excluded, attemptsLeft: settings.connectAttempts, lastFailure: nil,
            connectTimeout: connectTimeout ?? settings.connectTimeout, preferred: preferred
        ) { result in
            // Settled: a stream counted in flight (`requestStarted`, before this), or a failure.
            self.acquiring -= 1
            completion(result)
        }
    }

    private func attemptHTTP2(
        hashKey: UInt64?, excluded: Set<Int>, attemptsLeft: Int, lastFailure: UpstreamFailure?, connectTimeout: Duration,
        preferred: Int? = nil, _ completion: @escaping (Result<HTTP2UpstreamConnection, UpstreamFailure>) -> Void
    ) {
        var excluded = excluded
        let full = hasRequestLimits && excludeFullTargets(&excluded)
        let now = self.now
        let stuck = preferred.flatMap { !excluded.contains($0) && balancer.isEligible($0, now: now) ? $0 : nil }
        guard let target = stuck ?? balancer.pick(hashKey: hashKey, now: now, excluding: excluded) else {
            if full, lastFailure == nil {
                completion(.failure(.circuitOpen("every target is at its max_requests")))
                return
            }
            breaker?.record(success: false, now: now)
            completion(.failure(lastFailure ?? .noTarget))
            return
        }
        if let open = http2Connections[target].first(where: \.isUsable) {
            balancer.requestStarted(target)
            completion(.success(open))
            return
        }
        let retry = { (failure: UpstreamFailure) in
            self.connectFailed(target)
            if attemptsLeft > 1 {
                self.attemptHTTP2(hashKey: hashKey, excluded: excluded.union([target]), attemptsLeft: attemptsLeft - 1,
                    lastFailure: failure, connectTimeout: connectTimeout, completion)
            } else {
                self.breaker?.record(success: false, now: self.now)
                completion(.failure(failure))
            }
        }
        guard let address = addresses[target], let connection = try? HTTP2UpstreamConnection(pool: self, target: target, overTLS: tls != nil)
        else {
            retry(.connectFailed("cannot resolve \(settings.targets[target])"))
            return
        }
        let handshake = tls.map { _ in eventLoop.makePromise(of: TLSSessionFacts.self) }
        // (Unchecked: the initializer runs on this loop, the new channel's, before anything else touches it.)
        nonisolated(unsafe) let tlsHandler = tls.map { tls in
            TLSHandler(client: tls.makeConnection(host: tlsHosts[target], session: nil)) {
                handshake?.completeWith($0.mapError { $0 as any Error })
            }
        }
        let began = metrics == nil ? nil : NIODeadline.now()
        let connected = connector.connect(
            to: address, kind: .http2, timeout: TimeAmount(connectTimeout), on: eventLoop
        ) { channel in
            channel.eventLoop.makeCompletedFuture {
                if let tlsHandler { try channel.pipeline.syncOperations.addHandler(tlsHandler) }
                try channel.pipeline.syncOperations.addHandler(connection)
            }
        }
        if let handshake { limitHandshake(handshake, to: TimeAmount(connectTimeout)) }
        let ready = handshake.map { handshake in
            connected.flatMap { channel -> EventLoopFuture<any Channel> in
                handshake.futureResult.flatMapThrowing { facts in
                    // A target that does not agree to h2 cannot carry these streams.
                    guard facts.applicationProtocol == "h2" else {
                        channel.close(promise: nil)
                        throw TLSError("the target did not negotiate h2 (ALPN: \(facts.applicationProtocol ?? "none"))")
                    }
                    return channel
                }
            }
        } ?? connected
        ready.assumeIsolated().whenComplete { result in
            switch result {
            case .success:
                if let began { self.metrics?.connected(target, began: began) }
                self.http2Connections[target].append(connection)
                self.balancer.requestStarted(target)
                completion(.success(connection))
            case .failure(let error as TLSError):
                connected.whenSuccess { $0.close(promise: nil) }
                self.logger.warning("upstream TLS handshake failed", metadata: [
                    "upstream": "\(self.name)", "target": "\(self.descriptions[target])", "error": "\(error)"])
                retry(.connectFailed("TLS with \(self.descriptions[target]) failed: \(error)"))
            case .failure(let error):
                connected.whenSuccess { $0.close(promise: nil) }
                retry(UpstreamFailure(connecting: error, target: self.descriptions[target]))
            }
        }
    }

    /// A stream on an HTTP/2 connection ended. A connection left without streams is closed when the target has
    /// another one, so each target keeps one connection per worker at rest.
    func http2StreamEnded(_ connection: HTTP2UpstreamConnection, failed: Bool) {
        breaker?.record(success: !failed, now: now)
        report(balancer.requestEnded(connection.target, failed: failed, latency: nil, now: now))
        if connection.openStreams == 0, http2Connections[connection.target].count > 1 {
            removeHTTP2(connection)
            connection.close()
        }
    }

    func removeHTTP2(_ connection: HTTP2UpstreamConnection) {
        http2Connections[connection.target].removeAll { $0 === connection }
    }

    /// The target a sticky cookie's value names, if any.
    func stickyTarget(_ value: UnsafeRawBufferPointer) -> Int? {
        stickyTokens.firstIndex { $0.count == value.count && $0.withUnsafeBytes { $0.elementsEqual(value) } }
    }

    /// A connection for one request: to the target the balancer picks, reusing an idle keep-alive connection
    /// unless `fresh` asks for a new one (as a replay after a stale keep-alive connection does). When connecting
    /// fails, another target is tried, up to `connect_attempts` in all: nothing was sent, so that is always safe.
    ///
    /// With `send_proxy_protocol`, each connection starts with a PROXY header naming `client`, so it belongs to
    /// that client: it is made fresh and closed after its exchange, never pooled (as HAProxy makes such
    /// connections private).
    ///
    /// The answer goes to `waiter`, at once when an idle connection is reused (nearly always): an object, not a
    /// closure, so the common case allocates nothing.
    func acquire(
        hashKey: UInt64?, fresh: Bool = false, excluding excluded: Set<Int> = [], connectTimeout: Duration? = nil,
        preferring preferred: Int? = nil, client: ProxyProtocol.Addresses? = nil, for waiter: any UpstreamWaiter
    ) {
        if let refusal = admit() {
            waiter.upstreamAcquired(.failure(refusal), from: self)
            return
        }
        acquiring += 1
        attempt(hashKey: hashKey, fresh: fresh || settings.sendProxyProtocol != nil, excluded: excluded,
            attemptsLeft: settings.connectAttempts, lastFailure: nil,
            connectTimeout: connectTimeout ?? settings.connectTimeout, preferred: preferred, client: client,
            for: waiter)
    }

    /// The circuit breaker's word on one more request; nil: go ahead.
    private func admit() -> UpstreamFailure? {
        guard breaker != nil else { return nil }
        switch breaker!.admit(active: balancer.active.reduce(0, +) + acquiring, now: now) {
        case nil: return nil
        case .tooManyRequests: return .circuitOpen("max_requests (\(settings.circuitBreaker!.maxRequests)) in flight")
        case .open: return .circuitOpen("open after too many failures")
        }
    }

    /// A raw TCP connection to a target for a tcp listener: balanced, retried on other targets while connecting
    /// fails, and counted as one request in flight until `streamEnded`. `handler` is installed on the new channel.
    func openStream(
        hashKey: UInt64?, handler: @escaping () -> any ChannelHandler,
        _ completion: @escaping (Result<(channel: any Channel, target: Int), UpstreamFailure>) -> Void
    ) {
        if let refusal = admit() {
            completion(.failure(refusal))
            return
        }
        openStream(hashKey: hashKey, handler: handler, excluded: [], attemptsLeft: settings.connectAttempts,
            lastFailure: nil) { result in
            if case .failure = result { self.breaker?.record(success: false, now: self.now) }
            completion(result)
        }
    }

    private func openStream(
        hashKey: UInt64?, handler: @escaping () -> any ChannelHandler, excluded: Set<Int>, attemptsLeft: Int,
        lastFailure: UpstreamFailure?,
        _ completion: @escaping (Result<(channel: any Channel, target: Int), UpstreamFailure>) -> Void
    ) {
        guard let target = balancer.pick(hashKey: hashKey, now: now, excluding: excluded), let address = addresses[target]
        else {
            completion(.failure(lastFailure ?? .noTarget))
            return
        }
        // (Unchecked: the initializer runs on this loop, the new channel's.)
        nonisolated(unsafe) let handler = handler
        let connected = connector.connect(
            to: address, kind: .stream, timeout: TimeAmount(settings.connectTimeout), on: eventLoop
        ) { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler()) }
        }
        connected
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    self.balancer.requestStarted(target)
                    completion(.success((channel, target)))
                case .failure(let error):
                    self.connectFailed(target)
                    let failure = UpstreamFailure(connecting: error, target: self.descriptions[target])
                    guard attemptsLeft > 1 else {
                        completion(.failure(failure))
                        return
                    }
                    self.openStream(hashKey: hashKey, handler: handler, excluded: excluded.union([target]),
                        attemptsLeft: attemptsLeft - 1, lastFailure: failure, completion)
                }
            }
    }

    func streamEnded(target: Int) {
        breaker?.record(success: true, now: now)
        report(balancer.requestEnded(target, failed: false, latency: nil, now: now))
    }

    /// A retry slot from the pool's budget (see `RetryBudget`); false when retries would amplify an outage.
    func acquireRetrySlot() -> Bool {
        retryBudget.acquire(active: balancer.active.reduce(0, +))
    }

    func releaseRetrySlot() {
        retryBudget.release()
    }

    private func attempt(
        hashKey: UInt64?, fresh: Bool, excluded: Set<Int>, attemptsLeft: Int, lastFailure: UpstreamFailure?,
        connectTimeout: Duration, preferred: Int? = nil, client: ProxyProtocol.Addresses? = nil,
        for waiter: any UpstreamWaiter
    ) {
        var excluded = excluded
        let full = hasRequestLimits && excludeFullTargets(&excluded)
        // One clock read serves the pick and the exchange's start (see `started`).
        let now = self.now
        // A sticky client's target while it takes requests (not ejected, unhealthy, drained, disabled or full).
        let stuck = preferred.flatMap { !excluded.contains($0) && balancer.isEligible($0, now: now) ? $0 : nil }
        guard let target = stuck ?? balancer.pick(hashKey: hashKey, now: now, excluding: excluded) else {
            if full, lastFailure == nil {
                acquiring -= 1
                waiter.upstreamAcquired(.failure(.circuitOpen("every target is at its max_requests")), from: self)
                return
            }
            acquiring -= 1
            breaker?.record(success: false, now: now)
            waiter.upstreamAcquired(.failure(lastFailure ?? .noTarget), from: self)
            return
        }
        while !fresh, let connection = idle[target].popLast() {
            if connection.isUsable {
                connection.leaveIdle()
                started(connection, at: now)
                waiter.upstreamAcquired(.success(connection), from: self)
                return
            }
        }
        let retry = { (failure: UpstreamFailure) in
            self.connectFailed(target)
            if attemptsLeft > 1 {
                self.attempt(hashKey: hashKey, fresh: fresh, excluded: excluded.union([target]),
                    attemptsLeft: attemptsLeft - 1, lastFailure: failure, connectTimeout: connectTimeout,
                    client: client, for: waiter)
            } else {
                self.acquiring -= 1
                self.breaker?.record(success: false, now: self.now)
                waiter.upstreamAcquired(.failure(failure), from: self)
            }
        }
        guard let address = addresses[target] else {
            retry(.connectFailed("cannot resolve \(settings.targets[target])"))
            return
        }
        let connection = UpstreamConnection(pool: self, target: target)
        let timeout = TimeAmount(connectTimeout)
        // With TLS the connection is handed out once the handshake is done, so a refused certificate is a failed
        // connection attempt (another target is tried, the target's failures count) rather than a broken request.
        let handshake = tls.map { _ in eventLoop.makePromise(of: TLSSessionFacts.self) }
        if let tls, let handshake {
            let session = settings.tls?.sessionReuse == true ? tlsSessions[target] : nil
            connection.tls = TLSHandler(client: tls.makeConnection(host: tlsHosts[target], session: session)) {
                handshake.completeWith($0.mapError { $0 as any Error })
            }
        }
        let began = metrics == nil ? nil : NIODeadline.now()
        let connected = connector.connect(to: address, kind: .http1, timeout: timeout, on: eventLoop) { channel in
            channel.eventLoop.makeCompletedFuture {
                if let version = self.settings.sendProxyProtocol, let client {
                    try channel.pipeline.syncOperations.addHandler(ProxyHeaderSender(version: version, client: client))
                }
                if let handler = connection.tls { try channel.pipeline.syncOperations.addHandler(handler) }
                try channel.pipeline.syncOperations.addHandler(connection)
            }
        }
        if let handshake { limitHandshake(handshake, to: timeout) }
        // Plain connections are ready when connected: no extra future (the allocation budget counts them).
        let ready = handshake.map { handshake in connected.flatMap { channel in handshake.futureResult.map { _ in channel } } }
            ?? connected
        ready
            .assumeIsolated()  // the pool's own loop: the callback stays loop-confined
            .whenComplete { result in
                switch result {
                case .success:
                    if let began { self.metrics?.connected(target, began: began) }
                    self.started(connection, at: self.now)
                    waiter.upstreamAcquired(.success(connection), from: self)
                case .failure(let error as TLSError):
                    connection.close()
                    self.logger.warning("upstream TLS handshake failed", metadata: [
                        "upstream": "\(self.name)", "target": "\(self.descriptions[target])", "error": "\(error)"])
                    retry(.connectFailed("TLS handshake with \(self.descriptions[target]) failed: \(error)"))
                case .failure(let error):
                    connection.close()
                    retry(UpstreamFailure(connecting: error, target: self.descriptions[target]))
                }
            }
    }

    /// `connect_timeout` covers the TLS handshake too: a target that accepts the connection and then says nothing
    /// (a stuck TLS terminator, a port that is not TLS) fails the attempt like a connection that never came up,
    /// instead of holding the request with no deadline at all (no response timeout runs before the request is
    /// sent). (A handshake that completes first cancels this; completing the promise twice is a no-op.)
    private func limitHandshake(_ handshake: EventLoopPromise<TLSSessionFacts>, to timeout: TimeAmount) {
        let deadline = eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            handshake.fail(ChannelError.connectTimeout(timeout))
        }
        handshake.futureResult.whenComplete { _ in deadline.cancel() }
    }

    /// Adds the targets at their `max_requests` to `excluded`: a full target is skipped like an excluded one.
    /// True when that left out a target that was not excluded already (so "every target is full" is the answer
    /// when none is left).
    private func excludeFullTargets(_ excluded: inout Set<Int>) -> Bool {
        var full = false
        for (target, limit) in requestLimits.enumerated() where limit > 0 && balancer.active[target] >= limit {
            full = full || !excluded.contains(target)
            excluded.insert(target)
        }
        return full
    }

    private func started(_ connection: UpstreamConnection, at now: Double) {
        acquiring -= 1
        balancer.requestStarted(connection.target)
        connection.exchangeStartedAt = now
        connection.inFlight = true
    }

    private func connectFailed(_ target: Int) {
        report(balancer.connectFailed(target, now: now))
    }

    /// The request on `connection` ended; `failed` says whether that counts against the target's health. Called
    /// by the connection itself whichever way the exchange ends; only the first call per request counts.
    func finished(_ connection: UpstreamConnection, failed: Bool) {
        guard connection.inFlight else { return }
        connection.inFlight = false
        let now = self.now
        breaker?.record(success: !failed, now: now)
        let latency = connection.responseHeadAt.map { $0 - connection.exchangeStartedAt }
        report(balancer.requestEnded(connection.target, failed: failed, latency: latency, now: now))
    }

    private func report(_ event: OutlierDetector.Event?) {
        switch event {
        case .ejected(let target, let seconds):
            metrics?.ejected(target)
            logger.warning("upstream target ejected after consecutive failures", metadata: [
                "upstream": "\(name)", "target": "\(descriptions[target])", "seconds": .stringConvertible(Int(seconds)),
            ])
        case .ejectionRefused(let target):
            logger.warning("upstream target keeps failing, but ejecting it would leave too few", metadata: [
                "upstream": "\(name)", "target": "\(descriptions[target])",
            ])
        case nil:
            break
        }
    }

    /// Applies the master's view of a target (health from active checks, admin state). Disabling a target also
    /// closes its idle connections; draining leaves them to time out.
    func apply(_ state: TargetState) {
        guard state.upstream == name, let target = descriptions.firstIndex(of: state.target) else { return }
        balancer.setAvailability(target, adminOut: state.admin != "enabled", unhealthy: state.health == "unhealthy")
        if state.admin == "disabled" {
            for connection in idle[target] { connection.close() }
            idle[target] = []
        }
    }

    /// This worker's counters per target, for the master (`jesterctl upstreams`).
    func stats() -> [TargetStats] {
        let now = self.now
        return descriptions.indices.map { index in
            TargetStats(
                upstream: name, target: descriptions[index], active: balancer.active[index],
                requests: balancer.requests[index], failures: balancer.failures[index],
                ejected: balancer.outliers.isEjected(index, now: now),
                latencyMilliseconds: balancer.averageLatency(index) * 1000)
        }
    }

    /// The address of a target, for logs.
    func targetDescription(_ target: Int) -> String { descriptions[target] }

    /// Takes back a connection after an exchange: kept for reuse when it can carry another request and the idle
    /// list has room, closed otherwise.
    func release(_ connection: UpstreamConnection, reusable: Bool) {
        finished(connection, failed: false)
        // By now the target's session tickets (sent after the handshake) have been read.
        if let handler = connection.tls, settings.tls?.sessionReuse == true, let session = handler.session {
            tlsSessions[connection.target] = session
        }
        guard reusable, connection.isUsable, idle[connection.target].count < settings.maxIdleConnections,
            settings.sendProxyProtocol == nil
        else {
            connection.close()
            return
        }
        idle[connection.target].append(connection)
        connection.enterIdle(timeout: idleTimeout)
    }

    /// Forgets an idle connection that closed or timed out.
    func remove(_ connection: UpstreamConnection) {
        idle[connection.target].removeAll { $0 === connection }
    }

    /// Closes every idle connection (the worker is exiting).
    func closeIdle() {
        for connections in http2Connections { for connection in connections where connection.openStreams == 0 { connection.close() } }
        for list in idle { for connection in list { connection.close() } }
        idle = Array(repeating: [], count: idle.count)
    }
}
