// SPDX-License-Identifier: Apache-2.0

/// Every decision the master makes about its workers, as a pure state machine: worker lifecycle (starting →
/// ready → draining → gone, respawn with backoff), generations, and the reload / upgrade / stop transactions.
///
/// Events come in (a worker spawned, became ready, exited; a configuration was validated or refused; a deadline
/// passed; a signal or control request asked for something) and actions come out (spawn, signal, drain, notify
/// systemd, commit or roll back a generation, reply, finish). `Master` carries the actions out and owns all the
/// I/O: sockets, processes, the configuration itself. Time comes in with the events that need it, so every edge
/// case (a reload during a reload, a stop during a reload, a crash during a reload, a signal during shutdown, ...)
/// is tested in milliseconds without a process (`SupervisorStateMachineTests`).
///
/// `Requester` is whoever asked for a transaction and waits for its result (the master's control channel);
/// the machine only hands it back in actions.
struct SupervisorStateMachine<Requester> {
    /// What a generation's configuration means to supervision.
    struct Limits: Equatable {
        var workers: Int
        /// How long a drained worker may take to finish its connections.
        var drainSeconds: Double
        /// How long a new generation may take to report ready before it is rolled back.
        var startSeconds: Double
        var maxDrainingGenerations: Int
    }

    enum WorkerState: String, Equatable {
        case starting, ready, draining
    }

    struct Worker: Equatable {
        let pid: Int32
        let slot: Int
        let generation: Int
        var state: WorkerState
        /// Monotonic seconds, for the respawn backoff.
        let startedAt: Double
    }

    /// A new generation that was asked for: the configuration is being validated and its listeners bound
    /// (`preparing`), or its workers are starting (`starting`).
    struct Transaction {
        enum Kind: String, Equatable {
            /// New configuration, same binary.
            case reload
            /// The generation a new binary starts after exec.
            case upgrade
        }

        enum Phase: Equatable {
            /// An upgrade: the new binary is being probed, then executed in place. Nothing else may start
            /// meanwhile (the exec waits a moment for the requester's progress line to go out).
            case executing
            case preparing
            case starting(generation: Int, limits: Limits)
        }

        var kind: Kind
        var phase: Phase
        var requester: Requester?
    }

    enum Lifecycle: Equatable {
        case running
        case stopping(exitCode: Int32, fast: Bool)
        case stopped
    }

    enum Deadline: Hashable {
        /// The new generation must be ready by then.
        case generationStart(Int)
        /// Workers still alive then, after a stop began, are killed.
        case stopGrace
    }

    enum Signal: Equatable {
        /// Finish quickly (SIGTERM to a worker: a fast stop).
        case terminate
        /// SIGKILL: no waiting.
        case kill
    }

    enum Event {
        /// The first generation (a fresh start; an upgrade adopts instead, see `adopt`).
        case start(Limits)
        case workerSpawned(pid: Int32, slot: Int, generation: Int, now: Double)
        /// `spawn` failed for this slot (fork or exec): treated as a crash of a worker that never ran.
        case spawnFailed(slot: Int, generation: Int, now: Double)
        case workerReady(pid: Int32)
        /// The worker says it is draining (it was told to, or it decided to).
        case workerDraining(pid: Int32)
        case workerExited(pid: Int32, now: Double)
        case respawnDue(slot: Int, generation: Int)
        case reloadRequested(Requester?)
        case upgradeRequested(Requester?)
        /// The new binary failed its probe, or the exec failed: this program goes on as it was.
        case execFailed(reason: String)
        /// The configuration for the transaction being prepared was validated and its listeners bound.
        case configurationAccepted(Limits)
        /// ... or not: the running generation keeps serving.
        case configurationRefused(errors: [String])
        case deadlinePassed(Deadline)
        /// `drainSeconds` overrides the configuration's `drain_timeout` (`jesterctl drain --timeout`).
        case stopRequested(fast: Bool, exitCode: Int32, drainSeconds: Double? = nil)
    }

    enum Action {
        case spawn(slot: Int, generation: Int)
        case signal(pid: Int32, Signal)
        case drain(pid: Int32, timeoutSeconds: Double)
        /// Read and validate the configuration, bind its listeners; answer with `configurationAccepted` or
        /// `configurationRefused`.
        case prepareConfiguration(Transaction.Kind)
        /// Probe the new binary and exec it (the new program adopts the workers and prepares an upgrade).
        case execNewBinary(Requester?)
        case arm(Deadline, afterSeconds: Double)
        case cancel(Deadline)
        case respawn(slot: Int, generation: Int, afterSeconds: Double)
        /// A slot crash-loops: it stays empty.
        case gaveUp(slot: Int, crashes: Int)
        /// `generation` serves from now on (apply its configuration); `previous` drains.
        case commit(Transaction.Kind, generation: Int, previous: Int, requester: Requester?)
        /// The transaction failed; the running generation keeps serving (restore what `prepareConfiguration` bound).
        case rollBack(Transaction.Kind, generation: Int?, errors: [String], requester: Requester?)
        /// A request that cannot start now (a transaction runs, or the master stops).
        case refuse(Transaction.Kind, reason: String, requester: Requester?)
        case notifySystemd(SystemdState)
        /// Closing old generations beyond `max_draining_generations` (they are killed in the same batch).
        case closingOldestGeneration(Int, workers: Int)
        /// The last worker is gone on the way out: clean up and exit with this code. Emitted once.
        case finishStop(exitCode: Int32)
    }

    enum SystemdState: Equatable {
        case ready, reloading, stopping
    }

    private(set) var generation = 0
    private(set) var limits: Limits?
    private(set) var workers: [Int32: Worker] = [:]
    private(set) var transaction: Transaction?
    private(set) var lifecycle = Lifecycle.running
    private(set) var respawnPolicies: [Int: RespawnPolicy] = [:]

    init() {}

    var isStopping: Bool { lifecycle != .running }

    func members(of generation: Int) -> [Worker] {
        workers.values.filter { $0.generation == generation }
    }

    /// Workers a binary upgrade handed over, and the generation they serve: the new program's starting state.
    mutating func adopt(_ adopted: [Worker], generation: Int, limits: Limits) {
        self.generation = generation
        self.limits = limits
        for worker in adopted { workers[worker.pid] = worker }
        highestGeneration = max(generation, adopted.map(\.generation).max() ?? 0)
    }

    /// An upgrade's new program, after adopting: its own generation is being prepared (the configuration it
    /// loaded at exec is `configurationAccepted` or `configurationRefused` next).
    mutating func resumeUpgrade(requester: Requester?) {
        transaction = Transaction(kind: .upgrade, phase: .preparing, requester: requester)
    }

    /// `jesterctl upgrade` reconnected after the exec: it becomes the upgrade's requester. Nil when no upgrade
    /// is in progress; else the generation it starts and that generation's worker count (when known).
    mutating func watchUpgrade(_ requester: Requester) -> (generation: Int, workers: Int?)? {
        guard var transaction, transaction.kind == .upgrade else { return nil }
        transaction.requester = requester
        self.transaction = transaction
        if case .starting(let generation, let limits) = transaction.phase { return (generation, limits.workers) }
        return (highestGeneration + 1, nil)
    }

    /// The generation a transaction is starting, if one is.
    var startingGeneration: Int? {
        if case .starting(let generation, _) = transaction?.phase { return generation }
        return nil
    }

    /// Takes one event and returns what the master must do about it, in order. After the stop finished, every
    /// event is ignored (a late SIGCHLD, a signal, a request racing the exit).
    mutating func handle(_ event: Event) -> [Action] {
        if lifecycle == .stopped { return [] }
        switch event {
        case .start(let limits):
            self.limits = limits
            generation = 1
            highestGeneration = 1
            return (0..<limits.workers).map { .spawn(slot: $0, generation: 1) }
        case .workerSpawned(let pid, let slot, let generation, let now):
            workers[pid] = Worker(pid: pid, slot: slot, generation: generation, state: .starting, startedAt: now)
            // A worker spawned after a stop began (a respawn racing the stop) is told at once.
            if case .stopping(_, let fast) = lifecycle {
                return [fast ? .signal(pid: pid, .terminate) : .drain(pid: pid, timeoutSeconds: drainSeconds)]
            }
            return []
        case .spawnFailed(let slot, let generation, let now):
            if generation == startingGeneration {
                return rollBack("cannot spawn the worker for slot \(slot) of generation \(generation)")
            }
            return slotLost(slot: slot, generation: generation, startedAt: now, now: now)
        case .workerReady(let pid):
            guard var worker = workers[pid], worker.state == .starting else { return [] }
            worker.state = .ready
            workers[pid] = worker
            if worker.generation == 1, generation == 1, transaction == nil, lifecycle == .running,
                isComplete(generation: 1, limits: limits)
            {
                return [.notifySystemd(.ready)]
            }
            return transactionProgress()
        case .workerDraining(let pid):
            workers[pid]?.state = .draining
            return []
        case .workerExited(let pid, let now):
            return workerExited(pid, now: now)
        case .respawnDue(let slot, let generation):
            guard lifecycle == .running, generation == self.generation else { return [] }
            return [.spawn(slot: slot, generation: generation)]
        case .reloadRequested(let requester):
            return begin(.reload, requester: requester)
        case .upgradeRequested(let requester):
            if let refusal = refusal(for: .upgrade) { return [.refuse(.upgrade, reason: refusal, requester: requester)] }
            // The exec replaces this program; the new one resumes with `resumeUpgrade`. If the probe or the exec
            // fails (`execFailed`), the master goes on as it was.
            transaction = Transaction(kind: .upgrade, phase: .executing, requester: requester)
            return [.execNewBinary(requester)]
        case .execFailed(let reason):
            guard let transaction, transaction.phase == .executing else { return [] }
            self.transaction = nil
            return [.notifySystemd(.ready),
                .rollBack(.upgrade, generation: nil, errors: [reason], requester: transaction.requester)]
        case .configurationAccepted(let newLimits):
            guard var transaction, transaction.phase == .preparing else { return [] }
            let newGeneration = highestGeneration + 1
            highestGeneration = newGeneration
            transaction.phase = .starting(generation: newGeneration, limits: newLimits)
            self.transaction = transaction
            return [.arm(.generationStart(newGeneration), afterSeconds: newLimits.startSeconds)]
                + (0..<newLimits.workers).map { .spawn(slot: $0, generation: newGeneration) }
        case .configurationRefused(let errors):
            guard let transaction, transaction.phase == .preparing else { return [] }
            self.transaction = nil
            return [.notifySystemd(.ready),
                .rollBack(transaction.kind, generation: nil, errors: errors, requester: transaction.requester)]
        case .deadlinePassed(.generationStart(let late)):
            guard case .starting(let starting, let newLimits) = transaction?.phase, starting == late else { return [] }
            return rollBack("new workers did not report ready within \(Self.format(seconds: newLimits.startSeconds))")
        case .deadlinePassed(.stopGrace):
            guard case .stopping = lifecycle else { return [] }
            return workers.keys.sorted().map { .signal(pid: $0, .kill) }
        case .stopRequested(let fast, let exitCode, let drainSeconds):
            if let drainSeconds, lifecycle == .running { limits?.drainSeconds = drainSeconds }
            return stop(fast: fast, exitCode: exitCode)
        }
    }

    // MARK: Transactions

    /// The highest generation number used so far, including transactions rolled back: numbers are never reused,
    /// so a late exit of a killed worker of a failed generation cannot be taken for one of the next attempt's.
    private var highestGeneration = 0

    private func refusal(for kind: Transaction.Kind) -> String? {
        if isStopping { return "the master is stopping" }
        guard let transaction else { return nil }
        if transaction.kind == .upgrade { return "an upgrade is in progress" }
        return kind == .reload ? "a reload is already in progress" : "a reload is in progress"
    }

    private mutating func begin(_ kind: Transaction.Kind, requester: Requester?) -> [Action] {
        if let refusal = refusal(for: kind) { return [.refuse(kind, reason: refusal, requester: requester)] }
        transaction = Transaction(kind: kind, phase: .preparing, requester: requester)
        return [.notifySystemd(.reloading), .prepareConfiguration(kind)]
    }

    /// Commits the transaction once every worker of the new generation is ready.
    private mutating func transactionProgress() -> [Action] {
        guard let transaction, case .starting(let newGeneration, let newLimits) = transaction.phase,
            isComplete(generation: newGeneration, limits: newLimits)
        else { return [] }
        self.transaction = nil
        let previous = generation
        generation = newGeneration
        limits = newLimits
        respawnPolicies = [:]
        var actions: [Action] = [.cancel(.generationStart(newGeneration))]
        for worker in workers.values.sorted(by: { $0.pid < $1.pid }) where worker.generation < newGeneration {
            if worker.state != .draining {
                workers[worker.pid]?.state = .draining
                actions.append(.drain(pid: worker.pid, timeoutSeconds: newLimits.drainSeconds))
            }
        }
        actions.append(.commit(transaction.kind, generation: newGeneration, previous: previous,
            requester: transaction.requester))
        actions.append(.notifySystemd(.ready))
        return actions + enforceDrainingCap()
    }

    private mutating func rollBack(_ reason: String) -> [Action] {
        guard let transaction else { return [] }
        self.transaction = nil
        var actions: [Action] = []
        var failed: Int?
        if case .starting(let newGeneration, _) = transaction.phase {
            failed = newGeneration
            actions.append(.cancel(.generationStart(newGeneration)))
            for worker in members(of: newGeneration).sorted(by: { $0.pid < $1.pid }) {
                actions.append(.signal(pid: worker.pid, .kill))
            }
        }
        actions.append(.notifySystemd(.ready))
        actions.append(.rollBack(transaction.kind, generation: failed, errors: [reason], requester: transaction.requester))
        return actions
    }

    /// Keeps at most `max_draining_generations` old generations: the oldest beyond that are killed. Their
    /// connections (long downloads, WebSockets outliving many reloads) are cut: the price of not letting
    /// reloads pile up workers without bound.
    private func enforceDrainingCap() -> [Action] {
        guard let limits else { return [] }
        let old = Set(workers.values.filter { $0.generation != generation }.map(\.generation)).sorted()
        let excess = old.count - limits.maxDrainingGenerations
        guard excess > 0 else { return [] }
        var actions: [Action] = []
        for victim in old.prefix(excess) {
            let members = members(of: victim).sorted { $0.pid < $1.pid }
            actions.append(.closingOldestGeneration(victim, workers: members.count))
            actions += members.map { .signal(pid: $0.pid, .kill) }
        }
        return actions
    }

    private func isComplete(generation: Int, limits: Limits?) -> Bool {
        let members = members(of: generation)
        return members.count == (limits?.workers ?? 0) && members.allSatisfy { $0.state == .ready }
    }

    // MARK: Exits

    private mutating func workerExited(_ pid: Int32, now: Double) -> [Action] {
        guard let worker = workers.removeValue(forKey: pid) else { return [] }
        if case .stopping(let exitCode, _) = lifecycle {
            if workers.isEmpty {
                lifecycle = .stopped
                return [.cancel(.stopGrace), .finishStop(exitCode: exitCode)]
            }
            return []
        }
        if case .starting(let newGeneration, _) = transaction?.phase, worker.generation == newGeneration {
            return rollBack("worker \(pid) of generation \(newGeneration) exited before it was ready")
        }
        // A worker told to drain, or of an old generation, exits on purpose.
        if worker.generation != generation || worker.state == .draining { return [] }
        return slotLost(slot: worker.slot, generation: worker.generation, startedAt: worker.startedAt, now: now)
    }

    /// A worker of the serving generation died (or could not be spawned): respawn it after the policy's delay,
    /// or give the slot up; with no worker of the generation left, the master stops (exit 1).
    private mutating func slotLost(slot: Int, generation: Int, startedAt: Double, now: Double) -> [Action] {
        guard lifecycle == .running, generation == self.generation else { return [] }
        var policy = respawnPolicies[slot] ?? RespawnPolicy()
        let decision = policy.workerCrashed(startedAt: startedAt, now: now)
        respawnPolicies[slot] = policy
        switch decision {
        case .respawn(let delay):
            return [.respawn(slot: slot, generation: generation, afterSeconds: delay)]
        case .giveUp(let crashes):
            var actions: [Action] = [.gaveUp(slot: slot, crashes: crashes)]
            if members(of: generation).isEmpty {
                actions += stop(fast: true, exitCode: 1)
            }
            return actions
        }
    }

    // MARK: Stop

    private var drainSeconds: Double { limits?.drainSeconds ?? 0 }

    /// A graceful stop drains every worker; a fast one (or one that overtakes a graceful stop) terminates them.
    /// Workers still alive after the grace period are killed. A transaction in progress fails.
    private mutating func stop(fast: Bool, exitCode: Int32) -> [Action] {
        switch lifecycle {
        case .running: break
        case .stopping(let code, let wasFast):
            guard fast, !wasFast else { return [] }
            lifecycle = .stopping(exitCode: code, fast: true)
            return [.cancel(.stopGrace), .arm(.stopGrace, afterSeconds: 5)]
                + workers.keys.sorted().map { .signal(pid: $0, .terminate) }
        case .stopped: return []
        }
        lifecycle = .stopping(exitCode: exitCode, fast: fast)
        var actions: [Action] = [.notifySystemd(.stopping)]
        if let transaction {
            self.transaction = nil
            if case .starting(let newGeneration, _) = transaction.phase {
                actions.append(.cancel(.generationStart(newGeneration)))
            }
            actions.append(.rollBack(transaction.kind, generation: nil, errors: ["the master is stopping"],
                requester: transaction.requester))
        }
        if workers.isEmpty {
            lifecycle = .stopped
            return actions + [.finishStop(exitCode: exitCode)]
        }
        for pid in workers.keys.sorted() {
            if fast {
                actions.append(.signal(pid: pid, .terminate))
            } else if workers[pid]?.state != .draining {
                workers[pid]?.state = .draining
                actions.append(.drain(pid: pid, timeoutSeconds: drainSeconds))
            }
        }
        actions.append(.arm(.stopGrace, afterSeconds: fast ? 5 : drainSeconds + 5))
        return actions
    }

    static func format(seconds: Double) -> String {
        seconds == seconds.rounded() ? "\(Int(seconds))s" : "\(seconds)s"
    }
}

// Comparable actions for tests and logs (a requester that can be compared, such as a name).
extension SupervisorStateMachine.Transaction: Equatable where Requester: Equatable {}
extension SupervisorStateMachine.Action: Equatable where Requester: Equatable {}
