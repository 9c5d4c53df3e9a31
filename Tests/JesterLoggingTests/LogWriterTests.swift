// SPDX-License-Identifier: Apache-2.0
import Foundation
import Synchronization
import JesterLogging
import Testing

// The access log's reopen: a descriptor swap queued between lines, with no line lost, repeated or split.

/// A temporary file opened for appending, as the master opens access_log_file.
private func temporaryFile(_ name: String) -> (path: String, fd: Int32) {
    let path = NSTemporaryDirectory() + "jester-logwriter-\(getpid())-\(name)"
    unlink(path)
    return (path, open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640))
}

private func lines(_ path: String) -> [String] {
    let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    return text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
}

@Test func aRedirectSendsEarlierLinesToTheOldFileAndLaterOnesToTheNew() async throws {
    let old = temporaryFile("old")
    let new = temporaryFile("new")
    defer { unlink(old.path); unlink(new.path) }
    let writer = LogWriter(fd: old.fd)
    for number in 0..<500 { writer.write(Array("line \(number)".utf8)) }
    let swapped = Mutex(false)
    writer.redirect(toDescriptor: new.fd) { swapped.withLock { $0 = true } }
    for number in 500..<1000 { writer.write(Array("line \(number)".utf8)) }
    writer.flush()
    // The swap is done by now; its completion runs on whichever thread did it, just after (a loaded machine can
    // take a moment to get there).
    let deadline = ContinuousClock.now + .seconds(10)
    while !swapped.withLock({ $0 }), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
    #expect(swapped.withLock { $0 })
    #expect(lines(old.path) == (0..<500).map { "line \($0)" })
    #expect(lines(new.path) == (500..<1000).map { "line \($0)" })
    // (Whether the old descriptor was closed is not checked: tests run in parallel and may reuse its number.)
    #expect(writer.descriptor == new.fd)
}

@Test func theWriterThreadDoesTheSwapWithoutAFlush() async throws {
    let old = temporaryFile("thread-old")
    let new = temporaryFile("thread-new")
    defer { unlink(old.path); unlink(new.path) }
    let writer = LogWriter(fd: old.fd)
    writer.write(Array("before".utf8))
    let swapped = Mutex(false)
    writer.redirect(toDescriptor: new.fd) { swapped.withLock { $0 = true } }
    writer.write(Array("after".utf8))
    let deadline = Date().addingTimeInterval(5)
    while !swapped.withLock({ $0 }) || lines(new.path).isEmpty, Date() < deadline { usleep(10_000) }
    #expect(lines(old.path) == ["before"] && lines(new.path) == ["after"])
}

@Test func standardOutputAndErrorAreNeverClosedByASwap() {
    let file = temporaryFile("stdout")
    defer { unlink(file.path) }
    let writer = LogWriter(fd: 1)
    writer.redirect(toDescriptor: file.fd)
    writer.flush()
    #expect(fcntl(1, F_GETFD) != -1 && writer.descriptor == file.fd)
}
