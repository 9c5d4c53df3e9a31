// SPDX-License-Identifier: Apache-2.0
import Foundation
import Synchronization

/// Writes log lines to a file descriptor from a background thread, so logging never blocks an event loop.
///
/// Callers append to a bounded in-memory queue and return at once. When the reader of stdout/stderr (journald,
/// a terminal, a pipe) falls behind and the queue is full, lines are dropped and counted, and the count is
/// written once the writer catches up: a request is never slowed or failed by its log line.
public final class LogWriter: Sendable {
    private struct Queue {
        var lines: [[UInt8]] = []
        var bytes = 0
        var dropped = 0
    }

    private let fd: Int32
    private let maxQueuedBytes: Int
    private let queue = Mutex(Queue())
    private let condition = NSCondition()

    /// The writer for standard output.
    public static let standardOutput = LogWriter(fd: 1)
    /// The writer for standard error.
    public static let standardError = LogWriter(fd: 2)

    public init(fd: Int32, maxQueuedBytes: Int = 4 * 1024 * 1024) {
        self.fd = fd
        self.maxQueuedBytes = maxQueuedBytes
        let thread = Thread { [self] in self.run() }
        thread.name = "jester-log"
        thread.start()
    }

    /// Queues one line (a newline is added).
    public func write(_ line: [UInt8]) {
        let accepted = queue.withLock { queue -> Bool in
            guard queue.bytes + line.count <= maxQueuedBytes else {
                queue.dropped += 1
                return false
            }
            queue.lines.append(line)
            queue.bytes += line.count
            return true
        }
        if accepted {
            condition.lock()
            condition.signal()
            condition.unlock()
        }
    }

    /// Writes everything queued before returning; for exit paths.
    public func flush() {
        let pending = queue.withLock { queue -> ([[UInt8]], Int) in
            defer { queue = Queue() }
            return (queue.lines, queue.dropped)
        }
        output(pending.0, dropped: pending.1)
    }

    private func run() {
        while true {
            condition.lock()
            while queue.withLock({ $0.lines.isEmpty && $0.dropped == 0 }) {
                condition.wait(until: Date(timeIntervalSinceNow: 1))
            }
            condition.unlock()
            let (lines, dropped) = queue.withLock { queue -> ([[UInt8]], Int) in
                defer { queue = Queue() }
                return (queue.lines, queue.dropped)
            }
            output(lines, dropped: dropped)
        }
    }

    private func output(_ lines: [[UInt8]], dropped: Int) {
        var chunk: [UInt8] = []
        chunk.reserveCapacity(lines.reduce(0) { $0 + $1.count + 1 })
        for line in lines {
            chunk += line
            chunk.append(0x0A)
        }
        if dropped > 0 {
            chunk += Array(#"{"level":"warning","message":"log lines dropped: output too slow","dropped":\#(dropped)}"#.utf8)
            chunk.append(0x0A)
        }
        var offset = 0
        while offset < chunk.count {
            let written = chunk.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, chunk.count - offset) }
            if written < 0, errno == EINTR { continue }
            if written <= 0 { return }
            offset += written
        }
    }
}
