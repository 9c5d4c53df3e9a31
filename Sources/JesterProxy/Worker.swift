// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterCacheStore
import JesterConfig
import JesterCore
import JesterControl
import JesterHTTP3
import JesterLogging
import JesterSystem
import JesterTLS
import Logging
import NIOCore
import NIOPosix

/// A worker process: receives its assignment from the master, drops privileges, and serves its listeners on one
/// event loop until the master tells it to drain or goes away.
public enum Worker {
    /// Runs the worker; never returns. Called by `jester` in its internal worker mode, with the control socket at
    /// fd 3 and the listening sockets at fds 4, 5, ... (see `ProcessSpawner`).
    public static func run() -> Never {
        let master = getppid()
        signal(SIGHUP, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        signal(SIGUSR1, SIG_IGN)
        signal(SIGUSR2, SIG_IGN)

        let assignment: WorkerAssignment
        let configuration: Configuration
        do {
            assignment = try readAssignment()
            configuration = try JSONDecoder().decode(Configuration.self, from: Data(assignment.configuration.bytes))
        } catch {
            FileHandle.standardError.write(Data("jester worker: cannot read assignment from the master: \(error)\n".utf8))
            exit(70)
        }
        JSONLogHandler.bootstrap(level: Logger.Level(rawValue: configuration.log.level) ?? .info)
        var logger = Logger(component: .worker)
        logger[metadataKey: "slot"] = .stringConvertible(assignment.slot)
        logger[metadataKey: "generation"] = .stringConvertible(assignment.generation)
        logger[metadataKey: "pid"] = .stringConvertible(getpid())

        // Privileges go before the first byte from a client is read; the sockets are already open.
        do {
            if let uid = assignment.userID, let gid = assignment.groupID {
                try Privileges.drop(to: Identity(userName: "", userID: uid, groupID: gid))
            }
            try Privileges.forbidNewPrivileges()
            try Privileges.dieWithParent(expectedParent: master)
        } catch {
            logger.critical("cannot drop privileges", metadata: ["error": "\(error)"])
            LogWriter.standardError.flush()
            exit(71)
        }
        Privileges.setProcessName("jester-w\(assignment.slot)")

        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let eventLoop = group.next()
        let server = WorkerServer(
            assignment: assignment, configuration: configuration, eventLoop: eventLoop, logger: logger)
        do {
            // Runs on this (main) thread: it waits for channel registration, which an event loop cannot do.
            try server.start()
        } catch {
            logger.critical("worker failed to start", metadata: ["error": "\(error)"])
            LogWriter.standardError.flush()
            exit(72)
        }
        while true { sleep(3600) }
    }

    /// Reads the assignment frame from fd 3 before any thread exists.
    private static func readAssignment() throws -> WorkerAssignment {
        var codec = ControlFrameCodec()
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            if case .assignment(let assignment) = try codec.next() { return assignment }
            let count = read(ProcessSpawner.controlFD, &chunk, chunk.count)
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { throw SystemError("read", "control socket", errno: count == 0 ? EPIPE : errno) }
            codec.append(chunk[0..<count])
        }
    }
}

/// The serving half of a worker, on its event loop.
final class WorkerServer: @unchecked Sendable {
    private let assignment: WorkerAssignment
    private let runtime: WorkerRuntime
    private let eventLoop: any EventLoop
    private let logger: Logger
    private var serverChannels: [any Channel] = []
    /// The HTTP/3 listeners' UDP sockets (`startHTTP3`).
    private var http3Listeners: [HTTP3Listener] = []
    private var control: (any Channel)?
    private var decoder = ControlFrameCodec()
    private var draining = false
    /// The TLS context of each TLS listener, by name.
    private var tlsContexts: [String: TLSServerContext] = [:]
    /// HTTP/3 listeners' session tickets, whose key follows the newest TLS ticket key (`applyTicketKeys`).
    private var quicResumptions: [QUICSessionResumption] = []
    private var newestTicketKey: [UInt8]?

    init(assignment: WorkerAssignment, configuration: Configuration, eventLoop: any EventLoop, logger: Logger) {
        self.assignment = assignment
        self.eventLoop = eventLoop
        self.logger = logger
        self.runtime = WorkerRuntime(configuration: configuration, eventLoop: eventLoop, slot: assignment.slot,
            resolved: assignment.resolvedAddresses ?? [:])
    }

    func start() throws {
        let control = try ClientBootstrap(group: eventLoop)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ControlChannelHandler(server: self))
                }
            }
            .withConnectedSocket(ProcessSpawner.controlFD).wait()
        self.control = control

        for listener in runtime.configuration.listeners {
            guard let settings = listener.tls else { continue }
            let context = try TLSListener.makeContext(
                settings, http2: listener.servesHTTP2, http2Only: listener.servesOnlyHTTP2, ticketKeyRotation: runtime.configuration.server.ticketKeyRotation)
            tlsContexts[listener.name] = context
        }
        applyTicketKeys((assignment.ticketKeys ?? []).map { Data($0.bytes) })
        for keySet in assignment.keySets ?? [] { applyKeySet(keySet) }
        if let fd = assignment.connectionTableFD, let partition = assignment.connectionPartition {
            do {
                runtime.sharedConnections = SharedConnections(table: try ConnectionTable.attach(fd: fd), partition: partition)
            } catch {
                logger.error("instance-wide connection limits are off in this worker", metadata: ["error": "\(error)"])
            }
        }
        if let fd = assignment.earlyDataTableFD {
            do {
                runtime.sharedEarlyDataRecords = try RateLimitTable.attach(fd: fd)
            } catch {
                logger.error("0-RTT replay records are per worker in this worker", metadata: ["error": "\(error)"])
            }
        }
        if let fd = assignment.rateLimitTableFD {
            do {
                runtime.sharedRateLimits = try RateLimitTable.attach(fd: fd)
            } catch {
                logger.error("instance-wide rate limits count per worker in this worker",
                    metadata: ["error": "\(error)"])
            }
        }
        if let fd = assignment.cacheIndexFD {
            do {
                let settings = runtime.configuration.cache ?? CacheStoreSettings()
                runtime.cacheStore = CacheStore(
                    index: try CacheIndex.attach(fd: fd), directory: settings.path,
                    lockTimeout: settings.lockTimeout, uncacheableHold: settings.uncacheableHold)
            } catch {
                logger.error("the shared HTTP cache is off in this worker: routes with cache forward every request",
                    metadata: ["error": "\(error)"])
            }
        }
        // `[metrics] enabled = false`: no WorkerMetrics, so every count is skipped where it would happen.
        if runtime.configuration.metrics.enabled, let fd = assignment.metricsTableFD,
            let partition = assignment.metricsPartition
        {
            do {
                runtime.attachMetrics(try WorkerMetrics.attach(fd: fd, partition: partition,
                    configuration: runtime.configuration))
            } catch {
                logger.error("this worker counts no metrics", metadata: ["error": "\(error)"])
            }
        }

        // Before the first request: access lines go to the file the master opened, never to standard output.
        if let fd = assignment.accessLogFD { LogWriter.accessLog.redirect(toDescriptor: fd) }
        if let fd = assignment.accessLogChannelFD { receiveAccessLogs(from: fd) }

        for (offset, name) in assignment.listenerNames.enumerated() {
            let fd = ProcessSpawner.firstListenerFD + Int32(offset)
            let runtime = self.runtime
            let tlsContext = tlsContexts[name]
            let proxyTrusted = runtime.configuration.listeners.first { $0.name == name && !$0.isTCP }?
                .proxyProtocolFrom?.compactMap(CIDR.init)
            // A tcp listener relays streams to its pool; every other one serves HTTP.
            let tcpListener = runtime.configuration.listeners.first { $0.name == name && $0.isTCP }
            let tcpPool = tcpListener?.upstream.flatMap { runtime.pools[$0] }
            let facts = runtime.listenerFacts(name)
            let channel = try ServerBootstrap(group: eventLoop)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        // Set here, synchronously, rather than as the bootstrap's child channel options, which
                        // apply each option through futures, closures and casts: most of the cost of accepting
                        // a connection in profiles of the new-connection benchmark.
                        guard let options = channel.syncOptions else { throw ChannelError.operationUnsupported }
                        try options.setOption(.autoRead, value: false)
                        // A client may shut down its sending side after the request (nc -N, some HTTP/1.0 tools)
                        // and still read the answer: see DownstreamConnection.userInboundEventTriggered.
                        try options.setOption(.allowRemoteHalfClosure, value: true)
                        try options.setOption(.tcpOption(.tcp_nodelay), value: 1)
                        // NIO keeps each connection's last receive buffer for the next read, so its first size
                        // is memory every idle connection holds: 1 KiB (nginx's client_header_buffer_size), not
                        // NIO's 2 KiB. A larger head fills it and the next reads grow (up to 64 KiB).
                        try options.setOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(
                            minimum: 64, initial: 1024, maximum: 65536))
                        if let settings = tcpListener, let pool = tcpPool {
                            try channel.pipeline.syncOperations.addHandler(
                                TCPProxyConnection(runtime: runtime, listener: settings, pool: pool))
                        } else {
                            if let trusted = proxyTrusted {
                                try channel.pipeline.syncOperations.addHandler(
                                    ProxyHeaderHandler(trusted: trusted, runtime: runtime))
                            }
                            if let tlsContext {
                                try channel.pipeline.syncOperations.addHandler(TLSHandler(context: tlsContext))
                            }
                            try channel.pipeline.syncOperations.addHandler(DownstreamConnection(runtime: runtime, listener: facts))
                        }
                    }
                }
                .withBoundSocket(fd).wait()
            // withBoundSocket listens with a backlog of 128; restore the configured one.
            if let backlog = runtime.configuration.listeners.first(where: { $0.name == name })?.backlog {
                listen(fd, Int32(backlog))
            }
            serverChannels.append(channel)
        }
        try startHTTP3()
        runtime.onConnectionsClosed = { [self] in self.drained() }
        runtime.tap.send = { [self] records, dropped in self.send(.tapRecords(records, dropped: dropped)) }
        applyTargetStates(assignment.targetStates ?? [])
        send(.workerReady(pid: getpid()))
        logger.info("worker ready", metadata: ["listeners": .array(assignment.listenerNames.map { .string($0) })])
        eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [self] _ in
            self.reportStats()
        }
    }

    /// Session tickets for a QUIC listener (as its TCP side has them unless `session_tickets = false`), with a
    /// ticket lifetime of `ticket_key_rotation`, and 0-RTT with `http3_early_data`, its replays remembered in the
    /// instance-wide table of early ClientHellos (per worker if the master could not make one).
    private func resumption(
        for listener: ListenerSettings, tls: TLSListenerSettings, keys: QUICKeys, settings: QUICTransportSettings
    ) throws -> QUICSessionResumption? {
        guard tls.sessionTickets else { return nil }
        let lifetime = runtime.configuration.server.ticketKeyRotation ?? .seconds(3600)
        var register: (any QUICReplayRegister)?
        if listener.acceptsHTTP3EarlyData {
            register = runtime.sharedEarlyDataRecords.map { SharedReplayRegister(table: $0) } ?? ProcessReplayRegister()
        }
        // What a ticket must have been made under to resume here: the client-certificate policy, and what a 0-RTT
        // client remembers (transport parameters, the SETTINGS' field-section limit).
        var context = Array("client_certificates=\(tls.clientCertificates ?? "off");".utf8)
        if (tls.clientCertificates ?? "off") != "off" { context += tls.clientCAPEM.map { Array($0) } ?? [] }
        context += Array(";\(settings);max_field_section_size=\(runtime.parserLimits.maxHeadSize)".utf8)
        let resumption = try QUICSessionResumption(
            keys: keys, context: context, rotatingSecret: newestTicketKey,
            ticketLifetimeSeconds: Int32(clamping: lifetime.components.seconds), replayRegister: register)
        quicResumptions.append(resumption)
        return resumption
    }

    /// Serves HTTP/3 on the UDP sockets the master passed for listeners with `http3 = true`: one QUIC endpoint
    /// each, with the listener's certificates (as PEM bytes: the worker never reads key files) and the instance's
    /// QUIC secrets, its connection IDs naming this worker's slot and generation.
    private func startHTTP3() throws {
        guard let sockets = assignment.datagramSocketFDs, !sockets.isEmpty else { return }
        var secrets = assignment.quicKeys?.bytes ?? []
        if secrets.count != 64 {
            let random = QUICKeys.random()
            secrets = random.statelessResetSecret + random.tokenSecret
        }
        let keys = QUICKeys(statelessResetSecret: Array(secrets[..<32]), tokenSecret: Array(secrets[32...]))
        let steeredListeners = Set(assignment.quicSteeredListeners ?? [])
        var inboxes: [QUICInbox] = []
        for (name, fd) in sockets.sorted(by: { $0.key < $1.key }) {
            let steered = steeredListeners.contains(name)
            guard let settings = runtime.configuration.listeners.first(where: { $0.name == name }), let tls = settings.tls
            else { continue }
            let clientCertificates: QUICTLSCredentials.ClientCertificates =
                switch tls.clientCertificates {
                case "required": .required
                case "optional": .optional
                default: .off
                }
            let credentials = try QUICTLSCredentials(
                certificates: tls.certificates.map {
                    (chainPEM: Array($0.certificatePEM), privateKeyPEM: Array($0.keyPEM))
                },
                clientCertificates: clientCertificates, clientCAPEM: tls.clientCAPEM.map { Array($0) })
            let slot = UInt8(truncatingIfNeeded: assignment.slot)
            let generation = QUICSteering.connectionIDGeneration(assignment.generation)
            let transport = QUICTransportSettings()
            let endpoint = QUICServerEndpoint(
                credentials: credentials, keys: keys,
                connectionIDs: WorkerConnectionIDFactory(slot: slot, generation: generation), settings: transport,
                resumption: try resumption(for: settings, tls: tls, keys: keys, settings: transport))
            let local = QUICSocketAddress(ip: settings.address.host, port: UInt16(settings.address.port))
                ?? QUICSocketAddress(ip: "0.0.0.0", port: UInt16(settings.address.port))!
            let listener = HTTP3Listener(
                runtime: runtime, listenerName: name, endpoint: endpoint, localAddress: local, slot: slot,
                generation: generation, alwaysRetries: settings.alwaysRetriesHTTP3, steered: steered)
            _ = try DatagramBootstrap(group: eventLoop)
                // recvmmsg of up to 16 datagrams per read; NIO splits the receive buffer among them, so it is
                // 16 × 4 KiB (a QUIC datagram is at most about 1.5 KiB on these paths; a larger one is cut short
                // and fails to decrypt, like a lost packet).
                .channelOption(.datagramVectorReadMessageCount, value: 16)
                .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 16 * 4096))
                // Unsteered, the slot's socket may be a draining worker's too: read once the master's list of
                // peers says whose it is (`HTTP3Listener.updatePeers`), so two processes never read it at once.
                .channelOption(.autoRead, value: steered)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(listener)
                    }
                }
                .withBoundSocket(fd).wait()
            http3Listeners.append(listener)
            if !steered {
                let inbox = QUICForwardingInbox()
                let channel = try DatagramBootstrap(group: eventLoop)
                    // As the listener's socket, plus room for the envelope; a draining generation's traffic may all
                    // arrive here.
                    .channelOption(.datagramVectorReadMessageCount, value: 16)
                    .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 16 * 4224))
                    .channelOption(.socketOption(.so_rcvbuf), value: 4 << 20)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(inbox) }
                    }
                    .bind(host: "127.0.0.1", port: 0).wait()
                guard let port = channel.localAddress?.port else {
                    throw QUICError(.library, "the HTTP/3 forwarding socket has no port")
                }
                var forwarding = QUICForwarding(me: .init(slot: slot, generation: generation), secret: secrets)
                forwarding.sharesOneSocket = ListeningSocket.option(SO_REUSEPORT, of: fd) == 0
                listener.enableForwarding(forwarding, inbox: inbox, address: settings.address.description)
                inboxes.append(QUICInbox(address: settings.address.description, port: port))
                eventLoop.scheduleTask(in: .seconds(1)) { listener.readUnlessToldOtherwise() }
            }
        }
        // Unsteered, the master tells every worker where the others take forwarded datagrams.
        if !inboxes.isEmpty { send(.quicInboxes(inboxes)) }
    }

    private func send(_ message: ControlMessage) {
        guard let control else { return }
        let bytes = ControlFrameCodec.encode(message)
        control.writeAndFlush(ByteBuffer(bytes: bytes), promise: nil)
    }

    private func reportStats() {
        let counters = runtime.counters
        send(.workerStats(WorkerStats(
            connections: counters.openConnections, requests: counters.requests, bytesIn: counters.bytesIn,
            bytesOut: counters.bytesOut, errors: counters.errors,
            targets: runtime.pools.values.sorted { $0.name < $1.name }.flatMap { $0.stats() },
            rssBytes: ProcessSpawner.residentSetSize(of: getpid()),
            policies: runtime.policies.isEmpty ? nil : runtime.policies.values.sorted { $0.name < $1.name }.map(\.stats),
            quic: http3Listeners.isEmpty ? nil : counters.quic)))
    }

    /// Waits on a thread of its own for the access-log files the master sends on reopen (`DescriptorChannel`)
    /// and swaps each in between two lines, then tells the master, which reports to `jesterctl reopen-logs`.
    private func receiveAccessLogs(from channel: Int32) {
        let thread = Thread { [self] in
            while true {
                let received: (sequence: UInt64, fd: Int32)?
                do {
                    received = try DescriptorChannel.receive(from: channel)
                } catch {
                    logger.error("access-log channel failed; reopen no longer reaches this worker",
                        metadata: ["error": "\(error)"])
                    return
                }
                // The master's end closed: it exited, or exec'd a new binary (which starts its own workers).
                guard let received else { return }
                let sequence = received.sequence
                LogWriter.accessLog.redirect(toDescriptor: received.fd) { [self] in
                    eventLoop.execute { self.send(.accessLogReopened(sequence: sequence)) }
                }
            }
        }
        thread.name = "jester-reopen"
        thread.start()
    }

    private func applyTicketKeys(_ keys: [Data]) {
        // (Newest first: the one that encrypts new tickets.)
        if let newest = keys.first.map({ Array($0) }), newest != newestTicketKey {
            newestTicketKey = newest
            for resumption in quicResumptions { resumption.rotate(secret: newest) }
        }
        let keys = keys.compactMap { TLSTicketKey(material: Array($0)) }
        for context in tlsContexts.values { context.updateTicketKeys(keys) }
    }

    /// Gives a jwt filter the key set the master fetched from its `jwks_url`. A set for a filter this worker's
    /// configuration names differently (another generation's) is ignored.
    private func applyKeySet(_ keySet: FilterKeySet) {
        guard let filter = runtime.filters[keySet.filter] as? JWTFilter, filter.keySetURL == keySet.url else { return }
        do {
            let applied = try filter.replaceKeySet(json: keySet.jwks.bytes)
            logger.debug("JWKS applied", metadata: [
                "filter": "\(keySet.filter)", "url": "\(keySet.url)", "keys": .stringConvertible(applied.keys.count)])
        } catch {
            // The master checked the set with the same code; only a version difference could get here.
            logger.error("JWKS from the master not applied; keeping the previous keys", metadata: [
                "filter": "\(keySet.filter)", "error": "\(error)"])
        }
    }

    private func applyTargetStates(_ states: [TargetState]) {
        for state in states { runtime.pools[state.upstream]?.apply(state) }
    }

    fileprivate func received(_ bytes: ByteBuffer) {
        decoder.append(bytes.readableBytesView)
        do {
            while let message = try decoder.next() { handle(message) }
        } catch {
            logger.error("bad control message from master", metadata: ["error": "\(error)"])
        }
    }

    private func handle(_ message: ControlMessage) {
        switch message {
        case .beginDrain(let timeout):
            beginDrain(timeout: timeout)
        case .targetStates(let states):
            applyTargetStates(states)
        case .ticketKeys(let keys):
            applyTicketKeys(keys.map { Data($0.bytes) })
        case .resolvedAddresses(let addresses):
            for pool in runtime.pools.values { pool.updateAddresses(addresses) }
            for case let limit as RateLimitFilter in runtime.filters.values { limit.followAddresses(addresses) }
        case .keySet(let keySet):
            applyKeySet(keySet)
        case .quicPeers(let peers):
            for listener in http3Listeners { listener.updatePeers(peers) }
        case .tapFilters(let filters):
            runtime.tap.setFilters(filters)
            logger.info("jesterctl tap filters", metadata: ["taps": .stringConvertible(filters.count)])
        default:
            logger.warning("unexpected control message", metadata: ["message": "\(message)"])
        }
    }

    /// Stops accepting and lets connections finish; exits when none is left or the timeout passes.
    private func beginDrain(timeout: Double) {
        guard !draining else { return }
        draining = true
        for channel in serverChannels { channel.close(promise: nil) }
        serverChannels = []
        // HTTP/3's sockets stay open while its connections finish (their packets arrive there); no new one starts.
        for listener in http3Listeners { listener.stopAccepting() }
        logger.info("draining", metadata: ["connections": .stringConvertible(runtime.connections.count)])
        send(.workerDraining(connections: runtime.connections.count))
        runtime.drainConnections()
        eventLoop.scheduleTask(in: .milliseconds(Int64(timeout * 1000))) { [self] in
            // Every request still under way gets its access-log line (status 0 when nothing was answered).
            let connections = self.runtime.connections.count
            let cut = self.runtime.cutInFlightRequests()
            self.logger.warning("drain timeout: closing remaining connections",
                metadata: ["connections": .stringConvertible(connections), "requests_cut": .stringConvertible(cut)])
            self.exitWorker(cutRequests: cut)
        }
    }

    private func drained() {
        guard draining else { return }
        logger.info("drained")
        exitWorker(cutRequests: 0)
    }

    /// Reports the end of the drain (with the requests the timeout cut, which `jesterctl drain` reports) and
    /// exits once the last frames and log lines are out.
    private func exitWorker(cutRequests: Int) {
        reportStats()
        runtime.tap.flush()  // (a tap sees the requests the drain cut too)
        send(.workerDrained(cutRequests: cutRequests))
        for pool in runtime.pools.values { pool.closeIdle() }
        // Give the last frames a moment to leave, then go.
        eventLoop.scheduleTask(in: .milliseconds(50)) { [runtime] in
            // Spans still queued go out now, within a second: a collector that hangs does not hold the exit up.
            _ = runtime.tracing?.exporter.shutdown(timeout: .seconds(1))
            LogWriter.accessLog.flush()
            LogWriter.standardOutput.flush()
            LogWriter.standardError.flush()
            exit(0)
        }
    }

    fileprivate func masterGone() {
        // The master closed our socketpair: it exited or crashed. PR_SET_PDEATHSIG covers the crash; this covers
        // an orderly exit that did not reach us.
        LogWriter.accessLog.flush()
        LogWriter.standardError.flush()
        exit(0)
    }
}

/// Reads control frames from the master.
private final class ControlChannelHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    private let server: WorkerServer

    init(server: WorkerServer) {
        self.server = server
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        server.received(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        server.masterGone()
    }
}
