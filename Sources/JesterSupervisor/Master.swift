// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterCacheStore
import JesterConfig
import JesterControl
import JesterControlPlane
import JesterControlPlaneGRPC
import JesterLogging
import JesterSystem
import Logging
import NIOCore
import NIOPosix

/// The master process: owns the configuration, the listening sockets and the control socket, and supervises
/// generations of worker processes. It never serves a request.
///
/// It decides nothing about workers itself: `SupervisorStateMachine` does, and this class feeds it events
/// (`dispatch`) and carries out its actions (`perform`). The I/O behind those actions lives in extensions by
/// area: `Master+Workers`, `Master+Listeners`, `Master+Transactions` (reload and upgrade), `Master+Control`
/// (the control socket) and `Master+Upstreams` (health checks, name resolution, ticket keys).
///
/// Everything runs on one event loop: signals arrive through `SignalWaiter`, worker messages and exits, control
/// requests and timers are all serialized there, so no state here needs a lock. That loop runs on the process's
/// main thread, which spawns every worker and lives as long as the process, across binary upgrades too (exec
/// keeps the calling thread and ends the others). This matters because PR_SET_PDEATHSIG fires when the *thread*
/// that spawned a worker ends.
public final class Master: @unchecked Sendable {
    /// A worker process as the master tracks it.
    /// A worker process as the master tracks it for I/O; its lifecycle state lives in `machine`.
    final class WorkerProcess {
        let pid: Int32
        let slot: Int
        let generation: Int
        let startedAt: Double
        let configHash: String
        var drainDeadline: Double?
        /// A drain decided before the worker's channel was connected: sent once it is (after the assignment).
        var pendingDrain: Double?
        var stats = WorkerStats()
        var channel: (any Channel)?
        /// The master's end of the socketpair (owned by `channel`); handed over across a binary upgrade.
        var controlFD: Int32 = -1
        var decoder = ControlFrameCodec()

        init(pid: Int32, slot: Int, generation: Int, startedAt: Double, configHash: String) {
            self.pid = pid
            self.slot = slot
            self.generation = generation
            self.startedAt = startedAt
            self.configHash = configHash
        }
    }

    /// A bound listener: one SO_REUSEPORT socket per worker slot, and with `http3 = true` one UDP socket per slot.
    struct BoundListener {
        var settings: ListenerSettings
        var sockets: [Int32]
        var datagramSockets: [Int32] = []
        /// The program steering the UDP address's datagrams by connection ID, shared by every generation's
        /// BoundListener of that address; nil without HTTP/3 or where the kernel refused it (then the UDP sockets
        /// are reused across reloads like the TCP ones, and the kernel spreads datagrams by address).
        var steering: QUICSteering? = nil
    }

    let configPath: String
    let loader: ConfigLoader
    /// Listening sockets systemd passed in; a listener whose name or address matches one uses it (every worker
    /// slot shares it) instead of binding its own. Never closed: they are systemd's to keep.
    var activatedSockets: [Systemd.ActivatedSocket] = []
    var configuration: Configuration
    /// The main thread, made an event loop by `run()`.
    var eventLoop: (any EventLoop)!
    var logger = Logger(component: .master)
    var startedAt = Date().timeIntervalSince1970
    /// What ps shows for workers: the binary's path (they are spawned from `ProcessSpawner.runningImage`).
    let executableName = ProcessImage.installedPath()
    var identity: Identity?
    var listeners: [String: BoundListener] = [:]
    /// Workers' forwarding inboxes for HTTP/3 without steering, by pid (see `broadcastQUICPeers`).
    var quicInboxes: [Int32: [QUICInbox]] = [:]
    /// A list of peers is due within 20 ms (`broadcastQUICPeers` coalesces).
    var quicPeersBroadcastPending = false
    /// HTTP/3 addresses steered by connection ID, and their program, kept for the master's life; and the
    /// addresses where the kernel refused (see `bindDatagramSockets`).
    var quicSteerings: [String: QUICSteering] = [:]
    var quicUnsteeredAddresses: Set<String> = []
    /// Worker slots the master gave up respawning: their sockets leave the new-connection choice.
    var quicSlotsGivenUp: Set<Int> = []
    var workers: [Int32: WorkerProcess] = [:]
    /// Every supervision decision: worker lifecycle, generations, reload / upgrade / stop transactions. The
    /// master feeds it events (`dispatch`) and carries out its actions (`perform`).
    var machine = Machine()
    /// The control plane's version served over the file (nil: the file alone), and one being applied.
    var snapshot: AppliedSnapshot?
    var pendingSnapshot: AppliedSnapshot?
    /// The link to `[control_plane]` (nil without one), its open stream, and how `jesterctl status` says it is.
    var controlPlaneLink: ControlPlaneLink?
    var controlPlaneStream: SnapshotStreamClient?
    var controlPlaneStreamSerial = 0
    /// Which of `[control_plane] address`'s replicas the next stream goes to (taken modulo their number).
    var controlPlaneAddressIndex = 0
    /// The replica the current (or last) stream went to, for status.
    var controlPlaneAddress: String?
    var controlPlaneState = "connecting"
    /// Whether the report timer runs (it runs once for the master's life, across link restarts).
    var controlPlaneLinkStarted = false
    /// Counts link starts, so a restarted link's timers are not the old one's.
    var controlPlaneLinkEpoch = 0
    /// What the transaction in progress prepared: its configuration and the listeners it replaced.
    var prepared: PreparedGeneration?
    var deadlines: [Machine.Deadline: Scheduled<Void>] = [:]
    var systemdReporting = false
    /// The instance's connection counts, shared with every worker (see `ConnectionTable`), and which partition
    /// each live worker counts in.
    var connectionTable: ConnectionTable?
    var connectionPartitions: [Int32: Int] = [:]
    /// The instance's rate-limit state, shared with every worker of every generation and kept across a binary
    /// upgrade, so neither resets a client's allowance (see `RateLimitTable`).
    var rateLimitTable: RateLimitTable?
    /// HTTP/3 0-RTT's replay records (`SharedReplayRegister` in the workers): a table apart from the rate limits',
    /// so a flood of early handshakes cannot evict rate-limit state.
    var earlyDataTable: RateLimitTable?
    /// The shared HTTP cache (index and body files), made when a route first caches; kept for every later
    /// generation and across binary upgrades.
    var cacheStore: CacheStore?
    /// The cache index's counts as last added to the metrics (the index counts since it was made; the metrics
    /// table may be older, or the index handed over by an older master: only growth is added).
    var cacheCountsExported: [Int] = []
    /// The instance's metrics, shared with every worker and kept across a binary upgrade (see `Master+Metrics`).
    let metrics = MasterMetrics()
    var generation: Int { machine.generation }
    var stopping: Bool { machine.isStopping }
    var access: ControlAccess
    var controlServer: (any Channel)?
    var controlServerFD: Int32 = -1
    /// Listening sockets this master put in systemd's descriptor store, by fd, with their store names.
    var storedDescriptorNames: [Int32: String] = [:]
    var nextStoreSerial = 1
    /// The outcome of the binary upgrade that started this program, for `jesterctl upgrade` reconnecting.
    var lastUpgrade: ReloadResult?
    /// Active health checks (once per instance) and the operators' admin states of upstream targets, by
    /// upstream and target address; both go to every worker (`targetStates`), and admin states survive
    /// reloads for targets that still exist.
    var healthChecker: HealthChecker!
    var adminStates: [String: [String: String]] = [:]
    /// TLS session-ticket keys shared by every worker (see `TicketKeyRing`).
    var ticketKeys = TicketKeyRing()
    /// The instance's QUIC secrets (HTTP/3): a stateless-reset secret and a token secret, 32 random bytes each,
    /// the same for every worker of every generation so that one honours another's tokens and resets; a binary
    /// upgrade hands them to the new program.
    var quicKeys: [UInt8] = {
        var generator = SystemRandomNumberGenerator()
        return (0..<64).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }()
    /// Target host names and their addresses (see `ResolvedAddresses`).
    var resolved = ResolvedAddresses()
    /// Where the signal thread and the resolver's queue post their work (see `LoopInbox`).
    var inbox: LoopInbox!
    var drainWatchers: [any ControlReplyTarget] = []
    /// The jwt filters' fetched key sets (see `Master+KeySets`).
    let keySetFetches = KeySetFetches()
    /// The access-log files and their reopen (see `Master+AccessLog`).
    let accessLogs = AccessLogFiles()
    /// The admin API (`[admin]`, see `Master+Admin`).
    let adminServer = AdminServer()
    /// For `jesterctl status`: the last reload or upgrade that failed.
    var lastFailedReload: FailedReload?
    /// Requests the workers' drain timeouts cut during this stop (`jesterctl drain` and `stop --wait` report it).
    var cutRequests = 0
    /// The open `jesterctl tap` streams (see `Master+Tap`).
    let taps = TapSessions()

    typealias Machine = SupervisorStateMachine<ControlRequester>

    /// Who asked for a reload or upgrade over the control socket, and whether they watch it (`--wait`).
    struct ControlRequester: Sendable {
        var target: any ControlReplyTarget
        var watching: Bool
    }

    /// A new generation's configuration, and the listeners it replaced (restored if the generation fails).
    struct PreparedGeneration {
        var configuration: Configuration
        var previousListeners: [String: BoundListener]
    }

    public init(
        configPath: String, configuration: Configuration, loader: ConfigLoader, snapshot: AppliedSnapshot? = nil
    ) {
        self.snapshot = snapshot
        self.configPath = configPath
        self.configuration = configuration
        self.loader = loader
        self.access = ControlAccess(masterUserID: Privileges.currentUserID, controlGroupID: nil)
    }

    var monotonicNow: Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
    var wallClockNow: Double { Date().timeIntervalSince1970 }

    var workerCount: Int { configuration.server.workers ?? ProcessSpawner.availableCPUs() }

    /// Starts the master on the calling (main) thread and returns the process exit code once it stopped.
    public func run() -> Int32 {
        runLoop { try self.start() }
    }

    func runLoop(_ body: @escaping () throws -> Void) -> Int32 {
        MultiThreadedEventLoopGroup.withCurrentThreadAsEventLoop { loop in
            self.eventLoop = loop
            self.inbox = LoopInbox(loop: loop)
            do {
                try body()
            } catch {
                // Also as plain text: whoever started Jester by hand reads why before (or instead of) the JSON.
                FileHandle.standardError.write(Data("jester: cannot start: \(error)\n".utf8))
                self.logger.critical("cannot start", metadata: (error as? ListenerBindError)?.metadata ?? [
                    "error": "\(error)",
                ])
                self.exitCode = 1
                self.shutDownLoop()
            }
        }
        return exitCode
    }

    func start() throws {
        raiseOpenFileLimit()
        if Privileges.isRoot {
            identity = try Privileges.workerIdentity(user: configuration.server.user, group: configuration.server.group)
        } else {
            logger.notice(
                "not started as root: workers keep this user's rights and ports below 1024 need CAP_NET_BIND_SERVICE",
                metadata: ["uid": .stringConvertible(Privileges.currentUserID)])
        }
        access.controlGroupID = try resolveControlGroup(configuration)
        let passed = Systemd.takeActivatedSockets()
        // Sockets this master's predecessor stored with systemd come back as LISTEN_FDS too; the rest are from
        // socket units.
        activatedSockets = passed.filter { StoredDescriptor.serial(of: $0.name) == nil }
        let recovered = recoverStoredSockets(passed.filter { StoredDescriptor.serial(of: $0.name) != nil })
        for socket in activatedSockets {
            let user = configuration.listeners.first {
                socket.isDatagram
                    ? $0.servesHTTP3 && $0.address.description == socket.address
                    : $0.name == socket.name || $0.address.description == socket.address
            }
            if let user {
                logger.info("using a socket from systemd", metadata: [
                    "listener": "\(user.name)", "fd_name": "\(socket.name)", "address": "\(socket.address)"])
            } else {
                logger.warning("systemd passed a socket no listener uses", metadata: [
                    "fd_name": "\(socket.name)", "address": "\(socket.address)"])
            }
        }
        if ListeningSocket.kernelMigratesRequests() == false {
            logger.notice("net.ipv4.tcp_migrate_req is off: connections queued on a listener slot that closes (fewer workers after a reload) are reset; turn it on with `sysctl -w net.ipv4.tcp_migrate_req=1`")
        }
        listeners = try bindListeners(for: configuration, reusing: recovered)
        closeUnusedSockets(recovered, keeping: listeners)
        storeNewSockets()
        try PidFile.write(configuration.server.pidFile)
        try startControlServer()
        try startAdminServer()
        try makeConnectionTable()
        makeRateLimitTable()
        makeEarlyDataTable()
        makeMetricsTable()
        if cacheStore == nil { try prepareCache(for: configuration) }
        _ = try accessLogDescriptor(for: configuration)
        startSignalWaiter()
        startHealthChecks()
        startTicketKeyRotation()
        startResolving()
        startControlPlaneLink()
        // Before the first workers, so they start with the keys (bounded: see `keySetsConfigured`).
        keySetsConfigured([configuration], waiting: true)
        dispatch(.start(limits(of: configuration)))
        logger.info("master started", metadata: [
            "pid": .stringConvertible(getpid()), "config": "\(configPath)", "config_hash": "\(configuration.hash)",
            "workers": .stringConvertible(workerCount), "version": "\(JesterVersion.current)",
        ])
    }

    func startSignalWaiter() {
        _ = SignalWaiter { [inbox] signal in
            inbox!.post { self.handleSignal(signal) }
        }
    }

    // MARK: Signals

    func handleSignal(_ signal: Int32) {
        switch signal {
        case SIGCHLD: reapWorkers()
        case SIGHUP: reload(replyTo: nil)
        case SIGTERM: beginStop(fast: false, exitCode: 0)
        case SIGINT, SIGQUIT: beginStop(fast: true, exitCode: 0)
        case SIGUSR2: upgrade(replyTo: nil)
        case SIGUSR1: reopenAccessLogs(replyTo: nil)
        default: break
        }
    }

    // MARK: Supervision

    /// Hands `event` to the state machine and carries out what it decides. Actions may dispatch events of their
    /// own (a spawn reports the worker it made); the machine's state is always current when they do.
    func dispatch(_ event: Machine.Event) {
        for action in machine.handle(event) { perform(action) }
    }

    func perform(_ action: Machine.Action) {
        switch action {
        case .spawn(let slot, let generation):
            spawnWorker(slot: slot, generation: generation)
        case .signal(let pid, let signal):
            ProcessSpawner.signal(pid, signal == .kill ? SIGKILL : SIGTERM)
        case .drain(let pid, let timeout):
            guard let worker = workers[pid] else { return }
            worker.drainDeadline = wallClockNow + timeout
            if let channel = worker.channel {
                send(.beginDrain(timeoutSeconds: timeout), to: channel)
            } else {
                worker.pendingDrain = timeout
            }
        case .prepareConfiguration(let kind):
            // Only reloads ask: an upgrade's configuration was read by the new program as it started (`resume`).
            if kind == .reload { prepareReload() }
        case .execNewBinary(let requester):
            probeAndExecNewBinary(requester: requester?.target)
        case .arm(let deadline, let seconds):
            deadlines[deadline]?.cancel()
            deadlines[deadline] = eventLoop.scheduleTask(in: .nanoseconds(Int64(seconds * 1e9))) {
                self.deadlines[deadline] = nil
                self.dispatch(.deadlinePassed(deadline))
            }
        case .cancel(let deadline):
            deadlines.removeValue(forKey: deadline)?.cancel()
        case .respawn(let slot, let generation, let delay):
            eventLoop.scheduleTask(in: .nanoseconds(Int64(delay * 1e9))) {
                guard !self.stopping, generation == self.generation else { return }
                self.logger.notice("respawning worker", metadata: [
                    "slot": .stringConvertible(slot), "generation": .stringConvertible(generation),
                ])
                self.metricsWorkerRestarted()
                self.dispatch(.respawnDue(slot: slot, generation: generation))
            }
        case .gaveUp(let slot, let crashes):
            logger.critical("worker slot is crash-looping; not respawning it", metadata: [
                "slot": .stringConvertible(slot), "crashes": .stringConvertible(crashes),
            ])
            if machine.members(of: generation).isEmpty { logger.critical("no worker left; stopping") }
            quicSlotsGivenUp.insert(slot)
            routeNewQUICConnections()
        case .commit(let kind, let newGeneration, let previous, let requester):
            commit(kind, generation: newGeneration, previous: previous, requester: requester)
        case .rollBack(let kind, _, let errors, let requester):
            rollBack(kind, errors: errors, requester: requester?.target)
        case .refuse(_, let reason, let requester):
            reply(.reloadResult(ReloadResult(success: false, generation: generation, configHash: configuration.hash,
                errors: [reason])), to: requester?.target)
        case .notifySystemd(.ready):
            if !Systemd.notify("READY=1"), let problem = Systemd.notifySocketProblem {
                // systemd would time the unit out with nothing in the log to say why.
                logger.error("cannot tell systemd the service is ready", metadata: ["error": "\(problem)"])
            }
            startSystemdReporting()
        case .notifySystemd(.reloading):
            Systemd.notifyReloading()
        case .notifySystemd(.stopping):
            Systemd.notify("STOPPING=1")
        case .closingOldestGeneration(let victim, let count):
            let members = workers.values.filter { $0.generation == victim }
            logger.warning("too many draining generations; closing the oldest now", metadata: [
                "generation": .stringConvertible(victim), "workers": .stringConvertible(count),
                "connections": .stringConvertible(members.reduce(0) { $0 + $1.stats.connections }),
                "max_draining_generations": .stringConvertible(configuration.server.maxDrainingGenerations),
            ])
        case .finishStop(let exitCode):
            finishStop(exitCode: exitCode)
        }
    }

    /// What supervision needs of a configuration.
    func limits(of configuration: Configuration) -> Machine.Limits {
        func seconds(_ duration: Duration) -> Double {
            Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        }
        return Machine.Limits(
            workers: configuration.server.workers ?? ProcessSpawner.availableCPUs(),
            drainSeconds: seconds(configuration.server.drainTimeout),
            startSeconds: seconds(configuration.server.workerStartTimeout),
            maxDrainingGenerations: configuration.server.maxDrainingGenerations)
    }

    // MARK: Stop

    var exitCode: Int32 = 0

    /// Stops the master: gracefully (workers drain, `drainSeconds` overriding `drain_timeout`) or fast; a fast
    /// stop may overtake a graceful one. The machine decides; the control socket closes when the stop begins.
    func beginStop(fast: Bool, exitCode: Int32, drainSeconds: Double? = nil) {
        if !stopping {
            logger.info(fast ? "fast stop" : "graceful stop", metadata: ["workers": .stringConvertible(workers.count)])
            controlServer?.close(promise: nil)
            closeAdminServer(unlinking: true)
            // No version is taken or answered while the instance drains.
            stopControlPlaneLink()
        }
        dispatch(.stopRequested(fast: fast, exitCode: exitCode, drainSeconds: drainSeconds))
    }

    /// Ends the master, once (the machine emits `finishStop` once: shutting the loop down a second time is a
    /// SwiftNIO precondition failure, which was the SIGILL seen on stop when a late SIGCHLD found no worker left).
    func finishStop(exitCode: Int32) {
        self.exitCode = exitCode
        PidFile.remove(configuration.server.pidFile)
        unlink(configuration.server.controlSocket)
        reportStopToWatchers(exitCode: exitCode)
        logger.info("master stopped")
        // No signal or resolver result is handled from here on; the replies above get 50 ms to go out.
        inbox.close()
        eventLoop.scheduleTask(in: .milliseconds(50)) { self.shutDownLoop() }
    }

    /// Shuts the master's loop down (once: callers are past the `stopped` transition), after closing the inbox so
    /// that no other thread submits to a closing loop.
    func shutDownLoop() {
        stopControlPlaneLink()
        inbox.close()
        eventLoop.shutdownGracefully { _ in }
    }

    func reply(_ message: ControlMessage, to target: (any ControlReplyTarget)?) {
        target?.send(message)
    }

    func send(_ message: ControlMessage, to channel: any Channel) {
        channel.writeAndFlush(ByteBuffer(bytes: ControlFrameCodec.encode(message)), promise: nil)
    }
}

/// The kernel's `struct ucred`, declared here because Glibc hides it behind _GNU_SOURCE.
struct RawPeerCredentials {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}
