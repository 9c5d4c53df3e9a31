// SPDX-License-Identifier: Apache-2.0
import JesterWasm
import Testing

/// Hostile modules (issue 22): each must fail closed, as a `.failed` outcome of the right kind, never a crash or a
/// throw, and the instance must serve the next (benign) call. Written in WAT so the misbehaviour is exact.
@Suite struct HostileModuleTests {
    /// Small limits so the bombs go off fast.
    static let limits = PolicyLimits(
        fuelPerCall: 200_000,
        memoryPages: 8,
        deadlineNanoseconds: 60_000_000_000,
        stackBytes: 64 << 10
    )

    private func instance(_ wat: String, limits: PolicyLimits = limits, flags: [String] = []) throws -> PolicyInstance {
        let bytes = try WasmFixtures.wasm(wat, flags: flags)
        let module = try PolicyModule.load(bytes: bytes, name: "hostile.wasm", limits: limits)
        return try PolicyInstance(module: module, policyID: "hostile", config: "{}")
    }

    /// Runs a hostile call, expects a failure of `kind`, then a benign call that proceeds.
    private func expectFailsClosed(
        _ wat: String,
        _ kind: PolicyFailureKind,
        mentioning text: String? = nil,
        flags: [String] = [],
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let policy = try instance(wat, flags: flags)
        var metadata = PolicyMetadata()
        let outcome = policy.run(.preRoute, context: context(hostile: true), metadata: &metadata)
        guard case .failed(let failure) = outcome else {
            Issue.record("expected a \(kind) failure, got \(outcome)", sourceLocation: sourceLocation)
            return
        }
        #expect(failure.kind == kind, "\(failure)", sourceLocation: sourceLocation)
        if let text { #expect(failure.message.contains(text), "\(failure)", sourceLocation: sourceLocation) }
        #expect(policy.consecutiveFailures == 1, sourceLocation: sourceLocation)
        let next = policy.run(.preRoute, context: context(hostile: false), metadata: &metadata)
        #expect(next == .proceed(RequestMutations()), "the next call: \(next)", sourceLocation: sourceLocation)
        #expect(policy.consecutiveFailures == 0, sourceLocation: sourceLocation)
    }

    /// A pre-route stage that runs `misbehaviour` on hostile calls and otherwise proceeds without changes.
    private func preRoute(
        _ misbehaviour: String,
        functions: String = "",
        data: String = "",
        imports: String = ""
    )
        -> String
    {
        policyWAT(
            imports: imports,
            functions: """
                \(functions)
                (func (export "on-pre-route") (param $ctx i32) (result i32)
                  (if (call $hostile (local.get $ctx)) (then \(misbehaviour)))
                  (i32.const 1040))
                """,
            data: data
        )
    }

    @Test func endlessLoopRunsOutOfFuel() throws {
        try expectFailsClosed(preRoute("(loop $forever (br $forever))"), .outOfFuel)
    }

    @Test func memoryGrowBombHitsTheLimit() throws {
        let bomb = "(loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) unreachable"
        try expectFailsClosed(preRoute(bomb), .memoryLimit)
    }

    @Test func memoryGrowBeyondTheLimitIsRefusedEvenIfIgnored() throws {
        // A refused growth alone is not a failure: memory.grow answers -1 and a module that ignores it runs on.
        let policy = try instance(preRoute("(drop (memory.grow (i32.const 100)))"))
        var metadata = PolicyMetadata()
        #expect(
            policy.run(.preRoute, context: context(hostile: true), metadata: &metadata) == .proceed(RequestMutations())
        )
    }

    @Test func anUncaughtWasmException() throws {
        // Exception handling is in WasmKit's default features: a throw nothing catches leaves the call as a failure.
        let wat = preRoute("(throw $boom (i32.const 7))").replacingOccurrences(
            of: "(func $hostile",
            with: "(tag $boom (param i32))\n(func $hostile"
        )
        try expectFailsClosed(wat, .trap, mentioning: "exception", flags: ["--enable-exceptions"])
    }

    @Test func deepRecursionExhaustsTheStack() throws {
        let recursion = "(func $down (param i32) (result i32) (call $down (i32.add (local.get 0) (i32.const 1))))"
        try expectFailsClosed(
            preRoute("(drop (call $down (i32.const 0)))", functions: recursion),
            .trap,
            mentioning: "call stack"
        )
    }

    @Test func actionPointerOutsideMemory() throws {
        try expectFailsClosed(preRoute("(return (i32.const 0xFFFFFFF0))"), .malformedResult, mentioning: "outside")
    }

    @Test func unalignedActionPointer() throws {
        try expectFailsClosed(preRoute("(return (i32.const 1041))"), .malformedResult, mentioning: "aligned")
    }

    @Test func mutationListOutsideMemory() throws {
        let action = "(data (i32.const 2048) \"\(le(0, 0x7FFF_FFF0, 1))\")"
        try expectFailsClosed(preRoute("(return (i32.const 2048))", data: action), .malformedResult)
    }

    @Test func hugeResultIsRefused() throws {
        let action = "(data (i32.const 2048) \"\(le(0, 4096, 0x1000_0000))\")"
        try expectFailsClosed(preRoute("(return (i32.const 2048))", data: action), .malformedResult)
    }

    @Test func hugeResponseBodyIsRefused() throws {
        // respond 200 with a 15 MiB body "at" 0: over the body limit before memory is even looked at.
        let action = "(data (i32.const 2048) \"\(le(1, 200, 0, 0, 0, 15 << 20))\")"
        try expectFailsClosed(preRoute("(return (i32.const 2048))", data: action), .malformedResult, mentioning: "body")
    }

    @Test func unknownActionCase() throws {
        let action = "(data (i32.const 2048) \"\(le(7))\")"
        try expectFailsClosed(preRoute("(return (i32.const 2048))", data: action), .malformedResult, mentioning: "case")
    }

    @Test func invalidUTF8InAHeaderValue() throws {
        try expectFailsClosed(setHeader(name: "x-bad", value: [0xFF, 0xFE]), .malformedResult, mentioning: "UTF-8")
    }

    @Test func crlfInAHeaderValueNeverPasses() throws {
        try expectFailsClosed(
            setHeader(name: "x-bad", value: Array("a\r\nx-evil: 1".utf8)),
            .malformedResult,
            mentioning: "CR"
        )
    }

    @Test func nulInAHeaderValueNeverPasses() throws {
        try expectFailsClosed(setHeader(name: "x-bad", value: [0x61, 0x00, 0x62]), .malformedResult)
    }

    @Test func aHeaderNameThatIsNotAToken() throws {
        try expectFailsClosed(setHeader(name: "x bad:", value: Array("1".utf8)), .malformedResult, mentioning: "token")
    }

    @Test func crlfInARespondFieldNeverPasses() throws {
        // respond 403 with one field whose value holds CR LF.
        let data = """
            (data (i32.const 2048) "\(le(1, 403, 2100, 1, 0, 0))")
            (data (i32.const 2100) "\(le(2200, 1, 2210, 4))")
            (data (i32.const 2200) "x")
            (data (i32.const 2210) "a\\0d\\0ab")
            """
        try expectFailsClosed(preRoute("(return (i32.const 2048))", data: data), .malformedResult, mentioning: "CR")
    }

    @Test func aMutationTheStageDoesNotAllow() throws {
        // set-upstream-timeout (case 9) at pre-route.
        let data = """
            (data (i32.const 2048) "\(le(0, 2100, 1))")
            (data (i32.const 2100) "\(le(9, 5000))")
            """
        try expectFailsClosed(
            preRoute("(return (i32.const 2048))", data: data),
            .malformedResult,
            mentioning: "not allowed at pre_route"
        )
    }

    @Test func hostCallWithAPointerOutsideMemory() throws {
        try expectFailsClosed(
            preRoute(
                "(call $log (i32.const 1) (i32.const 0xFFFFFF00) (i32.const 16))",
                imports: #"(import "jester:policy/host@1.0.0" "log" (func $log (param i32 i32 i32)))"#
            ),
            .trap,
            mentioning: "outside memory"
        )
    }

    @Test func anAllocatorThatCallsTheHostAgain() throws {
        // metadata-get returns its string through the guest's cabi_realloc; this one calls metadata-get again from
        // there, which would nest host and guest frames on the native stack until the worker crashed.
        let allocator = """
            (global $bump (mut i32) (i32.const 65536))
            (global $armed (mut i32) (i32.const 0))
            (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
              (local $at i32)
              (if (global.get $armed) (then (call $get (i32.const 2000) (i32.const 7) (i32.const 3000))))
              (local.set $at (global.get $bump))
              (global.set $bump (i32.and (i32.add (i32.add (global.get $bump) (local.get 3)) (i32.const 7))
                                         (i32.const -8)))
              (local.get $at))
            """
        let wat = policyWAT(
            imports: #"(import "jester:policy/host@1.0.0" "metadata-get" (func $get (param i32 i32 i32)))"#,
            functions: """
                (func (export "on-pre-route") (param $ctx i32) (result i32)
                  (global.set $armed (call $hostile (local.get $ctx)))
                  (call $get (i32.const 2000) (i32.const 7) (i32.const 3000))
                  (global.set $armed (i32.const 0))
                  (i32.const 1040))
                """,
            data: #"(data (i32.const 2000) "other/k")"#,
            realloc: allocator
        )
        let policy = try instance(wat)
        var bag = PolicyMetadata()
        let stored = bag.set(policy: "other", key: "k", value: "v")
        let outcome = policy.run(.preRoute, context: context(hostile: true), metadata: &bag)
        #expect(stored && outcome == .failed(PolicyFailure(.trap, "a host function was called from cabi_realloc")))
        let next = policy.run(.preRoute, context: context(hostile: false), metadata: &bag)
        #expect(next == .proceed(RequestMutations()))
    }

    @Test func deadlineEndsACallThatKeepsCallingTheHost() throws {
        // A fake clock that moves 1 ms on every read: the 51st log call is past the 50 ms deadline. Fuel alone
        // would allow all 10,000 calls.
        let clock = FakeClock(step: 1_000_000)
        let wat = preRoute(
            """
            (local.set $i (i32.const 10000))
            (loop $again
              (call $log (i32.const 0) (i32.const 1040) (i32.const 0))
              (local.set $i (i32.sub (local.get $i) (i32.const 1)))
              (br_if $again (local.get $i)))
            """,
            imports: #"(import "jester:policy/host@1.0.0" "log" (func $log (param i32 i32 i32)))"#
        ).replacingOccurrences(
            of: "(param $ctx i32) (result i32)\n",
            with: "(param $ctx i32) (result i32) (local $i i32)\n"
        )
        let limits = PolicyLimits(fuelPerCall: 10_000_000, deadlineNanoseconds: 50_000_000)
        let module = try PolicyModule.load(bytes: try WasmFixtures.wasm(wat), name: "slow.wasm", limits: limits)
        let policy = try PolicyInstance(module: module, policyID: "slow", config: "", clock: clock.read)
        var metadata = PolicyMetadata()
        let outcome = policy.run(.preRoute, context: context(hostile: true), metadata: &metadata)
        guard case .failed(let failure) = outcome else {
            Issue.record("got \(outcome)")
            return
        }
        #expect(failure.kind == .deadline)
        #expect(policy.lastLogs.count == PolicyHostBounds.maxLogLines)
        #expect(
            policy.run(.preRoute, context: context(hostile: false), metadata: &metadata) == .proceed(RequestMutations())
        )
    }

    @Test func aCallThatReturnsAfterItsDeadlineFails() throws {
        // No host calls to stop it: the check when the call returns catches it (the clock jumps 100 ms per read).
        let clock = FakeClock(step: 100_000_000)
        let module = try PolicyModule.load(bytes: try WasmFixtures.wasm(preRoute("")), name: "late.wasm")
        let policy = try PolicyInstance(module: module, policyID: "late", config: "", clock: clock.read)
        var metadata = PolicyMetadata()
        let outcome = policy.run(.preRoute, context: context(hostile: false), metadata: &metadata)
        #expect(outcome == .failed(PolicyFailure(.deadline, "on-pre-route returned after its deadline")))
    }

    @Test func aBodyOverTheLimitNeverGoesIn() throws {
        let policy = try instance(
            preRoute(""),
            limits: PolicyLimits(deadlineNanoseconds: 60_000_000_000, bodyBytes: 1000)
        )
        var metadata = PolicyMetadata()
        var context = context(hostile: false)
        context.requestBody = [UInt8](repeating: 0x61, count: 1001)
        guard case .failed(let failure) = policy.run(.preRoute, context: context, metadata: &metadata) else {
            Issue.record("a 1001-byte body went in")
            return
        }
        #expect(failure.kind == .memoryLimit)
    }

    @Test func repeatedTrapsAreCountedInARow() throws {
        let policy = try instance(preRoute("unreachable"))
        var metadata = PolicyMetadata()
        for _ in 0..<3 { _ = policy.run(.preRoute, context: context(hostile: true), metadata: &metadata) }
        // Each trap threw its instance away; the next call made a fresh one.
        #expect(policy.consecutiveFailures == 3 && policy.failures == 3 && policy.reinstantiations == 2)
        _ = policy.run(.preRoute, context: context(hostile: false), metadata: &metadata)
        #expect(policy.consecutiveFailures == 0 && policy.failures == 3 && policy.reinstantiations == 3)
    }

    @Test func aStageTheModuleDoesNotExport() throws {
        let policy = try instance(preRoute(""))
        var metadata = PolicyMetadata()
        let outcome = policy.run(.postResponse, context: context(hostile: false), metadata: &metadata)
        guard case .failed(let failure) = outcome else {
            Issue.record("got \(outcome)")
            return
        }
        #expect(failure.kind == .missingStage)
    }

    /// A module whose hostile call answers set-header `name`: `value` (raw bytes).
    private func setHeader(name: String, value: [UInt8]) -> String {
        let data = """
            (data (i32.const 2048) "\(le(0, 2100, 1))")
            (data (i32.const 2100) "\(le(0, 2200, UInt32(name.utf8.count), 2300, UInt32(value.count)))")
            (data (i32.const 2200) "\(escape(Array(name.utf8)))")
            (data (i32.const 2300) "\(escape(value))")
            """
        return preRoute("(return (i32.const 2048))", data: data)
    }
}

/// Little-endian u32s as a WAT data string.
func le(_ values: UInt32...) -> String {
    escape(values.flatMap { value in (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } })
}

/// Bytes as a WAT data string.
func escape(_ bytes: [UInt8]) -> String {
    bytes.map { byte in
        let hex = String(byte, radix: 16)
        return "\\" + (hex.count == 1 ? "0" + hex : hex)
    }.joined()
}

/// A clock for deadline tests: each read moves it by `step` nanoseconds.
final class FakeClock: @unchecked Sendable {
    private var now: UInt64 = 1_000_000_000
    private let step: UInt64

    init(step: UInt64) {
        self.step = step
    }

    var read: @Sendable () -> UInt64 {
        { [self] in
            now += step
            return now
        }
    }
}

/// The host's bounds, as the tests expect them.
enum PolicyHostBounds {
    static let maxLogLines = 16
}
