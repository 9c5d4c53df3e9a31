// SPDX-License-Identifier: Apache-2.0
import Glibc
import JesterControl

/// The master's access-log files (`[log] access_log_file`): the descriptor it opened for each path in use, each
/// worker's access-log channel (`DescriptorChannel`) and path, and the reopen rounds awaiting the workers.
///
/// The master opens the files (as root) and workers only ever receive descriptors: a worker runs as an
/// unprivileged user that may not be able to open the path, and must not be able to open other paths.
final class AccessLogFiles {
    /// Path → the master's descriptor for it (a copy goes to each worker at spawn and on reopen).
    var files: [String: Int32] = [:]
    /// Worker pid → the master's end of its channel and the path its generation logs to.
    var workers: [Int32: (channel: Int32, path: String?)] = [:]
    /// The number of the last reopen: a worker acknowledges each by number.
    var sequence: UInt64 = 0
    /// Reopens waiting for workers to swap, oldest first.
    var rounds: [ReopenRound] = []
    /// Reopen requests and their reply targets, by sequence.
    var requesters: [UInt64: any ControlReplyTarget] = [:]

    /// Forgets an exited worker (closing the master's end of its channel); rounds stop waiting for it.
    /// Returns the rounds this completed.
    func workerExited(_ pid: Int32) -> [ReopenRound] {
        if let entry = workers.removeValue(forKey: pid) { Glibc.close(entry.channel) }
        return settle { $0.workerExited(pid) }
    }

    /// A worker's acknowledgement; returns the rounds it completed.
    func workerSwapped(_ pid: Int32, sequence: UInt64) -> [ReopenRound] {
        settle { $0.workerSwapped(pid, sequence: sequence) }
    }

    private func settle(_ event: (inout ReopenRound) -> Void) -> [ReopenRound] {
        for index in rounds.indices { event(&rounds[index]) }
        let finished = rounds.filter(\.isComplete)
        rounds.removeAll(where: \.isComplete)
        return finished
    }
}

/// One reopen as it waits for the workers: which have swapped to the new descriptor, which are still due and
/// which could not be reached. Pure: the master feeds it what happens and asks for the outcome.
struct ReopenRound: Equatable {
    let sequence: UInt64
    /// Workers sent the new descriptor that have not yet said they swapped.
    private(set) var waiting: Set<Int32>
    private(set) var swapped = 0
    /// Workers that will not swap, and why (no channel: adopted from the previous binary; a failed send).
    private(set) var unreachable: [Int32: String]

    init(sequence: UInt64, waiting: Set<Int32>, unreachable: [Int32: String] = [:]) {
        self.sequence = sequence
        self.waiting = waiting
        self.unreachable = unreachable
    }

    var isComplete: Bool { waiting.isEmpty }

    mutating func workerSwapped(_ pid: Int32, sequence: UInt64) {
        // A later reopen's descriptor was swapped in after this one's: this one is done too.
        guard sequence >= self.sequence, waiting.remove(pid) != nil else { return }
        swapped += 1
    }

    /// An exited worker writes no more lines: nothing is lost by its not swapping.
    mutating func workerExited(_ pid: Int32) {
        waiting.remove(pid)
        unreachable[pid] = nil
    }

    /// The deadline passed: the workers still due did not swap.
    mutating func deadlinePassed() {
        for pid in waiting { unreachable[pid] = "did not answer" }
        waiting = []
    }

    /// What `jesterctl reopen-logs` prints, and whether every worker writes to the new file.
    var outcome: (success: Bool, message: String) {
        let plural = swapped == 1 ? "worker" : "workers"
        guard !unreachable.isEmpty else { return (true, "access log reopened by \(swapped) \(plural)") }
        let failed = unreachable.sorted { $0.key < $1.key }.map { "pid \($0.key) (\($0.value))" }
        return (false, "access log reopened by \(swapped) \(plural); not by " + failed.joined(separator: ", "))
    }
}
