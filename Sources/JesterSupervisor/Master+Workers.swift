// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterControl
import JesterLogging
import JesterSystem
import Logging
import NIOCore
import NIOPosix

/// Worker processes: spawning them with their listeners and assignment, their control channels, reaping.
extension Master {
    // MARK: Workers

    /// The shared connection table: room for every worker of the serving generation and of as many draining
    /// ones as `max_draining_generations` allows, with a generation starting beside them.
    func makeConnectionTable() throws {
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

    /// The shared rate-limit table, made always: its pages cost nothing until keys land in them.
    func makeRateLimitTable() {
        do {
            rateLimitTable = try RateLimitTable.create()
        } catch {
            logger.warning("no shared rate-limit table; instance-wide rate limits count per worker",
                metadata: ["error": "\(error)"])
        }
    }

    /// The table of HTTP/3 0-RTT replay records, made always like the rate limits' (its pages are touched only by
    /// listeners with `http3_early_data`).
    func makeEarlyDataTable() {
        do {
            earlyDataTable = try RateLimitTable.create()
        } catch {
            logger.warning("no shared table for 0-RTT replay records; each worker keeps its own",
                metadata: ["error": "\(error)"])
        }
    }

    /// The lowest partition of the connection table no live worker counts in.
    func claimConnectionPartition(for pid: Int32) -> Int? {
        guard let table = connectionTable else { return nil }
        let used = Set(connectionPartitions.values)
        guard let free = (0..<table.partitions).first(where: { !used.contains($0) }) else {
            logger.warning("connection table full: this worker's connections are not counted instance-wide",
                metadata: ["pid": .stringConvertible(pid), "partitions": .stringConvertible(table.partitions)])
            return nil
        }
        connectionPartitions[pid] = free
        table.partitionClaimed(free)
        return free
    }

    /// Spawns one worker for `slot` of `generation` (the starting generation's configuration, or the serving one).
    func spawnWorker(slot: Int, generation: Int) {
        let configuration = generation == machine.startingGeneration ? prepared?.configuration ?? self.configuration
            : self.configuration
        do {
            let names = configuration.listeners.map(\.name)
            // During a transaction a worker of the serving generation (respawned) takes that generation's sockets.
            let listeners = generation == machine.startingGeneration ? self.listeners
                : prepared?.previousListeners ?? self.listeners
            // HTTP/3's UDP sockets of this slot travel after everything else (their numbers are in the assignment).
            let datagramListeners = names.filter { listeners[$0]?.datagramSockets.isEmpty == false }
            let datagramSockets = datagramListeners.compactMap { listeners[$0]?.datagramSockets[slot] }
            // Its connection IDs' datagrams reach it before it exists (registering can fail: then no spawn).
            let steeredListeners = try steerQUIC(to: slot, of: generation, listeners: listeners, names: datagramListeners)
            let accessLog = try accessLogDescriptors(for: configuration)
            let (masterEnd, workerEnd): (Int32, Int32)
            do {
                (masterEnd, workerEnd) = try ProcessSpawner.socketPair()
            } catch {
                close(accessLog.channel.0)
                close(accessLog.channel.1)
                throw error
            }
            let sockets = names.compactMap { listeners[$0]?.sockets[slot] }
            let tables = [connectionTable?.fd, rateLimitTable?.fd, metrics.table?.fd].compactMap { $0 }
            let pid: Int32
            do {
                // The connection table travels after the listeners, the rate-limit table after it, the metrics
                // table after that, then the access-log file and channel (their numbers are in the assignment).
                pid = try ProcessSpawner.spawn(
                    executable: ProcessSpawner.runningImage, argumentZero: executableName, arguments: ["--worker"],
                    controlSocket: workerEnd,
                    listeners: sockets + tables + [accessLog.file, accessLog.channel.1].compactMap { $0 }
                        + (cacheStore.map { [$0.index.fd] } ?? []) + datagramSockets
                        + (earlyDataTable.map { [$0.fd] } ?? []))
            } catch {
                close(masterEnd)
                close(workerEnd)
                close(accessLog.channel.0)
                close(accessLog.channel.1)
                throw error
            }
            close(workerEnd)
            close(accessLog.channel.1)
            accessLogWorkerSpawned(pid, channel: accessLog.channel.0, configuration: configuration)
            let worker = WorkerProcess(pid: pid, slot: slot, generation: generation, startedAt: monotonicNow,
                configHash: configuration.hash)
            workers[pid] = worker
            let configurationData = try JSONEncoder().encode(configuration)
            var assignment = WorkerAssignment(
                slot: slot, generation: generation, configuration: configurationData, listenerNames: names,
                userID: identity?.userID, groupID: identity?.groupID)
            assignment.targetStates = targetStates(for: configuration)
            assignment.ticketKeys = ticketKeys.keys.map { Base64Bytes($0) }
            assignment.resolvedAddresses = resolved.addresses
            if connectionTable != nil, let partition = claimConnectionPartition(for: pid) {
                assignment.connectionTableFD = ProcessSpawner.firstListenerFD + Int32(sockets.count)
                assignment.connectionPartition = partition
            }
            if rateLimitTable != nil {
                assignment.rateLimitTableFD =
                    ProcessSpawner.firstListenerFD + Int32(sockets.count) + (connectionTable == nil ? 0 : 1)
            }
            if metrics.table != nil, let partition = claimMetricsPartition(for: pid) {
                assignment.metricsTableFD = ProcessSpawner.firstListenerFD + Int32(sockets.count + tables.count - 1)
                assignment.metricsPartition = partition
            }
            let afterTables = ProcessSpawner.firstListenerFD + Int32(sockets.count + tables.count)
            if accessLog.file != nil { assignment.accessLogFD = afterTables }
            assignment.accessLogChannelFD = afterTables + (accessLog.file == nil ? 0 : 1)
            // The cache index, when there is one, goes last.
            if cacheStore != nil { assignment.cacheIndexFD = assignment.accessLogChannelFD! + 1 }
            if !datagramSockets.isEmpty {
                let first = assignment.accessLogChannelFD! + 1 + (cacheStore == nil ? 0 : 1)
                assignment.datagramSocketFDs = Dictionary(
                    uniqueKeysWithValues: datagramListeners.enumerated().map { ($1, first + Int32($0)) })
                assignment.quicKeys = Base64Bytes(quicKeys)
                assignment.quicSteeredListeners = steeredListeners
            }
            // The 0-RTT replay records' table goes last of all.
            if earlyDataTable != nil {
                assignment.earlyDataTableFD =
                    assignment.accessLogChannelFD! + 1 + (cacheStore == nil ? 0 : 1) + Int32(datagramSockets.count)
            }
            connect(worker, controlSocket: masterEnd) { channel in
                // The key sets as they are now: a fetch may have brought a new one since the spawn.
                assignment.keySets = self.fetchedKeySets(for: configuration)
                self.send(.assignment(assignment), to: channel)
            }
            logger.info("worker spawned", metadata: [
                "pid": .stringConvertible(pid), "slot": .stringConvertible(slot),
                "generation": .stringConvertible(generation),
            ])
            dispatch(.workerSpawned(pid: pid, slot: slot, generation: generation, now: monotonicNow))
        } catch {
            logger.error("cannot spawn worker", metadata: ["slot": .stringConvertible(slot), "error": "\(error)"])
            dispatch(.spawnFailed(slot: slot, generation: generation, now: monotonicNow))
        }
    }

    /// Wraps the master's end of `worker`'s socketpair in a channel; `connected` runs once it is registered.
    func connect(_ worker: WorkerProcess, controlSocket fd: Int32, connected: @escaping (any Channel) -> Void) {
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
                    self.logger.error("cannot talk to worker", metadata: [
                        "pid": .stringConvertible(pid), "error": "\(error)",
                    ])
                    ProcessSpawner.signal(pid, SIGKILL)
                }
            }
    }

    func workerMessage(pid: Int32, bytes: ByteBuffer) {
        guard let worker = workers[pid] else { return }
        worker.decoder.append(bytes.readableBytesView)
        do {
            while let message = try worker.decoder.next() { handle(message, from: worker) }
        } catch {
            logger.error("bad control message from worker", metadata: [
                "pid": .stringConvertible(pid), "error": "\(error)",
            ])
        }
    }

    func handle(_ message: ControlMessage, from worker: WorkerProcess) {
        switch message {
        case .workerReady:
            logger.info("worker ready", metadata: [
                "pid": .stringConvertible(worker.pid), "slot": .stringConvertible(worker.slot),
                "generation": .stringConvertible(worker.generation),
            ])
            dispatch(.workerReady(pid: worker.pid))
            // A worker that starts while a tap is open joins it.
            if !taps.filters.isEmpty, let channel = worker.channel { send(.tapFilters(taps.filters), to: channel) }
        case .workerStats(let stats):
            worker.stats = stats
        case .workerDraining(let connections):
            worker.stats.connections = connections
            dispatch(.workerDraining(pid: worker.pid))
        case .workerDrained(let cut):
            worker.stats.connections = 0
            if stopping { cutRequests += cut ?? 0 }
        case .accessLogReopened(let sequence):
            accessLogReopened(by: worker.pid, sequence: sequence)
        case .tapRecords(let records, let dropped):
            deliverTapped(records, dropped: dropped)
        case .quicInboxes(let inboxes):
            quicInboxesReported(inboxes, by: worker)
        default:
            break
        }
    }

    /// Once the first generation serves: a `STATUS=` line every second (what `systemctl status` shows) and, when
    /// `WatchdogSec=` is set, watchdog pings from the master's event loop, so a master whose loop hangs is
    /// noticed and restarted by systemd.
    func startSystemdReporting() {
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

    func state(of worker: WorkerProcess) -> Machine.WorkerState? {
        machine.workers[worker.pid]?.state
    }

    func reapWorkers() {
        for (pid, status) in ProcessSpawner.reapExitedChildren() {
            guard let worker = workers.removeValue(forKey: pid) else { continue }
            worker.channel?.close(promise: nil)
            accessLogWorkerExited(pid)
            // Its connections died with it, however it ended: nothing it counted may stay counted.
            if let partition = connectionPartitions.removeValue(forKey: pid) { connectionTable?.clear(partition: partition) }
            // Its counts join the retired totals (its gauges go), so no total drops.
            retireMetricsPartition(of: pid)
            cacheWorkerExited(pid)
            quicWorkerExited(pid)
            let metadata: Logger.Metadata = [
                "pid": .stringConvertible(pid), "slot": .stringConvertible(worker.slot),
                "generation": .stringConvertible(worker.generation), "status": "\(status)",
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
