// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterControl
@testable import JesterSupervisor
import JesterSystem
import NIOCore
import NIOPosix
import Testing

@Test func anHTTPCheckIsJudgedByItsStatusLineAndSaysWhy() {
    let expected = 200...399
    #expect(ProbeOutcome.judge(Array("HTTP/1.1 200 OK\r\n".utf8), expected: expected) == .passed(status: 200))
    #expect(ProbeOutcome.judge(Array("HTTP/1.1 503 Service Unavailable\r\n".utf8), expected: expected)
        == .unexpectedStatus(503))
    #expect(ProbeOutcome.judge(Array("SSH-2.0-OpenSSH_9.2\r\n".utf8), expected: expected) == .notHTTP)
    // Not a whole line yet: wait for more, unless 256 bytes came without one.
    #expect(ProbeOutcome.judge(Array("HTTP/1.1 20".utf8), expected: expected) == nil)
    #expect(ProbeOutcome.judge([UInt8](repeating: 0x41, count: 300), expected: expected) == .notHTTP)
    #expect(ProbeOutcome.unexpectedStatus(503).description == "status 503")
    #expect(!ProbeOutcome.unexpectedStatus(503).passed)
    #expect(ProbeOutcome.passed(status: nil).passed)
}

@Test func connectErrorsAreNamedAsOperatorsKnowThem() {
    #expect(ProbeOutcome.classify(IOError(errnoCode: ECONNREFUSED, reason: "connect")) == .refused)
    #expect(ProbeOutcome.classify(IOError(errnoCode: ECONNRESET, reason: "read")) == .reset)
    #expect(ProbeOutcome.classify(ChannelError.connectTimeout(.seconds(2))) == .timedOut)
    #expect(ProbeOutcome.classify(IOError(errnoCode: EHOSTUNREACH, reason: "connect")) == .failed("no route to host"))
    #expect(ProbeOutcome.refused.description == "connection refused")
    #expect(ProbeOutcome.reset.description == "connection reset")
    #expect(ProbeOutcome.timedOut.description == "timeout")
}

@Test func healthCountsTheRunBehindEachDecision() {
    var health = TargetHealth(rise: 2, fall: 3)
    let changes = [true, false, false, false, true, true].map { health.record(success: $0) }
    #expect(changes == [true, false, false, true, false, true])
    #expect((health.state, health.successes, health.failures) == (.healthy, 2, 0))
    _ = [false, false].map { health.record(success: $0) }
    #expect((health.state, health.successes, health.failures) == (.healthy, 0, 2))
}

private func states(_ rows: [(String, String, String, String)]) -> [TargetState] {
    rows.map { TargetState(upstream: $0.0, target: $0.1, health: $0.2, admin: $0.3) }
}

@Test func aPoolFailsOpenOnceWhenEveryEnabledTargetIsUnhealthyAndLeavesOnce() {
    var tracker = FailOpenTracker()
    let healthy = states([("api", "a:1", "healthy", "enabled"), ("api", "b:1", "unhealthy", "enabled"),
        ("web", "c:1", "unknown", "enabled")])
    #expect(tracker.update(healthy) == [])
    let allDown = states([("api", "a:1", "unhealthy", "enabled"), ("api", "b:1", "unhealthy", "enabled"),
        ("web", "c:1", "unknown", "enabled")])
    #expect(tracker.update(allDown) == [.entered(upstream: "api", targets: 2)])
    // The same picture again (another target's change, an admin command): nothing new to say.
    #expect(tracker.update(allDown) == [])
    #expect(tracker.pools == ["api"])
    let oneBack = states([("api", "a:1", "healthy", "enabled"), ("api", "b:1", "unhealthy", "enabled"),
        ("web", "c:1", "unknown", "enabled")])
    #expect(tracker.update(oneBack) == [.left(upstream: "api")])
    #expect(tracker.pools.isEmpty)
}

@Test func targetsTakenOutByAnOperatorDoNotCountAndAPoolWithNoneEnabledDoesNotFailOpen() {
    var tracker = FailOpenTracker()
    // The healthy target is drained: the unhealthy one is all that serves, so the pool fails open.
    #expect(tracker.update(states([("api", "a:1", "healthy", "drain"), ("api", "b:1", "unhealthy", "enabled")]))
        == [.entered(upstream: "api", targets: 1)])
    // Every target taken out: nothing takes requests, which is not failing open.
    #expect(tracker.update(states([("api", "a:1", "healthy", "drain"), ("api", "b:1", "unhealthy", "disabled")]))
        == [.left(upstream: "api")])
    #expect(tracker.update(states([("solo", "a:1", "unhealthy", "enabled")])) == [.entered(upstream: "solo", targets: 1)])
    // A reload that removes the pool forgets it without a line.
    #expect(tracker.update([]) == [])
    #expect(tracker.pools.isEmpty)
}

@Test func aListenerThatCannotBindIsNamedWithWhereItIsWritten() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("jester-bind-\(getpid())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let file = directory.appendingPathComponent("jester.toml").path
    let text = """
        [server]
        workers = 1

        [[listeners]]
        name = "first"
        address = "127.0.0.1:1"

        # the second one
        [[listeners]]
        name = "web"
        address = "127.0.0.1:2"

        [[routes]]
        respond = { status = 200 }
        """
    try text.write(toFile: file, atomically: true, encoding: .utf8)
    let configuration = try ConfigLoader().load(file: file)
    let locations = configuration.listenerLocations()
    #expect(locations["first"] == SourceLocation(file: file, line: 4, column: 1))
    #expect(locations["web"] == SourceLocation(file: file, line: 9, column: 1))
    let error = ListenerBindError(
        listener: "web", address: "127.0.0.1:2", location: locations["web"],
        cause: SystemError("bind", "127.0.0.1:2", errno: EADDRINUSE))
    #expect(error.description
        == "\(file):9:1: error: listener 'web' cannot listen on 127.0.0.1:2: address already in use: another program "
        + "listens there (`ss -ltnp` shows which)")
    let denied = ListenerBindError(listener: "web", address: "0.0.0.0:80", location: nil,
        cause: SystemError("bind", "0.0.0.0:80", errno: EACCES))
    #expect(denied.description.hasPrefix("error: listener 'web' cannot listen on 0.0.0.0:80: permission denied: "))
    #expect(denied.description.hasSuffix("CAP_NET_BIND_SERVICE"))
    #expect(error.metadata["location"] == .string("\(file):9"))
}
