// SPDX-License-Identifier: Apache-2.0
import Foundation
import Synchronization

/// Writes log lines to a file descriptor from a background thread, so logging never blocks an event loop.
///
/// Callers append to a bounded in-memory queue and return at once. When the reader of stdout/stderr (journald,
/// a terminal, a pipe) falls behind and the queue is full, lines are dropped and counted, and the count is
/// written once the writer catches up: a request is never slowed or failed by its log line.
///
/// The descriptor can be replaced while lines flow (`redirect`, for logrotate's reopen): the swap is queued
/// behind the lines already accepted, so each of those goes whole to the old descriptor and every later one to
/// the new; no line is lost or split between the two.
public final class LogWriter: Sendable {
    /// A queued descriptor swap: lines queued before it go to the old descriptor.
    private struct Swap {
        /// How many of the queued lines precede it.
        var afterLine: Int
        var fd: Int32
        var completion: (@Sendable () -> Void)?
    }

    private struct Queue {
        var lines: [[UInt8]] = []
        var bytes = 0
        var dropped = 0
        var swaps: [Swap] = []
    }

    private let maxQueuedBytes: Int
    private let queue = Mutex(Queue())
    /// The descriptor lines go to. Held while a batch is written, so the writer thread and `flush` (exit paths,
    /// on another thread) write batches whole and in order.
    private let output = Mutex<Int32>(-1)
    private let condition = NSCondition()

    /// The writer for standard output.
    public static let standardOutput = LogWriter(fd: 1)
    /// The writer for standard error.
    public static let standardError = LogWriter(fd: 2)
    /// The access log: standard output until a worker is given `[log] access_log_file`'s descriptor, which
    /// `redirect` then swaps on every reopen. Its own queue, so operational lines on standard output never wait
    /// behind a busy access log.
    public static let accessLog = LogWriter(fd: 1)

    public init(fd: Int32, maxQueuedBytes: Int = 4 * 1024 * 1024) {
        self.maxQueuedBytes = maxQueuedBytes
        output.withLock { $0 = fd }
        let thread = Thread { [self] in self.run() }
        thread.name = "jester-log"
        thread.start()
    }

    /// The descriptor lines currently go to (after the swaps done so far).
    public var descriptor: Int32 { output.withLock { $0 } }

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
        if accepted { wake() }
    }

    /// Sends every line written from now on to `fd` (taking ownership of it); lines already queued still go to
    /// the current descriptor, which is closed after them unless it is standard output or standard error.
    /// `completion` runs on the writer thread once the swap is done (what a reopen reports to the master).
    public func redirect(toDescriptor fd: Int32, completion: (@Sendable () -> Void)? = nil) {
        queue.withLock { queue in
            queue.swaps.append(Swap(afterLine: queue.lines.count, fd: fd, completion: completion))
        }
        wake()
    }

    /// Writes everything queued (and does the queued swaps) before returning; for exit paths.
    public func flush() {
        writeQueued()
    }

    private func wake() {
        condition.lock()
        condition.signal()
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while queue.withLock({ $0.lines.isEmpty && $0.dropped == 0 && $0.swaps.isEmpty }) {
                condition.wait(until: Date(timeIntervalSinceNow: 1))
            }
            condition.unlock()
            writeQueued()
        }
    }

    /// Takes the queue and writes it, swapping descriptors where swaps were queued.
    private func writeQueued() {
        var completions: [@Sendable () -> Void] = []
        output.withLock { fd in
            let taken = queue.withLock { queue -> Queue in
                defer { queue = Queue() }
                return queue
            }
            var start = 0
            for swap in taken.swaps {
                Self.write(taken.lines[start..<swap.afterLine], dropped: 0, to: fd)
                start = swap.afterLine
                if fd != swap.fd, fd > 2 { close(fd) }
                fd = swap.fd
                if let completion = swap.completion { completions.append(completion) }
            }
            Self.write(taken.lines[start...], dropped: taken.dropped, to: fd)
        }
        for completion in completions { completion() }
    }

    private static func write(_ lines: ArraySlice<[UInt8]>, dropped: Int, to fd: Int32) {
        guard !lines.isEmpty || dropped > 0 else { return }
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
