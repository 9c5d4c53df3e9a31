// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterWasm
import Logging
import Testing

@testable import JesterProxy

/// The worker's side of a policy without a module that runs: every call fails closed, is counted, and marks the
/// policy failed past its threshold; and the fields no policy may touch. (The calls of real modules, at every
/// stage and over both protocols, are Tests/Live/test_policies.py.)
@Suite struct WorkerPolicyTests {
    @Test func aPolicyWithoutAnInstanceFailsEveryCallClosed() {
        var settings = PolicySettings(name: "broken", module: "/nowhere.wasm")
        settings.moduleBytes = Data("not wasm".utf8)
        settings.failureThreshold = 3
        let policy = WorkerPolicy(settings: settings, logger: Logger(label: "test"))
        // A worker that cannot instantiate the policy reports it failed from the start.
        #expect(policy.isFailed)
        var metadata = PolicyMetadata()
        for _ in 1...3 {
            guard case .failed(let failure) = policy.run(.preRoute, context: PolicyContext(), metadata: &metadata)
            else {
                Issue.record("a call without an instance did not fail")
                return
            }
            #expect(failure.kind == .instantiation)
        }
        #expect(policy.stats.calls == 3 && policy.stats.failures == 3 && policy.stats.failed)
        #expect(policy.memoryBytes == 0)
    }

    @Test func framingAndConnectionFieldsAreJestersOwn() {
        for name in ["Content-Length", "transfer-encoding", "Connection", "keep-alive", "TE", "upgrade", "expect"] {
            #expect(PolicyManagedFields.violation(in: [.set(PolicyField(name, "1"))], request: true) != nil, "\(name)")
            #expect(PolicyManagedFields.violation(in: [.remove(name.lowercased())], request: false) != nil, "\(name)")
        }
        #expect(PolicyManagedFields.violation(in: [.remove("host")], request: true) != nil)
        #expect(PolicyManagedFields.violation(in: [.remove("host")], request: false) == nil)
        #expect(PolicyManagedFields.violation(
            in: [.set(PolicyField("x-tenant", "a")), .add(PolicyField("host", "b"))], request: true) == nil)
    }

    @Test func limitsFollowTheSettings() {
        var settings = PolicySettings(name: "p", module: "/p.wasm")
        settings.fuel = 5_000
        settings.memoryLimit = 1 << 20
        settings.timeout = .milliseconds(20)
        settings.bodyLimit = 4096
        let limits = PolicyLimits(settings)
        #expect(limits.fuelPerCall == 5_000 && limits.memoryPages == 16)
        #expect(limits.deadlineNanoseconds == 20_000_000 && limits.bodyBytes == 4096)
    }
}
