// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterControl
import JesterLogging
import JesterSystem
import Logging
import NIOCore
import NIOPosix

/// Carrying out the supervisor's transactions: a reload's configuration and listeners, committing or rolling
/// back a generation, and the binary upgrade (probe, hand-over, exec, and the new program's side).
extension Master {
    // MARK: Reload

    /// Re-reads the configuration, starts a new generation beside the running one, and drains the old one once
    /// every new worker is ready. Any failure leaves the running generation untouched.
    func reload(replyTo target: (any ControlReplyTarget)?, watching: Bool = false) {
        dispatch(.reloadRequested(target.map { ControlRequester(target: $0, watching: watching) }))
    }

    /// Reads and validates the file for a reload, then binds what it needs (`prepare`).
    func prepareReload() {
        logger.info("reloading", metadata: ["config": "\(configPath)"])
        // A pushed version being applied, or the control plane's version in use, over the file.
        switch Self.load(configPath, snapshot: (pendingSnapshot ?? snapshot)?.snapshot, with: loader) {
        case .success(let newConfiguration):
            for warning in newConfiguration.warnings { Logger(component: .config).warning("\(warning.description)") }
            prepare(newConfiguration, kind: .reload)
        case .failure(let error): dispatch(.configurationRefused(errors: error.diagnostics.map(\.description)))
        }
    }

    /// Loads the configuration file for a new generation, parsing it in a child first: a file that crashes the
    /// TOML library fails the reload (or the upgrade's new generation) instead of taking the master down.
    static func load(
        _ path: String, snapshot: ConfigSnapshot? = nil, with loader: ConfigLoader
    ) -> Result<Configuration, ConfigError> {
        if case .parserCrashed(let detail) = ConfigProbe.check(file: path) {
            return .failure(ConfigError([ConfigDiagnostic(SourceLocation(file: path, line: 1, column: 1),
                "the TOML parser crashed on this file (\(detail)); check its syntax near brackets and braces")]))
        }
        do throws(ConfigError) {
            if let snapshot { return .success(try loader.load(file: path, snapshot: snapshot)) }
            return .success(try loader.load(file: path))
        } catch {
            return .failure(error)
        }
    }

    /// Binds what `newConfiguration` needs beside what serves now; the machine then spawns its generation, which
    /// is committed (`commit`) once all of it is ready, or rolled back (`rollBack`).
    func prepare(_ newConfiguration: Configuration, kind: Machine.Transaction.Kind) {
        let previousListeners = listeners
        do {
            try prepareAdmin(for: newConfiguration)
            access.controlGroupID = try resolveControlGroup(newConfiguration)
            if Privileges.isRoot {
                identity = try Privileges.workerIdentity(
                    user: newConfiguration.server.user, group: newConfiguration.server.group)
            }
            listeners = try bindListeners(for: newConfiguration, reusing: previousListeners)
            _ = try accessLogDescriptor(for: newConfiguration)
            try prepareCache(for: newConfiguration)
        } catch {
            listeners = previousListeners
            rollBackAdmin()
            dispatch(.configurationRefused(errors: ["\(error)"]))
            return
        }
        storeNewSockets()
        prepared = PreparedGeneration(configuration: newConfiguration, previousListeners: previousListeners)
        let newLimits = limits(of: newConfiguration)
        let requester = machine.transaction?.requester
        // Key sets of URLs the new configuration adds, before its workers spawn; known ones are kept.
        keySetsConfigured([configuration, newConfiguration], waiting: true)
        // Its series before its workers spawn, so they find every id they look up.
        metricsConfigured(newConfiguration)
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
    func commit(
        _ kind: Machine.Transaction.Kind, generation newGeneration: Int, previous: Int, requester: ControlRequester?
    ) {
        guard let prepared else { return }
        self.prepared = nil
        let previousControlPlane = configuration.controlPlane
        configuration = prepared.configuration
        keySetsConfigured([configuration], waiting: false)
        healthChecker.update(configuration)
        commitAdmin()
        forgetAdminStatesOfRemovedTargets()
        // Sockets the new generation does not use close once the old one is gone; the old workers hold their
        // own copies until then.
        closeUnusedSockets(prepared.previousListeners, keeping: listeners)
        // New QUIC connections go to the new generation only; the old one's stay with it while it drains (steered
        // by the kernel, or forwarded by the workers).
        quicSlotsGivenUp = []
        routeNewQUICConnections()
        broadcastQUICPeers()
        logger.info("\(kind.rawValue) complete", metadata: [
            "generation": .stringConvertible(newGeneration), "config_hash": "\(configuration.hash)",
            "version": "\(JesterVersion.current)",
        ])
        let result = ReloadResult(success: true, generation: newGeneration, configHash: configuration.hash, errors: [])
        metricsTransactionEnded(kind, success: true)
        recordReloadOutcome(result, kind: kind)
        if kind == .upgrade { lastUpgrade = result }
        if let requester, requester.watching {
            reply(.progress(ProgressReport(phase: "ready", connections: 0,
                workers: machine.members(of: newGeneration).count, generation: newGeneration)), to: requester.target)
            reportReloadDrain(old: previous, result: result, to: requester.target)
        } else {
            reply(.reloadResult(result), to: requester?.target)
        }
        // Last: a pushed version's result (the reply above) belongs to the link that asked for it.
        controlPlaneConfigured(previous: previousControlPlane)
    }

    /// The transaction failed (its workers, if any, were killed): what it bound is closed, the listeners that
    /// serve stay, and the requester hears why.
    func rollBack(_ kind: Machine.Transaction.Kind, errors: [String], requester: (any ControlReplyTarget)?) {
        if let prepared {
            closeUnusedSockets(listeners, keeping: prepared.previousListeners)
            listeners = prepared.previousListeners
            self.prepared = nil
        }
        rollBackAdmin()
        keySetsConfigured([configuration], waiting: false)
        lastFailedReload = FailedReload(at: wallClockNow, kind: kind.rawValue, errors: errors)
        metricsTransactionEnded(kind, success: false)
        logger.error("\(kind.rawValue) failed; still serving the previous generation", metadata: [
            "errors": .array(errors.map { .string($0) }),
        ])
        let result = ReloadResult(
            success: false, generation: generation, configHash: configuration.hash, errors: errors)
        recordReloadOutcome(result, kind: kind)
        report(result, of: kind, to: requester)
    }

    func report(_ result: ReloadResult, of kind: Machine.Transaction.Kind, to channel: (any ControlReplyTarget)?) {
        if kind == .upgrade { lastUpgrade = result }
        reply(.reloadResult(result), to: channel)
    }

    /// Progress lines for a watched reload while generation `old` drains, then the result once it is gone.
    func reportReloadDrain(old: Int, result: ReloadResult, to channel: any ControlReplyTarget) {
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
    func upgrade(replyTo target: (any ControlReplyTarget)?) {
        dispatch(.upgradeRequested(target.map { ControlRequester(target: $0, watching: false) }))
    }

    /// Probes the installed binary on the configuration and, if it accepts it, execs it (`execNewBinary`).
    func probeAndExecNewBinary(requester channel: (any ControlReplyTarget)?) {
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

    func execNewBinary(_ binary: String, requester: (any ControlReplyTarget)?) {
        // A stop that came in the moment before the exec has ended the upgrade.
        guard machine.transaction?.phase == .executing else { return }
        let handOver: UpgradeHandOver
        do {
            handOver = UpgradeHandOver(
                fromVersion: JesterVersion.current, masterStartedAt: startedAt, generation: generation,
                configuration: try JSONEncoder().encode(configuration), controlSocketFD: controlServerFD,
                listeners: listeners.mapValues { bound in
                    UpgradeHandOver.Listener(
                        settings: bound.settings, fds: bound.sockets,
                        datagramFDs: bound.datagramSockets.isEmpty ? nil : bound.datagramSockets,
                        steering: bound.steering.map {
                            UpgradeHandOver.Steering(
                                program: $0.program, owners: $0.owners, newConnections: $0.newConnections)
                        })
                },
                activatedSockets: activatedSockets, storedDescriptorNames: storedDescriptorNames, adminStates: adminStates,
                ticketKeys: ticketKeys.keys, quicKeys: Data(quicKeys),
                workers: workers.values.filter { $0.channel != nil }.map { worker in
                    UpgradeHandOver.AdoptedWorker(
                        pid: worker.pid, slot: worker.slot, generation: worker.generation,
                        state: (state(of: worker) ?? .ready).rawValue, startedAt: wallClockNow - (monotonicNow - worker.startedAt),
                        configHash: worker.configHash, drainDeadline: worker.drainDeadline,
                        controlFD: worker.controlFD, pendingBytes: worker.decoder.bufferedBytes,
                        connectionPartition: connectionPartitions[worker.pid],
                        metricsPartition: metrics.partitions[worker.pid], quicInboxes: quicInboxes[worker.pid])
                },
                connectionTableFD: connectionTable?.fd, rateLimitTableFD: rateLimitTable?.fd,
                earlyDataTableFD: earlyDataTable?.fd,
                metricsTableFD: metrics.table?.fd, cacheIndexFD: cacheStore?.index.fd,
                adminSocketFD: adminServer.fd >= 0 ? adminServer.fd : nil, adminEndpoint: adminServer.endpoint)
        } catch {
            dispatch(.execFailed(reason: "cannot encode the hand-over: \(error)"))
            return
        }
        Systemd.notifyReloading()
        logger.notice("upgrade: executing the new binary", metadata: [
            "binary": "\(binary)", "workers": .stringConvertible(handOver.workers.count),
            "generation": .stringConvertible(generation),
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
            Logger(component: .master).critical("cannot read the upgrade hand-over", metadata: ["error": "\(error)"])
            return 1
        }
        var newConfiguration: Configuration?
        var errors: [String] = []
        // The control plane's last good version over the file, as at a start.
        let (loaded, snapshot, warning) = LastGoodSnapshot.load(configPath, with: loader) { path, snapshot in
            load(path, snapshot: snapshot, with: loader)
        }
        switch loaded {
        case .success(let configuration): newConfiguration = configuration
        case .failure(let error): errors = error.diagnostics.map(\.description)
        }
        if let warning { Logger(component: .master).warning("\(warning)") }
        // The generation being adopted was started with the old program's configuration; if this program cannot
        // read it (a field changed), the new file's stands in for what the master itself needs meanwhile.
        guard let current = (try? JSONDecoder().decode(Configuration.self, from: handOver.configuration)) ?? newConfiguration
        else {
            Logger(component: .master).critical("cannot read the old configuration or load the new one", metadata: [
                "errors": .array(errors.map { .string($0) }),
            ])
            return 1
        }
        JSONLogHandler.bootstrap(level: Logger.Level(rawValue: current.log.level) ?? .info)
        let master = Master(configPath: configPath, configuration: current, loader: loader, snapshot: snapshot)
        return master.runLoop { try master.resume(handOver, newConfiguration: newConfiguration, errors: errors) }
    }

    func resume(_ handOver: UpgradeHandOver, newConfiguration: Configuration?, errors: [String]) throws {
        // The exec needed them inheritable; the workers this program spawns must not inherit them (they get what
        // is theirs explicitly): the old generation's sockets, the steering maps, other workers' channels.
        ProcessImage.restoreCloseOnExec(handOver.descriptors)
        raiseOpenFileLimit()
        startedAt = handOver.masterStartedAt
        activatedSockets = handOver.activatedSockets
        storedDescriptorNames = handOver.storedDescriptorNames
        nextStoreSerial = (handOver.storedDescriptorNames.values.compactMap(StoredDescriptor.serial).max() ?? 0) + 1
        // Listeners that share a UDP address share its steering (one program per reuseport group).
        var steerings: [Int32: QUICSteering] = [:]
        listeners = handOver.listeners.mapValues { listener in
            BoundListener(
                settings: listener.settings, sockets: listener.fds, datagramSockets: listener.datagramFDs ?? [],
                steering: listener.steering.map { fds in
                    if let adopted = steerings[fds.program] { return adopted }
                    let adopted = QUICSteering(
                        adoptingProgram: fds.program, owners: fds.owners, newConnections: fds.newConnections)
                    steerings[fds.program] = adopted
                    return adopted
                })
        }
        for bound in listeners.values where !bound.datagramSockets.isEmpty {
            if let steering = bound.steering {
                quicSteerings[bound.settings.address.description] = steering
            } else {
                quicUnsteeredAddresses.insert(bound.settings.address.description)
            }
        }
        if let keys = handOver.quicKeys, keys.count == quicKeys.count { quicKeys = Array(keys) }
        if Privileges.isRoot {
            identity = try? Privileges.workerIdentity(user: configuration.server.user, group: configuration.server.group)
        }
        access.controlGroupID = (try? resolveControlGroup(configuration)) ?? nil
        try startControlServer(adopting: handOver.controlSocketFD)
        try startAdminServer(adopting: handOver.adminSocketFD, endpoint: handOver.adminEndpoint)
        startSignalWaiter()
        adminStates = handOver.adminStates ?? [:]
        startHealthChecks()
        ticketKeys = TicketKeyRing(keys: handOver.ticketKeys ?? [], rotatedAt: monotonicNow)
        startTicketKeyRotation()
        startResolving()
        startControlPlaneLink()
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
            if let inboxes = adopted.quicInboxes { quicInboxes[adopted.pid] = inboxes }
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
        // The adopted workers and the new generation keep deciding on the same allowances.
        if let fd = handOver.rateLimitTableFD {
            do {
                rateLimitTable = try RateLimitTable.attach(fd: fd)
            } catch {
                logger.error("upgrade: cannot map the rate-limit table; making a new one (allowances restart)",
                    metadata: ["error": "\(error)"])
            }
        }
        if rateLimitTable == nil { makeRateLimitTable() }
        // The records of early ClientHellos the adopted workers took, so a copy is refused by the new ones too.
        if let fd = handOver.earlyDataTableFD {
            earlyDataTable = try? RateLimitTable.attach(fd: fd)
        }
        if earlyDataTable == nil { makeEarlyDataTable() }
        // The adopted workers go on counting where they did; the totals carry on.
        adoptMetricsTable(fd: handOver.metricsTableFD, workers: handOver.workers)
        // The cache stays warm: the same index (or, from a binary without one, a new one from the files).
        adoptCacheIndex(fd: handOver.cacheIndexFD, configuration: configuration)
        if cacheStore == nil { try prepareCache(for: configuration) }
        logger.notice("upgrade: the new binary runs and adopted the running workers", metadata: [
            "pid": .stringConvertible(getpid()), "from_version": "\(handOver.fromVersion)",
            "version": "\(JesterVersion.current)",
            "workers": .stringConvertible(handOver.workers.count), "generation": .stringConvertible(generation),
        ])
        // Workers that exited while no program listened for SIGCHLD (it stays pending across exec, but be sure).
        reapWorkers()
        startSystemdReporting()
        machine.resumeUpgrade(requester: nil)
        guard let newConfiguration else {
            logger.error("upgrade failed: the new binary cannot load the configuration; the adopted workers keep serving",
                metadata: ["errors": .array(errors.map { .string($0) })])
            dispatch(.configurationRefused(errors: errors))
            return
        }
        prepare(newConfiguration, kind: .upgrade)
    }

    /// `jesterctl upgrade` reconnecting after the exec: it watches the upgrade's generation start (and with
    /// `untilDrained` the adopted one drain), or learns the outcome if that is already known.
    func awaitUpgrade(_ channel: any ControlReplyTarget, untilDrained: Bool) {
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
}
