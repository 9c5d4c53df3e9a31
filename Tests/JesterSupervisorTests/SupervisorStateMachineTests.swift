// SPDX-License-Identifier: Apache-2.0
@testable import JesterSupervisor
import Testing

/// The master's decisions without a process: each test drives `SupervisorStateMachine` through an edge case
/// that only live tests (or luck) reached before.

private typealias Machine = SupervisorStateMachine<String>

private let two = Machine.Limits(workers: 2, drainSeconds: 10, startSeconds: 5, maxDrainingGenerations: 2)

/// A test's view of the machine: gives spawned workers pids in order and plays their side.
private struct Harness {
    var machine = Machine()
    var nextPID: Int32 = 100
    var now = 0.0

    /// Starts generation 1 and makes its workers ready.
    init(_ limits: Machine.Limits = two) {
        let actions = machine.handle(.start(limits))
        #expect(actions == (0..<limits.workers).map { .spawn(slot: $0, generation: 1) })
        let pids = spawn(actions)
        let ready = pids.flatMap { machine.handle(.workerReady(pid: $0)) }
        #expect(ready == [.notifySystemd(.ready)])
    }

    /// Plays the master's part for every `.spawn` in `actions`: the processes start; returns their pids.
    @discardableResult
    mutating func spawn(_ actions: [Machine.Action]) -> [Int32] {
        var pids: [Int32] = []
        for action in actions {
            guard case .spawn(let slot, let generation) = action else { continue }
            let pid = nextPID
            nextPID += 1
            #expect(machine.handle(.workerSpawned(pid: pid, slot: slot, generation: generation, now: now)).isEmpty)
            pids.append(pid)
        }
        return pids
    }

    /// A reload up to its new workers spawned (not ready): returns them.
    mutating func startReload(by requester: String? = nil, limits: Machine.Limits = two) -> [Int32] {
        #expect(machine.handle(.reloadRequested(requester)) == [.notifySystemd(.reloading), .prepareConfiguration(.reload)])
        let actions = machine.handle(.configurationAccepted(limits))
        guard case .arm(.generationStart(let generation), let seconds) = actions.first else {
            Issue.record("no start deadline in \(actions)")
            return []
        }
        #expect(seconds == limits.startSeconds)
        #expect(generation == machine.startingGeneration)
        return spawn(actions)
    }

    func pids(of generation: Int) -> [Int32] {
        machine.members(of: generation).map(\.pid).sorted()
    }
}

@Test func aReloadCommitsOnceEveryNewWorkerIsReadyAndDrainsTheOld() {
    var harness = Harness()
    let new = harness.startReload(by: "ctl")
    #expect(harness.machine.handle(.workerReady(pid: new[0])).isEmpty)
    let actions = harness.machine.handle(.workerReady(pid: new[1]))
    #expect(actions == [
        .cancel(.generationStart(2)), .drain(pid: 100, timeoutSeconds: 10), .drain(pid: 101, timeoutSeconds: 10),
        .commit(.reload, generation: 2, previous: 1, requester: "ctl"), .notifySystemd(.ready),
    ])
    #expect(harness.machine.generation == 2 && harness.machine.transaction == nil)
    // The old workers leave as they were told to: no respawn.
    #expect(harness.machine.handle(.workerExited(pid: 100, now: 1)).isEmpty)
    #expect(harness.machine.handle(.workerExited(pid: 101, now: 1)).isEmpty)
}

@Test func aReloadDuringAReloadOrAStopIsRefused() {
    var harness = Harness()
    _ = harness.startReload(by: "first")
    #expect(harness.machine.handle(.reloadRequested("second"))
        == [.refuse(.reload, reason: "a reload is already in progress", requester: "second")])
    #expect(harness.machine.handle(.upgradeRequested("third"))
        == [.refuse(.upgrade, reason: "a reload is in progress", requester: "third")])
    var stopping = Harness()
    _ = stopping.machine.handle(.stopRequested(fast: false, exitCode: 0))
    #expect(stopping.machine.handle(.reloadRequested(nil))
        == [.refuse(.reload, reason: "the master is stopping", requester: nil)])
}

@Test func anUpgradeDuringADrainGoesAhead() {
    var harness = Harness()
    let new = harness.startReload()
    for pid in new { _ = harness.machine.handle(.workerReady(pid: pid)) }
    // Generation 1 drains (its workers have not exited): an upgrade may still start; the new program adopts both.
    #expect(harness.pids(of: 1) == [100, 101])
    #expect(harness.machine.handle(.upgradeRequested("ctl")) == [.execNewBinary("ctl")])
}

@Test func aCrashOfTheServingGenerationDuringAReloadIsRespawnedThenForgotten() {
    var harness = Harness()
    _ = harness.startReload()
    #expect(harness.machine.handle(.workerExited(pid: 100, now: 50)) == [.respawn(slot: 0, generation: 1, afterSeconds: 0.1)])
    // The respawn comes due after generation 2 took over: nothing is spawned for generation 1.
    for pid in harness.pids(of: 2) { _ = harness.machine.handle(.workerReady(pid: pid)) }
    #expect(harness.machine.generation == 2)
    #expect(harness.machine.handle(.respawnDue(slot: 0, generation: 1)).isEmpty)
}

@Test func aNewWorkerDyingRollsTheReloadBackAndItsNumberIsNotReused() {
    var harness = Harness()
    let new = harness.startReload(by: "ctl")
    let actions = harness.machine.handle(.workerExited(pid: new[0], now: 1))
    #expect(actions == [
        .cancel(.generationStart(2)), .signal(pid: new[1], .kill), .notifySystemd(.ready),
        .rollBack(.reload, generation: 2, errors: ["worker \(new[0]) of generation 2 exited before it was ready"],
            requester: "ctl"),
    ])
    #expect(harness.machine.generation == 1 && harness.machine.transaction == nil)
    // The next attempt is generation 3: the killed worker's late exit cannot fail it.
    let next = harness.startReload()
    #expect(harness.machine.startingGeneration == 3)
    #expect(harness.machine.handle(.workerExited(pid: new[1], now: 2)).isEmpty)
    for pid in next { _ = harness.machine.handle(.workerReady(pid: pid)) }
    #expect(harness.machine.generation == 3)
}

@Test func aGenerationNotReadyInTimeIsRolledBackAndALateReadyChangesNothing() {
    var harness = Harness()
    let new = harness.startReload()
    _ = harness.machine.handle(.workerReady(pid: new[0]))
    let actions = harness.machine.handle(.deadlinePassed(.generationStart(2)))
    #expect(actions.contains(.rollBack(.reload, generation: 2,
        errors: ["new workers did not report ready within 5s"], requester: nil)))
    #expect(actions.filter { if case .signal(_, .kill) = $0 { true } else { false } }.count == 2)
    #expect(harness.machine.handle(.workerReady(pid: new[1])).isEmpty)
    #expect(harness.machine.generation == 1)
    // A deadline of an attempt that is over is stale.
    #expect(harness.machine.handle(.deadlinePassed(.generationStart(2))).isEmpty)
}

@Test func aRefusedConfigurationChangesNothingAndTheNextReloadMayStart() {
    var harness = Harness()
    _ = harness.machine.handle(.reloadRequested("ctl"))
    #expect(harness.machine.handle(.configurationRefused(errors: ["a.toml:3:1: error: x"])) == [
        .notifySystemd(.ready), .rollBack(.reload, generation: nil, errors: ["a.toml:3:1: error: x"], requester: "ctl"),
    ])
    _ = harness.startReload()
    #expect(harness.machine.startingGeneration == 2)
}

@Test func aStopDuringAReloadFailsItAndEndsOnceEveryWorkerIsGone() {
    var harness = Harness()
    let new = harness.startReload(by: "ctl")
    let actions = harness.machine.handle(.stopRequested(fast: false, exitCode: 0))
    #expect(actions == [
        .notifySystemd(.stopping), .cancel(.generationStart(2)),
        .rollBack(.reload, generation: nil, errors: ["the master is stopping"], requester: "ctl"),
        .drain(pid: 100, timeoutSeconds: 10), .drain(pid: 101, timeoutSeconds: 10),
        .drain(pid: new[0], timeoutSeconds: 10), .drain(pid: new[1], timeoutSeconds: 10),
        .arm(.stopGrace, afterSeconds: 15),
    ])
    // A late ready commits nothing; the grace period kills who is left.
    #expect(harness.machine.handle(.workerReady(pid: new[0])).isEmpty)
    #expect(harness.machine.handle(.deadlinePassed(.stopGrace)).count == 4)
    for pid: Int32 in [100, 101, new[0]] { #expect(harness.machine.handle(.workerExited(pid: pid, now: 1)).isEmpty) }
    #expect(harness.machine.handle(.workerExited(pid: new[1], now: 1)) == [.cancel(.stopGrace), .finishStop(exitCode: 0)])
}

@Test func signalsDuringAndAfterShutdownFinishItOnce() {
    var harness = Harness()
    #expect(harness.machine.handle(.stopRequested(fast: false, exitCode: 0)).count == 4)
    // SIGTERM again: nothing new. SIGINT: the graceful stop turns fast.
    #expect(harness.machine.handle(.stopRequested(fast: false, exitCode: 0)).isEmpty)
    #expect(harness.machine.handle(.stopRequested(fast: true, exitCode: 0)) == [
        .cancel(.stopGrace), .arm(.stopGrace, afterSeconds: 5), .signal(pid: 100, .terminate),
        .signal(pid: 101, .terminate),
    ])
    _ = harness.machine.handle(.workerExited(pid: 100, now: 1))
    #expect(harness.machine.handle(.workerExited(pid: 101, now: 1)) == [.cancel(.stopGrace), .finishStop(exitCode: 0)])
    // After the end (the SIGILL once came from a second shutdown here): a late SIGCHLD, a signal, a request.
    #expect(harness.machine.handle(.workerExited(pid: 101, now: 2)).isEmpty)
    #expect(harness.machine.handle(.stopRequested(fast: true, exitCode: 0)).isEmpty)
    #expect(harness.machine.handle(.reloadRequested(nil)).isEmpty)
    #expect(harness.machine.lifecycle == .stopped)
}

@Test func aStopWithNoWorkerLeftFinishesAtOnce() {
    var machine = Machine()
    #expect(machine.handle(.stopRequested(fast: false, exitCode: 3)) == [.notifySystemd(.stopping), .finishStop(exitCode: 3)])
    #expect(machine.handle(.stopRequested(fast: true, exitCode: 0)).isEmpty)
}

@Test func aWorkerSpawnedAfterTheStopBeganIsToldAtOnce() {
    var harness = Harness()
    _ = harness.machine.handle(.stopRequested(fast: false, exitCode: 0))
    #expect(harness.machine.handle(.workerSpawned(pid: 300, slot: 0, generation: 1, now: 0))
        == [.drain(pid: 300, timeoutSeconds: 10)])
}

@Test func oldGenerationsBeyondTheCapAreClosed() {
    var harness = Harness(Machine.Limits(workers: 1, drainSeconds: 10, startSeconds: 5, maxDrainingGenerations: 1))
    let one = Machine.Limits(workers: 1, drainSeconds: 10, startSeconds: 5, maxDrainingGenerations: 1)
    let second = harness.startReload(limits: one)
    #expect(!harness.machine.handle(.workerReady(pid: second[0])).contains { if case .closingOldestGeneration = $0 { true } else { false } })
    let third = harness.startReload(limits: one)
    let actions = harness.machine.handle(.workerReady(pid: third[0]))
    #expect(actions.suffix(2) == [.closingOldestGeneration(1, workers: 1), .signal(pid: 100, .kill)])
}

@Test func aCrashLoopingSlotIsGivenUpAndTheLastOneStopsTheMaster() {
    var harness = Harness(Machine.Limits(workers: 1, drainSeconds: 10, startSeconds: 5, maxDrainingGenerations: 2))
    var pid: Int32 = 100
    var last: [Machine.Action] = []
    for crash in 0..<10 {
        harness.now = Double(crash)
        last = harness.machine.handle(.workerExited(pid: pid, now: harness.now))
        guard case .respawn(0, 1, _) = last.first else { break }
        #expect(harness.machine.handle(.respawnDue(slot: 0, generation: 1)) == [.spawn(slot: 0, generation: 1)])
        pid = harness.spawn([.spawn(slot: 0, generation: 1)])[0]
    }
    #expect(last.first == .gaveUp(slot: 0, crashes: 10))
    #expect(last.contains(.finishStop(exitCode: 1)))
    #expect(harness.machine.lifecycle == .stopped)
}

@Test func anUpgradedProgramAdoptsItsWorkersAndStartsTheNextGeneration() {
    var machine = Machine()
    machine.adopt([
        Machine.Worker(pid: 7, slot: 0, generation: 4, state: .ready, startedAt: 0),
        Machine.Worker(pid: 8, slot: 0, generation: 3, state: .draining, startedAt: 0),
    ], generation: 4, limits: Machine.Limits(workers: 1, drainSeconds: 10, startSeconds: 5, maxDrainingGenerations: 2))
    machine.resumeUpgrade(requester: nil)
    #expect(machine.watchUpgrade("ctl")?.generation == 5)
    let actions = machine.handle(.configurationAccepted(
        Machine.Limits(workers: 1, drainSeconds: 10, startSeconds: 5, maxDrainingGenerations: 2)))
    #expect(actions == [.arm(.generationStart(5), afterSeconds: 5), .spawn(slot: 0, generation: 5)])
    _ = machine.handle(.workerSpawned(pid: 9, slot: 0, generation: 5, now: 0))
    let committed = machine.handle(.workerReady(pid: 9))
    #expect(committed.contains(.commit(.upgrade, generation: 5, previous: 4, requester: "ctl")))
    #expect(committed.contains(.drain(pid: 7, timeoutSeconds: 10)))
    #expect(!committed.contains(.drain(pid: 8, timeoutSeconds: 10)))  // already draining
}

@Test func nothingStartsWhileAnUpgradeExecsAndAFailedExecChangesNothing() {
    var harness = Harness()
    #expect(harness.machine.handle(.upgradeRequested("ctl")) == [.execNewBinary("ctl")])
    #expect(harness.machine.handle(.reloadRequested("other"))
        == [.refuse(.reload, reason: "an upgrade is in progress", requester: "other")])
    #expect(harness.machine.handle(.execFailed(reason: "the new binary does not run")) == [
        .notifySystemd(.ready), .rollBack(.upgrade, generation: nil, errors: ["the new binary does not run"], requester: "ctl"),
    ])
    #expect(harness.machine.transaction == nil && harness.machine.generation == 1)
    // A stop in the moment before the exec ends the upgrade (the master then does not exec).
    _ = harness.machine.handle(.upgradeRequested(nil))
    let stop = harness.machine.handle(.stopRequested(fast: false, exitCode: 0))
    #expect(stop.contains(.rollBack(.upgrade, generation: nil, errors: ["the master is stopping"], requester: nil)))
    #expect(harness.machine.transaction == nil)
}

@Test func aNewWorkerThatCannotBeSpawnedRollsTheReloadBackAtOnce() {
    var harness = Harness()
    #expect(harness.machine.handle(.reloadRequested(nil)).count == 2)
    let actions = harness.machine.handle(.configurationAccepted(two))
    #expect(actions.count == 3)  // the deadline, two spawns
    // The first spawn works, the second fails (fork or exec).
    harness.spawn([.spawn(slot: 0, generation: 2)])
    let failed = harness.machine.handle(.spawnFailed(slot: 1, generation: 2, now: 0))
    #expect(failed.contains(.rollBack(.reload, generation: 2,
        errors: ["cannot spawn the worker for slot 1 of generation 2"], requester: nil)))
    #expect(failed.contains(.signal(pid: 102, .kill)))
    #expect(harness.machine.transaction == nil && harness.machine.generation == 1)
}
