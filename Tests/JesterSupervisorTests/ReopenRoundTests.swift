// SPDX-License-Identifier: Apache-2.0
@testable import JesterSupervisor
import Testing

// A reopen waits for each worker it sent the new access-log file to; its outcome names those that did not swap.

@Test func aReopenIsCompleteOnceEveryWorkerSwapped() {
    var round = ReopenRound(sequence: 2, waiting: [10, 11])
    round.workerSwapped(10, sequence: 2)
    #expect(!round.isComplete)
    round.workerSwapped(10, sequence: 2)  // a repeat counts once
    round.workerSwapped(11, sequence: 3)  // a later reopen swapped after this one: done too
    #expect(round.isComplete)
    #expect(round.outcome == (true, "access log reopened by 2 workers"))
}

@Test func anEarlierReopensAcknowledgementDoesNotCount() {
    var round = ReopenRound(sequence: 2, waiting: [10])
    round.workerSwapped(10, sequence: 1)
    #expect(!round.isComplete)
}

@Test func workersThatDidNotSwapAreNamedAndExitedOnesForgiven() {
    var round = ReopenRound(sequence: 1, waiting: [10, 11, 12], unreachable: [9: "started by the previous binary"])
    round.workerSwapped(10, sequence: 1)
    round.workerExited(12)
    round.deadlinePassed()
    #expect(round.isComplete)
    #expect(round.outcome == (false,
        "access log reopened by 1 worker; not by pid 9 (started by the previous binary), pid 11 (did not answer)"))
    var gone = ReopenRound(sequence: 1, waiting: [], unreachable: [9: "started by the previous binary"])
    gone.workerExited(9)
    #expect(gone.outcome.success)
}

@Test func theFilesForgetExitedWorkersAndFinishTheirRounds() {
    let files = AccessLogFiles()
    files.rounds = [ReopenRound(sequence: 1, waiting: [10, 11])]
    #expect(files.workerSwapped(10, sequence: 1).isEmpty)
    let finished = files.workerExited(11)
    #expect(finished.map(\.sequence) == [1] && files.rounds.isEmpty)
}
