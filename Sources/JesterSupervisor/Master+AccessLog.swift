// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterControl
import JesterSystem
import Logging

/// The access-log file: opened by the master for each generation's workers, and reopened for logrotate
/// (SIGUSR1, `jesterctl reopen-logs`) with the new descriptor sent to every live worker.
extension Master {
    /// How long a reopen waits for the workers' acknowledgements.
    static let reopenDeadlineSeconds: Int64 = 5

    /// The master's descriptor for `configuration`'s access-log file, opening it on first use (nil: the access log
    /// goes to standard output). Throws with the path when it cannot be opened, which fails the start or reload.
    func accessLogDescriptor(for configuration: Configuration) throws(SystemError) -> Int32? {
        guard let path = configuration.log.accessLogFile else { return nil }
        if let fd = accessLogs.files[path] { return fd }
        let fd = try Self.openAccessLog(path)
        accessLogs.files[path] = fd
        return fd
    }

    static func openAccessLog(_ path: String) throws(SystemError) -> Int32 {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw SystemError("open access_log_file", path) }
        return fd
    }

    /// What a worker spawned for `configuration` is given: the access-log file and its end of a new channel
    /// (the master keeps the other, under `pid` once known: see `accessLogWorkerSpawned`).
    func accessLogDescriptors(for configuration: Configuration) throws -> (file: Int32?, channel: (Int32, Int32)) {
        (try accessLogDescriptor(for: configuration), try DescriptorChannel.makePair())
    }

    func accessLogWorkerSpawned(_ pid: Int32, channel: Int32, configuration: Configuration) {
        accessLogs.workers[pid] = (channel, configuration.log.accessLogFile)
    }

    func accessLogWorkerExited(_ pid: Int32) {
        finish(accessLogs.workerExited(pid))
    }

    func accessLogReopened(by pid: Int32, sequence: UInt64) {
        finish(accessLogs.workerSwapped(pid, sequence: sequence))
    }

    /// Opens every access-log path in use afresh (logrotate moved the old file away) and sends each live worker
    /// the descriptor for its path; `target` hears the outcome once every worker has swapped, or after
    /// `reopenDeadlineSeconds` naming those that did not.
    func reopenAccessLogs(replyTo target: (any ControlReplyTarget)?) {
        let paths = Set(workers.keys.compactMap { accessLogs.workers[$0]?.path })
            .union([configuration.log.accessLogFile, prepared?.configuration.log.accessLogFile].compactMap { $0 })
        guard !paths.isEmpty else {
            reply(.done(success: true, message: "no access_log_file is configured: access lines go to standard output"),
                to: target)
            return
        }
        var reopened: [String: Int32] = [:]
        for path in paths.sorted() {
            do {
                reopened[path] = try Self.openAccessLog(path)
            } catch {
                logger.error("cannot reopen the access log; workers keep writing to the previous file",
                    metadata: ["error": "\(error)"])
                for fd in reopened.values { close(fd) }
                reply(.failure(message: "cannot reopen the access log: \(error)"), to: target)
                return
            }
        }
        // The workers hold their own copies of the old descriptors until they swap; paths no live generation
        // uses any more are dropped here.
        for fd in accessLogs.files.values { close(fd) }
        accessLogs.files = reopened
        accessLogs.sequence += 1
        let sequence = accessLogs.sequence
        var waiting: Set<Int32> = []
        var unreachable: [Int32: String] = [:]
        for pid in workers.keys {
            guard let entry = accessLogs.workers[pid] else {
                unreachable[pid] = "started by the previous binary"
                continue
            }
            guard let path = entry.path, let fd = reopened[path] else { continue }
            do {
                try DescriptorChannel.send(fd, sequence: sequence, over: entry.channel)
                waiting.insert(pid)
            } catch {
                unreachable[pid] = "\(error)"
            }
        }
        logger.notice("reopening the access log", metadata: [
            "files": .array(paths.sorted().map { .string($0) }), "workers": .stringConvertible(waiting.count)])
        let round = ReopenRound(sequence: sequence, waiting: waiting, unreachable: unreachable)
        if let target { accessLogs.requesters[sequence] = target }
        guard !round.isComplete else {
            finish([round])
            return
        }
        accessLogs.rounds.append(round)
        eventLoop.scheduleTask(in: .seconds(Self.reopenDeadlineSeconds)) {
            guard let index = self.accessLogs.rounds.firstIndex(where: { $0.sequence == sequence }) else { return }
            var expired = self.accessLogs.rounds.remove(at: index)
            expired.deadlinePassed()
            self.finish([expired])
        }
    }

    /// Reports finished rounds to their requesters (and to the log when a worker did not swap).
    private func finish(_ rounds: [ReopenRound]) {
        for round in rounds {
            let outcome = round.outcome
            if !outcome.success {
                logger.warning("access log reopen incomplete", metadata: ["detail": "\(outcome.message)"])
            }
            reply(.done(success: outcome.success, message: outcome.message),
                to: accessLogs.requesters.removeValue(forKey: round.sequence))
        }
    }
}
