// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterWasm
import Testing

/// What a policy costs per call, and instance-per-request against one pooled instance per worker. Skipped unless
/// JESTER_WASM_BENCH=1; meaningful in a release build only (the interpreter is WasmKit's, built with the tests):
///
///     JESTER_WASM_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter PolicyBenchmarkTests
///
/// (-enable-testing because other suites of this target use `@testable import`.)
/// It prints one line per case; the figures go to bench/PERFORMANCE.md.
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["JESTER_WASM_BENCH"] == "1"))
struct PolicyBenchmarkTests {
    /// A typical request: ten fields.
    static let request = PolicyContext(
        method: "GET",
        authority: "api.example.com",
        path: "/v1/orders/12345",
        query: "page=2",
        clientAddress: "192.0.2.10",
        requestHeaders: (0..<10).map { PolicyField("x-field-\($0)", "value number \($0) of a typical request") }
    )

    private func measure(_ name: String, iterations: Int, _ body: () throws -> Void) rethrows {
        try body()  // warm up: the interpreter translates a function on its first call
        let start = ContinuousClock.now
        for _ in 0..<iterations { try body() }
        let elapsed = ContinuousClock.now - start
        let micros = Double(elapsed.components.attoseconds) / 1e12 + Double(elapsed.components.seconds) * 1e6
        print(
            String(
                format: "policy bench: %@: %.2f µs per call (%d calls)",
                name,
                micros / Double(iterations),
                iterations
            )
        )
    }

    @Test func headerOnlyPolicyPooled() throws {
        let module = try PolicyModule.load(path: try WasmFixtures.example("header_inject"))
        let policy = try PolicyInstance(module: module, policyID: "h", config: "{}")
        var bag = PolicyMetadata()
        try measure("header_inject pre-route, pooled instance", iterations: 20_000) {
            guard case .proceed = policy.run(.preRoute, context: Self.request, metadata: &bag) else {
                throw FixtureError("the policy failed")
            }
        }
    }

    @Test func emptyPolicyPooled() throws {
        // The engine's floor: a stage that returns the static "proceed" action at once.
        let wat = policyWAT(functions: #"(func (export "on-pre-route") (param i32) (result i32) (i32.const 1040))"#)
        let module = try PolicyModule.load(bytes: try WasmFixtures.wasm(wat), name: "empty.wasm")
        let policy = try PolicyInstance(module: module, policyID: "e", config: "")
        var bag = PolicyMetadata()
        measure("empty WAT pre-route, pooled instance", iterations: 20_000) {
            _ = policy.run(.preRoute, context: Self.request, metadata: &bag)
        }
    }

    @Test func headerOnlyPolicyInstancePerRequest() throws {
        let module = try PolicyModule.load(path: try WasmFixtures.example("header_inject"))
        var bag = PolicyMetadata()
        try measure("header_inject pre-route, a new instance (and init) per request", iterations: 500) {
            let policy = try PolicyInstance(module: module, policyID: "h", config: "{}")
            guard case .proceed = policy.run(.preRoute, context: Self.request, metadata: &bag) else {
                throw FixtureError("the policy failed")
            }
        }
    }

    @Test(arguments: ["clang", "zig"]) func memoryPerInstance(compiler: String) throws {
        // Resident memory per pooled instance (a worker holds one per policy): 50 instances, after a call each.
        let module = try PolicyModule.load(path: try WasmFixtures.example("header_inject", compiler: compiler))
        var bag = PolicyMetadata()
        let before = Self.residentBytes()
        var instances: [PolicyInstance] = []
        for _ in 0..<50 {
            let policy = try PolicyInstance(module: module, policyID: "h", config: "{}")
            _ = policy.run(.preRoute, context: Self.request, metadata: &bag)
            instances.append(policy)
        }
        let perInstance = Double(Self.residentBytes() - before) / 50 / 1024
        print(String(format: "policy bench: header_inject (%@): %.0f KiB resident per instance", compiler, perInstance))
        #expect(instances.count == 50)
    }

    /// This process's resident set (/proc/self/statm, in pages).
    static func residentBytes() -> Int {
        let statm = (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8)) ?? "0 0"
        return (Int(statm.split(separator: " ")[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    @Test func fuelPerSecond() throws {
        // How fast fuel burns (one unit per operator): relates fuel_per_call to the deadline.
        let wat = policyWAT(
            functions: #"(func (export "on-pre-route") (param i32) (result i32) (loop $l (br $l)) (i32.const 0))"#
        )
        let limits = PolicyLimits(fuelPerCall: 10_000_000, deadlineNanoseconds: 10_000_000_000)
        let module = try PolicyModule.load(bytes: try WasmFixtures.wasm(wat), name: "loop.wasm", limits: limits)
        let policy = try PolicyInstance(module: module, policyID: "l", config: "")
        var bag = PolicyMetadata()
        let start = ContinuousClock.now
        _ = policy.run(.preRoute, context: Self.request, metadata: &bag)
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print(String(format: "policy bench: fuel burns at %.1f M units per second", 10.0 / seconds))
    }
}
