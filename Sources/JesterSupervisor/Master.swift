// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterControl
import JesterLogging
import JesterSystem
import Logging
import NIOCore
import NIOPosix

/// The master process: owns the configuration, the listening sockets and the control socket, and supervises
/// generations of worker processes. It never serves a request.
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

    /// A bound listener: one SO_REUSEPORT socket per worker slot.
    struct BoundListener {
        var settings: ListenerSettings
        var sockets: [Int32]
    }

    private let configPath: String
    private let loader: ConfigLoader
    /// Listening sockets systemd passed in; a listener whose name or address matches one uses it (every worker
    /// slot shares it) instead of binding its own. Never closed: they are systemd's to keep.
    private var activatedSockets: [Systemd.ActivatedSocket] = []
    private var configuration: Configuration
    /// The main thread, made an event loop by `run()`.
    private var eventLoop: (any EventLoop)!
    private var logger = Logger(label: "master")
    private var startedAt = Date().timeIntervalSince1970
    /// What ps shows for workers: the binary's path (they are spawned from `ProcessSpawner.runningImage`).
    private let executableName = ProcessImage.installedPath()
    private var identity: Identity?
    private var listeners: [String: BoundListener] = [:]
    private var workers: [Int32: WorkerProcess] = [:]
    /// Every supervision decision: worker lifecycle, generations, reload / upgrade / stop transactions. The
    /// master feeds it events (`dispatch`) and carries out its actions (`perform`).
    private var machine = Machine()
    /// What the transaction in progress prepared: its configuration and the listeners it replaced.
    private var prepared: PreparedGeneration?
    private var deadlines: [Machine.Deadline: Scheduled<Void>] = [:]
    private var systemdReporting = false
    /// The instance's connection counts, shared with every worker (see `ConnectionTable`), and which partition
    /// each live worker counts in.
    private var connectionTable: ConnectionTable?
    private var connectionPartitions: [Int32: Int] = [:]
    private var generation: Int { machine.generation }
    private var stopping: Bool { machine.isStopping }
    private var access: ControlAccess
    private var controlServer: (any Channel)?
    private var controlServerFD: Int32 = -1
    /// Listening sockets this master put in systemd's descriptor store, by fd, with their store names.
    private var storedDescriptorNames: [Int32: String] = [:]
    private var nextStoreSerial = 1
    /// The outcome of the binary upgrade that started this program, for `jesterctl upgrade` reconnecting.
    private var lastUpgrade: ReloadResult?
    /// Active health checks (once per instance) and the operators' admin states of upstream targets, by
    /// upstream and target address; both go to every worker (`targetStates`), and admin states survive
    /// reloads for targets that still exist.
    private var healthChecker: HealthChecker!
    private var adminStates: [String: [String: String]] = [:]
    /// TLS session-ticket keys shared by every worker (see `TicketKeyRing`).
    private var ticketKeys = TicketKeyRing()
    /// Target host names and their addresses (see `ResolvedAddresses`).
    private var resolved = ResolvedAddresses()
    /// Where the signal thread and the resolver's queue post their work (see `LoopInbox`).
    private var inbox: LoopInbox!
    private var drainWatchers: [any ControlReplyTarget] = []

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

    public init(configPath: String, configuration: Configuration, loader: ConfigLoader) {
        self.configPath = configPath
        self.configuration = configuration
        self.loader = loader
        self.access = ControlAccess(masterUserID: Privileges.currentUserID, controlGroupID: nil)
    }

    private var monotonicNow: Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
    private var wallClockNow: Double { Date().timeIntervalSince1970 }

    private var workerCount: Int { configuration.server.workers ?? ProcessSpawner.availableCPUs() }

    /// Starts the master on the calling (main) thread and returns the process exit code once it stopped.
    public func run() -> Int32 {
        runLoop { try self.start() }
    }

    private func runLoop(_ body: @escaping () throws -> Void) -> Int32 {
        MultiThreadedEventLoopGroup.withCurrentThreadAsEventLoop { loop in
            self.eventLoop = loop
            self.inbox = LoopInbox(loop: loop)
            do {
                try body()
            } catch {
                self.logger.critical("cannot start", metadata: ["error": "\(error)"])
                self.exitCode = 1
                self.shutDownLoop()
            }
        }
        return exitCode
    }

    private func start() throws {
        raiseOpenFileLimit()
        if Privileges.isRoot {
            identity = try Privileges.workerIdentity(user: configuration.server.user, group: configuration.server.group)
        } else {
            logger.notice(
                "not started as root: workers keep this user's rights and ports below 1024 need CAP_NET_BIND_SERVICE",
                metadata: ["uid": "\(Privileges.currentUserID)"])
        }
        access.controlGroupID = try resolveControlGroup(configuration)
        let passed = Systemd.takeActivatedSockets()
        // Sockets this master's predecessor stored with systemd come back as LISTEN_FDS too; the rest are from
        // socket units.
        activatedSockets = passed.filter { StoredDescriptor.serial(of: $0.name) == nil }
        let recovered = recoverStoredSockets(passed.filter { StoredDescriptor.serial(of: $0.name) != nil })
        for socket in activatedSockets {
            let user = configuration.listeners.first { $0.name == socket.name || $0.address.description == socket.address }
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
        try makeConnectionTable()
        startSignalWaiter()
        startHealthChecks()
        startTicketKeyRotation()
        startResolving()
        dispatch(.start(limits(of: configuration)))
        logger.info("master started", metadata: [
            "pid": "\(getpid())", "config": "\(configPath)", "config_hash": "\(configuration.hash)",
            "workers": "\(workerCount)", "version": "\(JesterVersion.current)",
        ])
    }

    private func startHealthChecks() {
        healthChecker = HealthChecker(eventLoop: eventLoop)
        healthChecker.onChange = { [unowned self] in self.broadcastTargetStates() }
        healthChecker.update(configuration)
    }

    // MARK: Target name resolution

    /// Looks up target host names now (blocking once, so the first workers start with addresses) and then every
    /// second checks which are due, looking those up on a background queue.
    private func startResolving() {
        resolved.track([configuration])
        for name in resolved.due(now: monotonicNow) {
            _ = resolved.record(name, address: ResolvedAddresses.lookUp(name))
        }
        healthChecker.updateAddresses(resolved.addresses)
        eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [unowned self] _ in
            self.resolved.track([self.configuration] + (self.prepared.map { [$0.configuration] } ?? []))
            let names = self.resolved.due(now: self.monotonicNow)
            guard !names.isEmpty else { return }
            let inbox = self.inbox!
            DispatchQueue.global().async {
                let results = names.map { ($0, ResolvedAddresses.lookUp($0)) }
                inbox.post { self.resolutionsArrived(results) }
            }
        }
    }

    private func resolutionsArrived(_ results: [(String, String?)]) {
        var changed = false
        for (name, address) in results {
            let previous = resolved.addresses[name]
            guard resolved.record(name, address: address) else {
                if address == nil, previous != nil {
                    logger.warning("cannot resolve upstream target; keeping its last address", metadata: [
                        "host": "\(name)", "address": "\(previous!)"])
                }
                continue
            }
            changed = true
            logger.notice("upstream target address changed", metadata: [
                "host": "\(name)", "from": "\(previous ?? "-")", "to": "\(address ?? "-")"])
        }
        guard changed else { return }
        healthChecker.updateAddresses(resolved.addresses)
        for worker in workers.values {
            if let channel = worker.channel { send(.resolvedAddresses(resolved.addresses), to: channel) }
        }
    }

    // MARK: TLS session-ticket keys

    /// Makes the first key now (unless adopted in an upgrade) and a new one every `ticket_key_rotation`, checked
    /// each minute so a reload that changes the period takes effect without rescheduling.
    private func startTicketKeyRotation() {
        rotateTicketKeysIfDue()
        eventLoop.scheduleRepeatedTask(initialDelay: .seconds(60), delay: .seconds(60)) { [unowned self] _ in
            self.rotateTicketKeysIfDue()
        }
    }

    private func rotateTicketKeysIfDue() {
        let period = Double((configuration.server.ticketKeyRotation ?? .seconds(3600)).components.seconds)
        guard ticketKeys.isDue(now: monotonicNow, period: period) else { return }
        let first = ticketKeys.keys.isEmpty
        ticketKeys.rotate(to: TicketKeyRing.freshKey(), now: monotonicNow)
        guard !first else { return }
        logger.info("TLS session-ticket key rotated", metadata: ["keys": "\(ticketKeys.keys.count)"])
        // Every generation, draining ones included: their clients' tickets are renewed under the new key.
        for worker in workers.values { if let channel = worker.channel { send(.ticketKeys(ticketKeys.keys), to: channel) } }
    }

    // MARK: Upstream targets

    /// Health and admin state of every target of `configuration`.
    private func targetStates(for configuration: Configuration) -> [TargetState] {
        configuration.upstreams.flatMap { upstream in
            upstream.targets.map { target in
                TargetState(
                    upstream: upstream.name, target: target.description,
                    health: healthChecker.health(upstream: upstream.name, target: target.description),
                    admin: adminStates[upstream.name]?[target.description] ?? "enabled")
            }
        }
    }

    private func broadcastTargetStates() {
        // The serving configuration's targets, and a starting generation's; a worker ignores targets it lacks.
        let current = targetStates(for: configuration)
        let starting = prepared.map { targetStates(for: $0.configuration) }
        for worker in workers.values {
            guard let channel = worker.channel else { continue }
            let mine = worker.generation == machine.startingGeneration ? starting ?? current : current
            send(.targetStates(mine), to: channel)
        }
    }

    private func forgetAdminStatesOfRemovedTargets() {
        for (upstream, targets) in adminStates {
            let existing = Set(configuration.upstream(named: upstream)?.targets.map(\.description) ?? [])
            adminStates[upstream] = targets.filter { existing.contains($0.key) }
            if adminStates[upstream]?.isEmpty == true { adminStates[upstream] = nil }
        }
    }

    /// `jesterctl upstream drain|disable|enable POOL TARGET`.
    private func setTargetAdmin(upstream: String, target: String, state: String, replyTo channel: any ControlReplyTarget) {
        guard ["enabled", "drain", "disabled"].contains(state) else {
            reply(.failure(message: "unknown target state '\(state)'"), to: channel)
            return
        }
        guard let pool = configuration.upstream(named: upstream) else {
            reply(.failure(message: "no upstream '\(upstream)' (see jesterctl upstreams)"), to: channel)
            return
        }
        guard pool.targets.contains(where: { $0.description == target }) else {
            reply(.failure(message: "upstream '\(upstream)' has no target '\(target)' (see jesterctl upstreams)"), to: channel)
            return
        }
        adminStates[upstream, default: [:]][target] = state == "enabled" ? nil : state
        logger.notice("upstream target admin state changed", metadata: [
            "upstream": "\(upstream)", "target": "\(target)", "state": "\(state)",
        ])
        broadcastTargetStates()
        reply(.done(success: true, message: "\(upstream) \(target): \(state) on every worker"), to: channel)
    }

    /// `jesterctl upstreams`: the master's view of each target with the workers' counters summed.
    private func upstreamsReport() -> [TargetReport] {
        var sums: [String: (active: Int, requests: Int, failures: Int, ejected: Int, latency: Double, count: Int)] = [:]
        for worker in workers.values {
            for stats in worker.stats.targets ?? [] {
                let key = stats.upstream + "\u{0}" + stats.target
                var sum = sums[key] ?? (0, 0, 0, 0, 0, 0)
                sum.active += stats.active
                sum.requests += stats.requests
                sum.failures += stats.failures
                sum.ejected += stats.ejected ? 1 : 0
                sum.latency += stats.latencyMilliseconds
                sum.count += 1
                sums[key] = sum
            }
        }
        return targetStates(for: configuration).map { state in
            let sum = sums[state.upstream + "\u{0}" + state.target] ?? (0, 0, 0, 0, 0, 0)
            return TargetReport(
                state: state, active: sum.active, requests: sum.requests, failures: sum.failures,
                ejectedBy: sum.ejected, latencyMilliseconds: sum.count > 0 ? sum.latency / Double(sum.count) : 0)
        }
    }

    private func startSignalWaiter() {
        _ = SignalWaiter { [inbox] signal in
            inbox!.post { self.handleSignal(signal) }
        }
    }

    /// Raises the soft open-file limit to the hard one (workers inherit it): Debian and systemd start services
    /// with a soft limit of 1024, far below what `http.max_connections` (10,000 per worker by default) needs.
    private func raiseOpenFileLimit() {
        var limit = rlimit()
        guard getrlimit(RLIMIT_NOFILE_VALUE, &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        let previous = limit.rlim_cur
        limit.rlim_cur = limit.rlim_max
        if setrlimit(RLIMIT_NOFILE_VALUE, &limit) == 0 {
            logger.info("raised the open-file limit", metadata: ["from": "\(previous)", "to": "\(limit.rlim_max)"])
        }
    }

    private func resolveControlGroup(_ configuration: Configuration) throws -> UInt32? {
        guard let name = configuration.server.controlGroup else { return nil }
        guard let gid = Privileges.lookupGroup(name) else {
            throw SystemError("getgrnam", "control_group '\(name)'", errno: ENOENT)
        }
        return gid
    }

    // MARK: Listeners

    /// Binds every listener of `configuration` with one socket per worker slot, reusing the sockets of listeners
    /// whose address and backlog did not change (the same fds, so their accept queues survive a reload).
    private func bindListeners(
        for configuration: Configuration, reusing existing: [String: BoundListener]
    ) throws -> [String: BoundListener] {
        let slots = configuration.server.workers ?? ProcessSpawner.availableCPUs()
        var bound: [String: BoundListener] = [:]
        var opened: [Int32] = []
        do {
            for listener in configuration.listeners {
                var sockets: [Int32] = []
                if let activated = activatedSockets.first(where: {
                    $0.name == listener.name || $0.address == listener.address.description
                }) {
                    bound[listener.name] = BoundListener(settings: listener, sockets: Array(repeating: activated.fd, count: slots))
                    continue
                }
                if let previous = existing.values.first(where: {
                    $0.settings.address == listener.address && $0.settings.backlog == listener.backlog
                }) {
                    sockets = Array(previous.sockets.prefix(slots))
                }
                while sockets.count < slots {
                    let fd = try ListeningSocket.bind(
                        host: listener.address.host, port: listener.address.port, backlog: listener.backlog)
                    opened.append(fd)
                    sockets.append(fd)
                }
                bound[listener.name] = BoundListener(settings: listener, sockets: sockets)
            }
        } catch {
            for fd in opened { close(fd) }
            throw error
        }
        return bound
    }

    /// Closes the sockets of `old` that `current` no longer uses.
    private func closeUnusedSockets(_ old: [String: BoundListener], keeping current: [String: BoundListener]) {
        let inUse = Set(current.values.flatMap(\.sockets)).union(activatedSockets.map(\.fd))
        for fd in Set(old.values.flatMap(\.sockets)) where !inUse.contains(fd) {
            // systemd's copy first: left in the store, the socket would keep queueing connections nobody serves.
            if let name = storedDescriptorNames.removeValue(forKey: fd) { Systemd.removeStoredDescriptor(name: name) }
            close(fd)
        }
    }

    // MARK: systemd's descriptor store

    /// Store names of the listening sockets this master stores with systemd: "jester-store-<serial>", unique
    /// within the store (FDSTOREREMOVE removes every descriptor of a name).
    enum StoredDescriptor {
        static let prefix = "jester-store-"
        static func name(serial: Int) -> String { prefix + String(serial) }
        static func serial(of name: String) -> Int? {
            name.hasPrefix(prefix) ? Int(name.dropFirst(prefix.count)) : nil
        }
    }

    /// Gives systemd a copy of every listening socket not yet in its store (see `Systemd.storeDescriptor`).
    private func storeNewSockets() {
        guard Systemd.descriptorStoreAvailable else { return }
        let unitSockets = Set(activatedSockets.map(\.fd))
        for fd in Set(listeners.values.flatMap(\.sockets)).sorted()
        where storedDescriptorNames[fd] == nil && !unitSockets.contains(fd) {
            let name = StoredDescriptor.name(serial: nextStoreSerial)
            nextStoreSerial += 1
            if Systemd.storeDescriptor(fd, name: name) { storedDescriptorNames[fd] = name }
        }
    }

    /// Listening sockets a previous master stored with systemd, grouped into listeners by address (in the order
    /// they were stored, which is slot order); reused by `bindListeners` exactly as a reload reuses its own, so
    /// connections queued while no master ran are served. Sockets no listener wants any more are closed and
    /// removed from the store.
    private func recoverStoredSockets(_ sockets: [Systemd.ActivatedSocket]) -> [String: BoundListener] {
        var recovered: [String: BoundListener] = [:]
        for socket in sockets.sorted(by: { StoredDescriptor.serial(of: $0.name)! < StoredDescriptor.serial(of: $1.name)! }) {
            nextStoreSerial = max(nextStoreSerial, StoredDescriptor.serial(of: socket.name)! + 1)
            storedDescriptorNames[socket.fd] = socket.name
            guard let listener = configuration.listeners.first(where: { $0.address.description == socket.address }) else {
                logger.notice("closing a stored socket no listener uses", metadata: ["address": "\(socket.address)"])
                Systemd.removeStoredDescriptor(name: socket.name)
                storedDescriptorNames[socket.fd] = nil
                close(socket.fd)
                continue
            }
            recovered[listener.name, default: BoundListener(settings: listener, sockets: [])].sockets.append(socket.fd)
        }
        if !recovered.isEmpty {
            logger.notice("recovered listening sockets from systemd's descriptor store", metadata: [
                "listeners": "\(recovered.keys.sorted().joined(separator: ","))",
                "sockets": "\(recovered.values.reduce(0) { $0 + $1.sockets.count })",
            ])
        }
        return recovered
    }

    // MARK: Workers

    /// The shared connection table: room for every worker of the serving generation and of as many draining
    /// ones as `max_draining_generations` allows, with a generation starting beside them.
    private func makeConnectionTable() throws {
        let partitions = min(4096, max(64, workerCount * (configuration.server.maxDrainingGenerations + 2)))
        do {
            connectionTable = try ConnectionTable.create(partitions: partitions, buckets: 16_384)
        } catch {
            guard (configuration.server.maxConnections ?? 0) == 0, (configuration.server.maxConnectionsPerClient ?? 0) == 0
            else { throw error }
            logger.warning("no shared connection table; instance-wide connection limits cannot be set",
                metadata: ["error": "\(error)"])
        }
    }

    /// The lowest partition of the connection table no live worker counts in.
    private func claimConnectionPartition(for pid: Int32) -> Int? {
        guard let table = connectionTable else { return nil }
        let used = Set(connectionPartitions.values)
        guard let free = (0..<table.partitions).first(where: { !used.contains($0) }) else {
            logger.warning("connection table full: this worker's connections are not counted instance-wide",
                metadata: ["pid": "\(pid)", "partitions": "\(table.partitions)"])
            return nil
        }
        connectionPartitions[pid] = free
        table.partitionClaimed(free)
        return free
    }

    /// Spawns one worker for `slot` of `generation` (the starting generation's configuration, or the serving one).
    private func spawnWorker(slot: Int, generation: Int) {
        let configuration = generation == machine.startingGeneration ? prepared?.configuration ?? self.configuration
            : self.configuration
        do {
            let (masterEnd, workerEnd) = try ProcessSpawner.socketPair()
            let names = configuration.listeners.map(\.name)
            let sockets = names.compactMap { listeners[$0]?.sockets[slot] }
            let pid: Int32
            do {
                // The connection table travels after the listeners (its number is in the assignment).
                pid = try ProcessSpawner.spawn(
                    executable: ProcessSpawner.runningImage, argumentZero: executableName, arguments: ["--worker"],
                    controlSocket: workerEnd, listeners: sockets + (connectionTable.map { [$0.fd] } ?? []))
            } catch {
                close(masterEnd)
                close(workerEnd)
                throw error
            }
            close(workerEnd)
            let worker = WorkerProcess(pid: pid, slot: slot, generation: generation, startedAt: monotonicNow,
                configHash: configuration.hash)
            workers[pid] = worker
            let configurationData = try JSONEncoder().encode(configuration)
            var assignment = WorkerAssignment(
                slot: slot, generation: generation, configuration: configurationData, listenerNames: names,
                userID: identity?.userID, groupID: identity?.groupID)
            assignment.targetStates = targetStates(for: configuration)
            assignment.ticketKeys = ticketKeys.keys
            assignment.resolvedAddresses = resolved.addresses
            if connectionTable != nil, let partition = claimConnectionPartition(for: pid) {
                assignment.connectionTableFD = ProcessSpawner.firstListenerFD + Int32(sockets.count)
                assignment.connectionPartition = partition
            }
            connect(worker, controlSocket: masterEnd) { channel in self.send(.assignment(assignment), to: channel) }
            logger.info("worker spawned", metadata: ["pid": "\(pid)", "slot": "\(slot)", "generation": "\(generation)"])
            dispatch(.workerSpawned(pid: pid, slot: slot, generation: generation, now: monotonicNow))
        } catch {
            logger.error("cannot spawn worker", metadata: ["slot": "\(slot)", "error": "\(error)"])
            dispatch(.spawnFailed(slot: slot, generation: generation, now: monotonicNow))
        }
    }

    /// Wraps the master's end of `worker`'s socketpair in a channel; `connected` runs once it is registered.
    private func connect(_ worker: WorkerProcess, controlSocket fd: Int32, connected: @escaping (any Channel) -> Void) {
        worker.controlFD = fd
        let pid = worker.pid
        ClientBootstrap(group: eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(WorkerChannelHandler(master: self, pid: pid))
                }
            }
            .withConnectedSocket(fd)
            .assumeIsolated()  // the master's own loop
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    worker.channel = channel
                    connected(channel)
                    if let timeout = worker.pendingDrain {
                        worker.pendingDrain = nil
                        self.send(.beginDrain(timeoutSeconds: timeout), to: channel)
                    }
                case .failure(let error):
                    self.logger.error("cannot talk to worker", metadata: ["pid": "\(pid)", "error": "\(error)"])
                    ProcessSpawner.signal(pid, SIGKILL)
                }
            }
    }

    fileprivate func workerMessage(pid: Int32, bytes: ByteBuffer) {
        guard let worker = workers[pid] else { return }
        worker.decoder.append(bytes.readableBytesView)
        do {
            while let message = try worker.decoder.next() { handle(message, from: worker) }
        } catch {
            logger.error("bad control message from worker", metadata: ["pid": "\(pid)", "error": "\(error)"])
        }
    }

    private func handle(_ message: ControlMessage, from worker: WorkerProcess) {
        switch message {
        case .workerReady:
            logger.info("worker ready", metadata: ["pid": "\(worker.pid)", "slot": "\(worker.slot)", "generation": "\(worker.generation)"])
            dispatch(.workerReady(pid: worker.pid))
        case .workerStats(let stats):
            worker.stats = stats
        case .workerDraining(let connections):
            worker.stats.connections = connections
            dispatch(.workerDraining(pid: worker.pid))
        case .workerDrained:
            worker.stats.connections = 0
        default:
            break
        }
    }

    /// Once the first generation serves: a `STATUS=` line every second (what `systemctl status` shows) and, when
    /// `WatchdogSec=` is set, watchdog pings from the master's event loop, so a master whose loop hangs is
    /// noticed and restarted by systemd.
    private func startSystemdReporting() {
        guard Systemd.isNotifying, !systemdReporting else { return }
        systemdReporting = true
        eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .seconds(1)) { task in
            if self.stopping { task.cancel() }
            Systemd.notify("STATUS=" + self.statusLine())
        }
        if let interval = Systemd.watchdogInterval {
            let nanoseconds = Int64(interval.components.seconds) * 1_000_000_000
                + interval.components.attoseconds / 1_000_000_000
            eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .nanoseconds(nanoseconds / 2)) { _ in
                Systemd.notify("WATCHDOG=1")
            }
        }
    }

    /// "generation 3, 2 workers, 15 connections, 1 draining (4 connections)": the one-line state for systemd.
    func statusLine() -> String {
        let current = workers.values.filter { $0.generation == generation && state(of: $0) != .draining }
        let draining = workers.values.filter { $0.generation != generation || state(of: $0) == .draining }
        var line = "generation \(generation), \(current.count) workers, "
            + "\(current.reduce(0) { $0 + $1.stats.connections }) connections"
        if !draining.isEmpty {
            let generations = Set(draining.map(\.generation)).count
            line += ", \(generations) draining (\(draining.reduce(0) { $0 + $1.stats.connections }) connections)"
        }
        if machine.transaction != nil { line += ", reloading" }
        if stopping { line += ", stopping" }
        return line
    }

    private func state(of worker: WorkerProcess) -> Machine.WorkerState? {
        machine.workers[worker.pid]?.state
    }

    private func reapWorkers() {
        for (pid, status) in ProcessSpawner.reapExitedChildren() {
            guard let worker = workers.removeValue(forKey: pid) else { continue }
            worker.channel?.close(promise: nil)
            // Its connections died with it, however it ended: nothing it counted may stay counted.
            if let partition = connectionPartitions.removeValue(forKey: pid) { connectionTable?.clear(partition: partition) }
            let metadata: Logger.Metadata = [
                "pid": "\(pid)", "slot": "\(worker.slot)", "generation": "\(worker.generation)", "status": "\(status)",
            ]
            // A worker that was told to drain, or belongs to a stopping master or an old generation, exits on purpose.
            if worker.generation == machine.startingGeneration {
                logger.error("new worker exited during reload", metadata: metadata)
            } else if stopping || worker.generation != generation || state(of: worker) == .draining {
                logger.info("worker exited", metadata: metadata)
            } else {
                logger.error("worker exited unexpectedly", metadata: metadata)
            }
            dispatch(.workerExited(pid: pid, now: monotonicNow))
        }
    }

    // MARK: Signals

    private func handleSignal(_ signal: Int32) {
        switch signal {
        case SIGCHLD: reapWorkers()
        case SIGHUP: reload(replyTo: nil)
        case SIGTERM: beginStop(fast: false, exitCode: 0)
        case SIGINT, SIGQUIT: beginStop(fast: true, exitCode: 0)
        case SIGUSR2: upgrade(replyTo: nil)
        default: break
        }
    }

    // MARK: Supervision

    /// Hands `event` to the state machine and carries out what it decides. Actions may dispatch events of their
    /// own (a spawn reports the worker it made); the machine's state is always current when they do.
    private func dispatch(_ event: Machine.Event) {
        for action in machine.handle(event) { perform(action) }
    }

    private func perform(_ action: Machine.Action) {
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
                self.logger.notice("respawning worker", metadata: ["slot": "\(slot)", "generation": "\(generation)"])
                self.dispatch(.respawnDue(slot: slot, generation: generation))
            }
        case .gaveUp(let slot, let crashes):
            logger.critical("worker slot is crash-looping; not respawning it", metadata: [
                "slot": "\(slot)", "crashes": "\(crashes)",
            ])
            if machine.members(of: generation).isEmpty { logger.critical("no worker left; stopping") }
        case .commit(let kind, let newGeneration, let previous, let requester):
            commit(kind, generation: newGeneration, previous: previous, requester: requester)
        case .rollBack(let kind, _, let errors, let requester):
            rollBack(kind, errors: errors, requester: requester?.target)
        case .refuse(_, let reason, let requester):
            reply(.reloadResult(ReloadResult(success: false, generation: generation, configHash: configuration.hash,
                errors: [reason])), to: requester?.target)
        case .notifySystemd(.ready):
            Systemd.notify("READY=1")
            startSystemdReporting()
        case .notifySystemd(.reloading):
            Systemd.notifyReloading()
        case .notifySystemd(.stopping):
            Systemd.notify("STOPPING=1")
        case .closingOldestGeneration(let victim, let count):
            let members = workers.values.filter { $0.generation == victim }
            logger.warning("too many draining generations; closing the oldest now", metadata: [
                "generation": "\(victim)", "workers": "\(count)",
                "connections": "\(members.reduce(0) { $0 + $1.stats.connections })",
                "max_draining_generations": "\(configuration.server.maxDrainingGenerations)",
            ])
        case .finishStop(let exitCode):
            finishStop(exitCode: exitCode)
        }
    }

    /// What supervision needs of a configuration.
    private func limits(of configuration: Configuration) -> Machine.Limits {
        func seconds(_ duration: Duration) -> Double {
            Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        }
        return Machine.Limits(
            workers: configuration.server.workers ?? ProcessSpawner.availableCPUs(),
            drainSeconds: seconds(configuration.server.drainTimeout),
            startSeconds: seconds(configuration.server.workerStartTimeout),
            maxDrainingGenerations: configuration.server.maxDrainingGenerations)
    }

    // MARK: Reload

    /// Re-reads the configuration, starts a new generation beside the running one, and drains the old one once
    /// every new worker is ready. Any failure leaves the running generation untouched.
    private func reload(replyTo target: (any ControlReplyTarget)?, watching: Bool = false) {
        dispatch(.reloadRequested(target.map { ControlRequester(target: $0, watching: watching) }))
    }

    /// Reads and validates the file for a reload, then binds what it needs (`prepare`).
    private func prepareReload() {
        logger.info("reloading", metadata: ["config": "\(configPath)"])
        let newConfiguration: Configuration
        do throws(ConfigError) {
            // In a child first: a file that crashes the TOML library fails the reload instead of the master.
            if case .parserCrashed(let detail) = ConfigProbe.check(file: configPath) {
                throw ConfigError([ConfigDiagnostic(SourceLocation(file: configPath, line: 1, column: 1),
                    "the TOML parser crashed on this file (\(detail)); check its syntax near brackets and braces")])
            }
            newConfiguration = try loader.load(file: configPath)
        } catch {
            dispatch(.configurationRefused(errors: error.diagnostics.map(\.description)))
            return
        }
        prepare(newConfiguration, kind: .reload)
    }

    /// Binds what `newConfiguration` needs beside what serves now; the machine then spawns its generation, which
    /// is committed (`commit`) once all of it is ready, or rolled back (`rollBack`).
    private func prepare(_ newConfiguration: Configuration, kind: Machine.Transaction.Kind) {
        let previousListeners = listeners
        do {
            access.controlGroupID = try resolveControlGroup(newConfiguration)
            if Privileges.isRoot {
                identity = try Privileges.workerIdentity(
                    user: newConfiguration.server.user, group: newConfiguration.server.group)
            }
            listeners = try bindListeners(for: newConfiguration, reusing: previousListeners)
        } catch {
            listeners = previousListeners
            dispatch(.configurationRefused(errors: ["\(error)"]))
            return
        }
        storeNewSockets()
        prepared = PreparedGeneration(configuration: newConfiguration, previousListeners: previousListeners)
        let newLimits = limits(of: newConfiguration)
        let requester = machine.transaction?.requester
        dispatch(.configurationAccepted(newLimits))
        if let requester, requester.watching, let next = machine.startingGeneration {
            reply(.progress(ProgressReport(phase: "validated", connections: 0, workers: 0, generation: next)),
                to: requester.target)
            reply(.progress(ProgressReport(phase: "spawning", connections: 0, workers: newLimits.workers,
                generation: next)), to: requester.target)
        }
    }

    /// The new generation serves: its configuration becomes the master's, sockets only the old one used close
    /// once it is gone, and the requester hears the result (after the old generation drained, if watching).
    private func commit(
        _ kind: Machine.Transaction.Kind, generation newGeneration: Int, previous: Int, requester: ControlRequester?
    ) {
        guard let prepared else { return }
        self.prepared = nil
        configuration = prepared.configuration
        healthChecker.update(configuration)
        forgetAdminStatesOfRemovedTargets()
        // Sockets the new generation does not use close once the old one is gone; the old workers hold their
        // own copies until then.
        closeUnusedSockets(prepared.previousListeners, keeping: listeners)
        logger.info("\(kind.rawValue) complete", metadata: [
            "generation": "\(newGeneration)", "config_hash": "\(configuration.hash)",
            "version": "\(JesterVersion.current)",
        ])
        let result = ReloadResult(success: true, generation: newGeneration, configHash: configuration.hash, errors: [])
        if kind == .upgrade { lastUpgrade = result }
        if let requester, requester.watching {
            reply(.progress(ProgressReport(phase: "ready", connections: 0,
                workers: machine.members(of: newGeneration).count, generation: newGeneration)), to: requester.target)
            reportReloadDrain(old: previous, result: result, to: requester.target)
        } else {
            reply(.reloadResult(result), to: requester?.target)
        }
    }

    /// The transaction failed (its workers, if any, were killed): what it bound is closed, the listeners that
    /// serve stay, and the requester hears why.
    private func rollBack(_ kind: Machine.Transaction.Kind, errors: [String], requester: (any ControlReplyTarget)?) {
        if let prepared {
            closeUnusedSockets(listeners, keeping: prepared.previousListeners)
            listeners = prepared.previousListeners
            self.prepared = nil
        }
        logger.error("\(kind.rawValue) failed; still serving the previous generation", metadata: [
            "errors": "\(errors.joined(separator: "; "))",
        ])
        report(ReloadResult(success: false, generation: generation, configHash: configuration.hash, errors: errors),
            of: kind, to: requester)
    }

    private func report(_ result: ReloadResult, of kind: Machine.Transaction.Kind, to channel: (any ControlReplyTarget)?) {
        if kind == .upgrade { lastUpgrade = result }
        reply(.reloadResult(result), to: channel)
    }

    /// Progress lines for a watched reload while generation `old` drains, then the result once it is gone.
    private func reportReloadDrain(old: Int, result: ReloadResult, to channel: any ControlReplyTarget) {
        guard channel.isOpen else { return }
        let members = workers.values.filter { $0.generation == old }
        if members.isEmpty {
            reply(.reloadResult(result), to: channel)
            return
        }
        reply(.progress(ProgressReport(phase: "draining", connections: members.reduce(0) { $0 + $1.stats.connections },
            workers: members.count, generation: old)), to: channel)
        eventLoop.scheduleTask(in: .milliseconds(500)) { self.reportReloadDrain(old: old, result: result, to: channel) }
    }

    // MARK: Binary upgrade

    /// Switches to the binary now installed at this program's path without losing a request (SIGUSR2,
    /// `jesterctl upgrade`). The master execs the new binary in place, keeping its PID (so systemd's MainPID, the
    /// pid file and every worker's parent stay right) and handing over its listening sockets, control socket and
    /// worker channels (`UpgradeHandOver`); the new program adopts the running generation and then upgrades like
    /// a reload: it starts a generation of its own workers and, once that is ready, drains the adopted one.
    ///
    /// What can fail before the exec fails safely: the new binary is first run as a probe on the configuration
    /// (it must start, link and accept the file), and a failed exec returns here. After the exec, a generation
    /// of the new binary that does not become ready is rolled back like a failed reload: the adopted workers,
    /// still the old binary's, keep serving.
    private func upgrade(replyTo target: (any ControlReplyTarget)?) {
        dispatch(.upgradeRequested(target.map { ControlRequester(target: $0, watching: false) }))
    }

    /// Probes the installed binary on the configuration and, if it accepts it, execs it (`execNewBinary`).
    private func probeAndExecNewBinary(requester channel: (any ControlReplyTarget)?) {
        let binary = ProcessImage.installedPath()
        logger.notice("upgrade: probing the new binary", metadata: ["binary": "\(binary)", "config": "\(configPath)"])
        reply(.progress(ProgressReport(phase: "probing", connections: 0, workers: 0, generation: generation)), to: channel)
        let problem: String?
        switch ConfigProbe.check(file: configPath, executable: binary) {
        case .valid: problem = nil
        case .invalid: problem = "the new binary rejects \(configPath); see `\(binary) config validate \(configPath)`"
        case .parserCrashed(let detail): problem = "the new binary crashed reading \(configPath): \(detail)"
        case .couldNotRun(let detail): problem = "the new binary does not run: \(detail)"
        }
        if let problem {
            dispatch(.execFailed(reason: problem))
            return
        }
        reply(.progress(ProgressReport(phase: "exec", connections: 0, workers: 0, generation: generation)), to: channel)
        // Let the progress line reach jesterctl before the exec closes its connection.
        if let channel {
            eventLoop.scheduleTask(in: .milliseconds(20)) { self.execNewBinary(binary, requester: channel) }
        } else {
            execNewBinary(binary, requester: nil)
        }
    }

    private func execNewBinary(_ binary: String, requester: (any ControlReplyTarget)?) {
        // A stop that came in the moment before the exec has ended the upgrade.
        guard machine.transaction?.phase == .executing else { return }
        let handOver: UpgradeHandOver
        do {
            handOver = UpgradeHandOver(
                fromVersion: JesterVersion.current, masterStartedAt: startedAt, generation: generation,
                configuration: try JSONEncoder().encode(configuration), controlSocketFD: controlServerFD,
                listeners: listeners.mapValues { UpgradeHandOver.Listener(settings: $0.settings, fds: $0.sockets) },
                activatedSockets: activatedSockets, storedDescriptorNames: storedDescriptorNames, adminStates: adminStates,
                ticketKeys: ticketKeys.keys,
                workers: workers.values.filter { $0.channel != nil }.map { worker in
                    UpgradeHandOver.AdoptedWorker(
                        pid: worker.pid, slot: worker.slot, generation: worker.generation,
                        state: (state(of: worker) ?? .ready).rawValue, startedAt: wallClockNow - (monotonicNow - worker.startedAt),
                        configHash: worker.configHash, drainDeadline: worker.drainDeadline,
                        controlFD: worker.controlFD, pendingBytes: worker.decoder.bufferedBytes,
                        connectionPartition: connectionPartitions[worker.pid])
                },
                connectionTableFD: connectionTable?.fd)
        } catch {
            dispatch(.execFailed(reason: "cannot encode the hand-over: \(error)"))
            return
        }
        Systemd.notifyReloading()
        logger.notice("upgrade: executing the new binary", metadata: [
            "binary": "\(binary)", "workers": "\(handOver.workers.count)", "generation": "\(generation)",
        ])
        LogWriter.standardOutput.flush()
        LogWriter.standardError.flush()
        do {
            var environment = ProcessImage.environment()
            environment[UpgradeHandOver.environmentVariable] = try handOver.encoded()
            try ProcessImage.prepareDescriptors(keeping: handOver.descriptors)
            try ProcessImage.replace(with: binary, arguments: Array(CommandLine.arguments.dropFirst()),
                environment: environment)
        } catch {
            ProcessImage.restoreCloseOnExec(handOver.descriptors)
            dispatch(.execFailed(reason: "cannot execute \(binary): \(error)"))
        }
    }

    /// The new program's side of an upgrade: adopts what `handOver` describes, then starts its own generation
    /// with `newConfiguration` (nil when this binary could not load the file: `configurationErrors` say why, and
    /// the adopted generation keeps serving).
    public static func resumeUpgrade(configPath: String, loader: ConfigLoader) -> Int32? {
        let handOver: UpgradeHandOver
        do {
            guard let taken = try UpgradeHandOver.takeFromEnvironment() else { return nil }
            handOver = taken
        } catch {
            Logger(label: "master").critical("cannot read the upgrade hand-over", metadata: ["error": "\(error)"])
            return 1
        }
        var newConfiguration: Configuration?
        var errors: [String] = []
        do throws(ConfigError) {
            if case .parserCrashed(let detail) = ConfigProbe.check(file: configPath) {
                throw ConfigError([ConfigDiagnostic(SourceLocation(file: configPath, line: 1, column: 1),
                    "the TOML parser crashed on this file (\(detail))")])
            }
            newConfiguration = try loader.load(file: configPath)
        } catch {
            errors = error.diagnostics.map(\.description)
        }
        // The generation being adopted was started with the old program's configuration; if this program cannot
        // read it (a field changed), the new file's stands in for what the master itself needs meanwhile.
        guard let current = (try? JSONDecoder().decode(Configuration.self, from: handOver.configuration)) ?? newConfiguration
        else {
            Logger(label: "master").critical("cannot read the old configuration or load the new one", metadata: [
                "errors": "\(errors.joined(separator: "; "))",
            ])
            return 1
        }
        JSONLogHandler.bootstrap(level: Logger.Level(rawValue: current.log.level) ?? .info)
        let master = Master(configPath: configPath, configuration: current, loader: loader)
        return master.runLoop { try master.resume(handOver, newConfiguration: newConfiguration, errors: errors) }
    }

    private func resume(_ handOver: UpgradeHandOver, newConfiguration: Configuration?, errors: [String]) throws {
        raiseOpenFileLimit()
        startedAt = handOver.masterStartedAt
        activatedSockets = handOver.activatedSockets
        storedDescriptorNames = handOver.storedDescriptorNames
        nextStoreSerial = (handOver.storedDescriptorNames.values.compactMap(StoredDescriptor.serial).max() ?? 0) + 1
        listeners = handOver.listeners.mapValues { BoundListener(settings: $0.settings, sockets: $0.fds) }
        if Privileges.isRoot {
            identity = try? Privileges.workerIdentity(user: configuration.server.user, group: configuration.server.group)
        }
        access.controlGroupID = (try? resolveControlGroup(configuration)) ?? nil
        try startControlServer(adopting: handOver.controlSocketFD)
        startSignalWaiter()
        adminStates = handOver.adminStates ?? [:]
        startHealthChecks()
        ticketKeys = TicketKeyRing(keys: handOver.ticketKeys ?? [], rotatedAt: monotonicNow)
        startTicketKeyRotation()
        startResolving()
        let now = (monotonic: monotonicNow, wall: wallClockNow)
        var adoptedStates: [Machine.Worker] = []
        for adopted in handOver.workers {
            let worker = WorkerProcess(
                pid: adopted.pid, slot: adopted.slot, generation: adopted.generation,
                startedAt: now.monotonic - (now.wall - adopted.startedAt), configHash: adopted.configHash)
            adoptedStates.append(Machine.Worker(
                pid: adopted.pid, slot: adopted.slot, generation: adopted.generation,
                state: Machine.WorkerState(rawValue: adopted.state) ?? .ready, startedAt: worker.startedAt))
            worker.drainDeadline = adopted.drainDeadline
            worker.decoder.append(adopted.pendingBytes)
            workers[adopted.pid] = worker
            connect(worker, controlSocket: adopted.controlFD) { _ in }
        }
        machine.adopt(adoptedStates, generation: handOver.generation, limits: limits(of: configuration))
        if let fd = handOver.connectionTableFD {
            do {
                connectionTable = try ConnectionTable.attach(fd: fd)
                for adopted in handOver.workers {
                    if let partition = adopted.connectionPartition { connectionPartitions[adopted.pid] = partition }
                }
            } catch {
                logger.error("upgrade: cannot map the connection table; making a new one", metadata: ["error": "\(error)"])
            }
        }
        if connectionTable == nil { try makeConnectionTable() }
        logger.notice("upgrade: the new binary runs and adopted the running workers", metadata: [
            "pid": "\(getpid())", "from_version": "\(handOver.fromVersion)", "version": "\(JesterVersion.current)",
            "workers": "\(handOver.workers.count)", "generation": "\(generation)",
        ])
        // Workers that exited while no program listened for SIGCHLD (it stays pending across exec, but be sure).
        reapWorkers()
        startSystemdReporting()
        machine.resumeUpgrade(requester: nil)
        guard let newConfiguration else {
            logger.error("upgrade failed: the new binary cannot load the configuration; the adopted workers keep serving",
                metadata: ["errors": "\(errors.joined(separator: "; "))"])
            dispatch(.configurationRefused(errors: errors))
            return
        }
        prepare(newConfiguration, kind: .upgrade)
    }

    /// `jesterctl upgrade` reconnecting after the exec: it watches the upgrade's generation start (and with
    /// `untilDrained` the adopted one drain), or learns the outcome if that is already known.
    private func awaitUpgrade(_ channel: any ControlReplyTarget, untilDrained: Bool) {
        if let upgrade = machine.watchUpgrade(ControlRequester(target: channel, watching: untilDrained)) {
            let workers = upgrade.workers ?? prepared.map { limits(of: $0.configuration).workers } ?? 0
            reply(.progress(ProgressReport(phase: "spawning", connections: 0, workers: workers,
                generation: upgrade.generation)), to: channel)
        } else if let lastUpgrade {
            reply(.reloadResult(lastUpgrade), to: channel)
        } else {
            reply(.failure(message: "no binary upgrade started this master (pid \(getpid()))"), to: channel)
        }
    }

    // MARK: Stop

    private var exitCode: Int32 = 0

    /// Stops the master: gracefully (workers drain, `drainSeconds` overriding `drain_timeout`) or fast; a fast
    /// stop may overtake a graceful one. The machine decides; the control socket closes when the stop begins.
    private func beginStop(fast: Bool, exitCode: Int32, drainSeconds: Double? = nil) {
        if !stopping {
            logger.info(fast ? "fast stop" : "graceful stop", metadata: ["workers": "\(workers.count)"])
            controlServer?.close(promise: nil)
        }
        dispatch(.stopRequested(fast: fast, exitCode: exitCode, drainSeconds: drainSeconds))
    }

    /// Ends the master, once (the machine emits `finishStop` once: shutting the loop down a second time is a
    /// SwiftNIO precondition failure, which was the SIGILL seen on stop when a late SIGCHLD found no worker left).
    private func finishStop(exitCode: Int32) {
        self.exitCode = exitCode
        PidFile.remove(configuration.server.pidFile)
        unlink(configuration.server.controlSocket)
        for channel in drainWatchers {
            reply(.done(success: true, message: "all workers drained; master stopped"), to: channel)
        }
        logger.info("master stopped")
        // No signal or resolver result is handled from here on; the replies above get 50 ms to go out.
        inbox.close()
        eventLoop.scheduleTask(in: .milliseconds(50)) { self.shutDownLoop() }
    }

    /// Shuts the master's loop down (once: callers are past the `stopped` transition), after closing the inbox so
    /// that no other thread submits to a closing loop.
    private func shutDownLoop() {
        inbox.close()
        eventLoop.shutdownGracefully { _ in }
    }

    // MARK: Control socket

    /// Serves the control socket: bound here, or the listening fd a binary upgrade handed over.
    private func startControlServer(adopting adopted: Int32? = nil) throws {
        if let adopted {
            controlServerFD = adopted
        } else {
            let path = configuration.server.controlSocket
            try PidFile.makeDirectory(forFile: path)
            controlServerFD = try ListeningSocket.bindUnix(path: path, group: access.controlGroupID)
            chmod(path, 0o660)
        }
        ServerBootstrap(group: eventLoop)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ControlSocketSession(master: self))
                }
            }
            .withBoundSocket(controlServerFD)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    self.controlServer = channel
                case .failure(let error):
                    self.logger.critical("cannot serve the control socket", metadata: ["error": "\(error)"])
                    self.beginStop(fast: true, exitCode: 1)
                }
            }
    }

    /// Checks a new control connection's peer (SO_PEERCRED); refused peers are logged and disconnected with a
    /// reason. Calls `admitted` on the event loop when the peer may proceed.
    func admit(_ channel: any Channel, admitted: @escaping () -> Void) {
        guard let provider = channel as? any SocketOptionProvider else {
            channel.close(promise: nil)
            return
        }
        let future: EventLoopFuture<RawPeerCredentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        future.assumeIsolated().whenComplete { result in
            guard case .success(let credentials) = result else {
                channel.close(promise: nil)
                return
            }
            if self.permits(credentials, channel) { admitted() }
        }
    }

    private func permits(_ credentials: RawPeerCredentials, _ channel: any Channel) -> Bool {
        let peer = PeerCredentials(pid: credentials.pid, uid: credentials.uid, gid: credentials.gid)
        if access.permits(uid: peer.uid, gid: peer.gid, supplementaryGroups: peer.supplementaryGroups()) {
            return true
        }
        logger.warning("control connection refused", metadata: [
            "peer_pid": "\(peer.pid)", "peer_uid": "\(peer.uid)", "peer_gid": "\(peer.gid)",
        ])
        channel.writeAndFlush(ByteBuffer(bytes: ControlFrameCodec.encode(
            .failure(message: "permission denied: uid \(peer.uid) may not control this Jester instance"))), promise: nil)
        channel.close(promise: nil)
        return false
    }

    /// Answers one control request, whatever transport carried it (see `ControlReplyTarget`).
    func controlRequest(_ message: ControlMessage, from channel: any ControlReplyTarget) {
        switch message {
        case .status:
            reply(.statusReport(statusReport()), to: channel)
        case .reload:
            reload(replyTo: channel)
        case .reloadAndWait:
            reload(replyTo: channel, watching: true)
        case .drain(let timeout):
            drainWatchers.append(channel)
            beginStop(fast: false, exitCode: 0, drainSeconds: timeout)
            reportDrainProgress()
        case .stop(let fast):
            reply(.done(success: true, message: fast ? "stopping now" : "stopping gracefully"), to: channel)
            beginStop(fast: fast, exitCode: 0)
        case .upgrade:
            upgrade(replyTo: channel)
        case .upstreams:
            reply(.upstreamsReport(upstreamsReport()), to: channel)
        case .setTargetAdmin(let upstream, let target, let state):
            setTargetAdmin(upstream: upstream, target: target, state: state, replyTo: channel)
        case .awaitUpgrade(let untilDrained):
            awaitUpgrade(channel, untilDrained: untilDrained)
        default:
            reply(.failure(message: "not a request"), to: channel)
        }
    }

    private func reportDrainProgress() {
        guard stopping, !workers.isEmpty else { return }
        let connections = workers.values.reduce(0) { $0 + $1.stats.connections }
        for channel in drainWatchers {
            reply(.progress(ProgressReport(phase: "draining", connections: connections, workers: workers.count)), to: channel)
        }
        eventLoop.scheduleTask(in: .milliseconds(500)) { self.reportDrainProgress() }
    }

    private func statusReport() -> StatusReport {
        let rows = workers.values.sorted { ($0.generation, $0.slot) < ($1.generation, $1.slot) }.map { worker in
            WorkerStatus(
                pid: worker.pid, slot: worker.slot, generation: worker.generation,
                state: (state(of: worker) ?? .starting).rawValue,
                connections: worker.stats.connections, requests: worker.stats.requests,
                rssBytes: worker.stats.rssBytes ?? ProcessSpawner.residentSetSize(of: worker.pid),
                restarts: machine.respawnPolicies[worker.slot]?.totalCrashes ?? 0, configHash: worker.configHash,
                startedAt: wallClockNow - (monotonicNow - worker.startedAt), drainDeadline: worker.drainDeadline)
        }
        let masterState = stopping ? "stopping" : (machine.transaction != nil ? "reloading" : "running")
        return StatusReport(
            pid: getpid(), version: JesterVersion.current, startedAt: startedAt, configFile: configPath,
            configHash: configuration.hash, generation: generation, state: masterState, workers: rows,
            binaryReplaced: ProcessImage.binaryReplacedOnDisk)
    }

    private func reply(_ message: ControlMessage, to target: (any ControlReplyTarget)?) {
        target?.send(message)
    }

    private func send(_ message: ControlMessage, to channel: any Channel) {
        channel.writeAndFlush(ByteBuffer(bytes: ControlFrameCodec.encode(message)), promise: nil)
    }
}

/// The kernel's `struct ucred`, declared here because Glibc hides it behind _GNU_SOURCE.
struct RawPeerCredentials {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

/// The master's end of one worker's socketpair.
private final class WorkerChannelHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    private let master: Master
    private let pid: Int32

    init(master: Master, pid: Int32) {
        self.master = master
        self.pid = pid
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        master.workerMessage(pid: pid, bytes: unwrapInboundIn(data))
    }
}

/// The version Jester reports.
public enum JesterVersion {
    public static let current = "0.1.0"
}

/// RLIMIT_NOFILE as getrlimit/setrlimit take it on glibc (the constant imports as an enum case).
private let RLIMIT_NOFILE_VALUE = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
