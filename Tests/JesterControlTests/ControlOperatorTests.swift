// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterControl
import Testing

// What issue 19's operator commands add to the protocol, and jesterctl's pure decisions: which socket, which
// exit status.

@Test func aDrainedWorkerSaysHowManyRequestsItsTimeoutCut() throws {
    var codec = ControlFrameCodec()
    codec.append(ControlFrameCodec.encode(.workerDrained(cutRequests: 3)))
    #expect(try codec.next() == .workerDrained(cutRequests: 3))
    // What an old master reads it as: its case without values ignores the count.
    let payload = Data(ControlFrameCodec.encode(.workerDrained(cutRequests: 3)).dropFirst(4))
    let object = try JSONSerialization.jsonObject(with: payload) as? [String: Any]
    #expect((object?["message"] as? [String: Any])?.keys.first == "workerDrained")
}

@Test func newRequestsAndAnswersRoundTrip() throws {
    let messages: [ControlMessage] = [
        .reopenLogs, .accessLogReopened(sequence: 7), .stop(fast: false, wait: true),
        .setTargetAdmin(upstream: nil, target: "10.0.0.7:80", state: "drain"),
        .failure(message: "no upstream 'x'", reason: .notFound),
        .statusReport(StatusReport(
            pid: 1, version: "0.1.0", startedAt: 0, configFile: "/etc/jester/jester.toml", configHash: "ab",
            generation: 2, state: "running", workers: [],
            lastFailedReload: FailedReload(at: 5, kind: "reload", errors: ["a.toml:1:1: error: x"]),
            listeners: [ListenerStatus(name: "main", address: "127.0.0.1:80", protocol: "http", tls: false)])),
    ]
    var codec = ControlFrameCodec()
    for message in messages { codec.append(ControlFrameCodec.encode(message)) }
    for message in messages { #expect(try codec.next() == message) }
}

@Test func statusFromAnOlderMasterHasNoListenersOrFailedReload() throws {
    let old = #"{"pid":1,"version":"0.1.0","startedAt":0,"configFile":"f","configHash":"h","generation":1,"#
        + #""state":"running","workers":[]}"#
    let report = try JSONDecoder().decode(StatusReport.self, from: Data(old.utf8))
    #expect(report.listeners == nil && report.lastFailedReload == nil)
}

@Test func theAssignmentCarriesTheAccessLogDescriptors() throws {
    var assignment = WorkerAssignment(
        slot: 0, generation: 1, configuration: Data("{}".utf8), listenerNames: [], userID: nil, groupID: nil)
    assignment.accessLogFD = 7
    assignment.accessLogChannelFD = 8
    let decoded = try JSONDecoder().decode(WorkerAssignment.self, from: try JSONEncoder().encode(assignment))
    #expect(decoded.accessLogFD == 7 && decoded.accessLogChannelFD == 8)
}

@Test func exitStatusesAreTheDocumentedNumbers() {
    #expect(ControlExitStatus.allCases.map(\.rawValue) == [0, 1, 2, 3, 64])
    #expect(ControlExitStatus(failure: .notFound) == .notFound)
    #expect(ControlExitStatus(failure: .permissionDenied) == .unreachable)
    #expect(ControlExitStatus(failure: .invalidRequest) == .unreachable)
    // A master from before reasons: its failures are failed operations, never "unreachable".
    #expect(ControlExitStatus(failure: nil) == .operationFailed)
}

private func choose(socket: String? = nil, config: String? = nil, environment: String? = nil) throws
    -> ControlSocketChoice
{
    try ControlSocketChoice.choose(socket: socket, config: config, environment: environment) { path in
        guard path == "/etc/jester/jester.toml" else { throw ControlSocketChoice.Problem.emptyOption }
        return "/run/other/control.sock"
    }
}

@Test func theSocketComesFromTheOptionTheConfigurationTheEnvironmentOrTheDefault() throws {
    #expect(try choose(socket: "/s", environment: "/e") == ControlSocketChoice(path: "/s", source: .option))
    #expect(try choose(config: "/etc/jester/jester.toml", environment: "/e")
        == ControlSocketChoice(path: "/run/other/control.sock", source: .configuration))
    #expect(try choose(environment: "/e") == ControlSocketChoice(path: "/e", source: .environment))
    #expect(try choose() == ControlSocketChoice(path: "/run/jester/control.sock", source: .builtIn))
}

@Test func anEmptyOrAmbiguousSocketIsAUsageError() {
    #expect(throws: ControlSocketChoice.Problem.emptyEnvironment) { try choose(environment: "") }
    #expect(throws: ControlSocketChoice.Problem.emptyOption) { try choose(socket: "") }
    #expect(throws: ControlSocketChoice.Problem.bothSocketAndConfig) {
        try choose(socket: "/s", config: "/etc/jester/jester.toml")
    }
    // An explicit choice does not consult the empty variable.
    #expect(throws: Never.self) { try choose(socket: "/s", environment: "") }
    // A configuration that cannot be read says so (the loader's error, passed through).
    #expect(throws: ControlSocketChoice.Problem.emptyOption) { try choose(config: "/missing.toml") }
    #expect("\(ControlSocketChoice.Problem.emptyEnvironment)".contains("JESTER_CONTROL_SOCKET is set but empty"))
}
