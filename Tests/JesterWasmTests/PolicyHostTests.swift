import Testing

// SPDX-License-Identifier: Apache-2.0
@testable import JesterWasm

/// The host side of ABI v1: the context layout, the metadata bag (namespaced, bounded, read through the
/// re-entrant `cabi_realloc` of `metadata-get`), and that no request's data stays in memory for the next.
@Suite struct PolicyHostTests {
    @Test func theContextLayout() {
        let context = PolicyContext(
            method: "POST",
            scheme: "https",
            authority: "a.example",
            path: "/p",
            query: "q=1",
            clientAddress: "::1",
            requestHeaders: [PolicyField("x-a", "1"), PolicyField("x-b", "22")],
            requestBody: [9, 8],
            route: "r",
            status: 404,
            responseHeaders: [PolicyField("x-c", "")],
            responseBody: nil
        )
        let size = ContextEncoder.byteCount(of: context)
        var block = [UInt8](repeating: 0xAA, count: size)
        let base: UInt32 = 0x10000
        block.withUnsafeMutableBytes { ContextEncoder.encode(context, stage: .postResponse, into: $0, base: base) }
        func u32(_ offset: Int) -> UInt32 {
            (0..<4).reduce(0) { $0 | UInt32(block[offset + $1]) << (8 * $1) }
        }
        func string(_ offset: Int) -> String {
            let start = Int(u32(offset) - base)
            return String(decoding: block[start..<start + Int(u32(offset + 4))], as: UTF8.self)
        }
        #expect(u32(0) == 0 && u32(4) == 116 && block[8] == PolicyStage.postResponse.rawValue)
        #expect(string(12) == "POST" && string(20) == "https" && string(28) == "a.example" && string(36) == "/p")
        #expect(string(44) == "q=1" && string(52) == "::1")
        #expect(u32(64) == 2 && string(Int(u32(60) - base)) == "x-a" && string(Int(u32(60) - base) + 24) == "22")
        #expect(block[68] == 1 && u32(76) == 2 && block[Int(u32(72) - base)] == 9)
        #expect(block[80] == 1 && string(84) == "r")
        #expect(block[92] == 0x94 && block[93] == 0x01)  // 404
        #expect(u32(100) == 1 && block[104] == 0)
        #expect(size == 116 + 3 * 16 + 4 + 5 + 9 + 2 + 3 + 3 + 3 + 1 + 3 + 2 + 3 + 0 + 2 + 1)
    }

    @Test func theBagIsNamespacedAndBounded() {
        var bag = PolicyMetadata(limit: 20)
        let first = bag.set(policy: "a", key: "k", value: "12345678")  // "a/k" + 8 = 11 bytes
        let second = bag.set(policy: "b", key: "k", value: "123456789012")  // 3 + 12 more would be 26
        let replaced = bag.set(policy: "a", key: "k", value: "1234567890")  // replacing: 13
        #expect(first && !second && replaced)
        #expect(bag.lookup("k", from: "a") == "1234567890" && bag.lookup("a/k", from: "b") == "1234567890")
        #expect(bag.lookup("k", from: "b") == nil && bag.byteCount == 13)
    }

    /// Reads "other/tenant" with metadata-get and echoes it as x-tenant; sets its own "mine" = "value", and
    /// denies "full" when the bag refuses.
    private let metadataPolicy = policyWAT(
        imports: """
            (import "jester:policy/host@1.0.0" "metadata-get" (func $get (param i32 i32 i32)))
            (import "jester:policy/host@1.0.0" "metadata-set" (func $set (param i32 i32 i32 i32) (result i32)))
            """,
        functions: """
            (func (export "on-pre-route") (param $ctx i32) (result i32)
              (call $get (i32.const 2000) (i32.const 12) (i32.const 3000))
              (if (i32.eqz (call $set (i32.const 2300) (i32.const 4) (i32.const 2310) (i32.const 5)))
                (then (return (i32.const 2400))))
              (if (i32.load8_u (i32.const 3000))
                (then
                  (i32.store (i32.const 2112) (i32.load (i32.const 3004)))
                  (i32.store (i32.const 2116) (i32.load (i32.const 3008)))
                  (return (i32.const 2048))))
              (i32.const 1040))
            """,
        data: """
            (data (i32.const 2000) "other/tenant")
            (data (i32.const 2048) "\(le(0, 2100, 1))")
            (data (i32.const 2100) "\(le(0, 2200, 8, 0, 0))")
            (data (i32.const 2200) "x-tenant")
            (data (i32.const 2300) "mine")
            (data (i32.const 2310) "value")
            (data (i32.const 2400) "\(le(2, 2420, 4))")
            (data (i32.const 2420) "full")
            """
    )

    @Test func metadataFromPolicyToPolicy() throws {
        let module = try PolicyModule.load(
            bytes: try WasmFixtures.wasm(metadataPolicy),
            name: "meta.wasm",
            limits: .forTests
        )
        let policy = try PolicyInstance(module: module, policyID: "meta", config: "")
        var bag = PolicyMetadata()
        let stored = bag.set(policy: "other", key: "tenant", value: "acme")
        #expect(stored)
        var expected = RequestMutations()
        expected.fields = [.set(PolicyField("x-tenant", "acme"))]
        #expect(policy.run(.preRoute, context: context(hostile: false), metadata: &bag) == .proceed(expected))
        #expect(bag.value(policy: "meta", key: "mine") == "value")

        var empty = PolicyMetadata()
        #expect(
            policy.run(.preRoute, context: context(hostile: false), metadata: &empty) == .proceed(RequestMutations())
        )

        var full = PolicyMetadata(limit: 12)  // "meta/mine" + "value" is 14
        #expect(policy.run(.preRoute, context: context(hostile: false), metadata: &full) == .deny(reason: "full"))
        #expect(full.entries.isEmpty)
    }

    @Test func noRequestDataStaysInMemoryForTheNext() throws {
        // The policy remembers where the last context's path was, and denies if its bytes are still there.
        let wat = policyWAT(
            functions: """
                (global $last (mut i32) (i32.const 0))
                (func (export "on-pre-route") (param $ctx i32) (result i32)
                  (if (i32.and (i32.ne (global.get $last) (i32.const 0))
                               (i32.ne (i32.load8_u (global.get $last)) (i32.const 0)))
                    (then (return (i32.const 2048))))
                  (global.set $last (i32.load offset=36 (local.get $ctx)))
                  (i32.const 1040))
                """,
            data: """
                (data (i32.const 2048) "\(le(2, 2100, 4))")
                (data (i32.const 2100) "leak")
                """
        )
        let module = try PolicyModule.load(bytes: try WasmFixtures.wasm(wat), name: "leak.wasm", limits: .forTests)
        let policy = try PolicyInstance(module: module, policyID: "leak", config: "")
        var bag = PolicyMetadata()
        for _ in 0..<3 {
            let outcome = policy.run(.preRoute, context: PolicyContext(path: "/secret"), metadata: &bag)
            #expect(outcome == .proceed(RequestMutations()))
        }
    }

    @Test func logLinesAndCountersAreBounded() throws {
        // 40 log lines, and counter-add with 40 names, one invalid: 16 lines kept, 32 counters kept.
        let wat = policyWAT(
            imports: """
                (import "jester:policy/host@1.0.0" "log" (func $log (param i32 i32 i32)))
                (import "jester:policy/host@1.0.0" "counter-add" (func $add (param i32 i32 i64)))
                """,
            functions: """
                (func (export "on-pre-route") (param $ctx i32) (result i32) (local $i i32)
                  (loop $again
                    (call $log (i32.const 2) (i32.const 2000) (i32.const 3))
                    (i32.store8 (i32.const 2101) (i32.add (i32.const 48) (local.get $i)))
                    (call $add (i32.const 2100) (i32.const 2) (i64.const 1))
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br_if $again (i32.lt_u (local.get $i) (i32.const 40))))
                  (call $add (i32.const 2200) (i32.const 3) (i64.const 1))
                  (i32.const 1040))
                """,
            data: """
                (data (i32.const 2000) "hey")
                (data (i32.const 2100) "c0")
                (data (i32.const 2200) "B-d")
                """
        )
        let module = try PolicyModule.load(bytes: try WasmFixtures.wasm(wat), name: "chatty.wasm", limits: .forTests)
        let policy = try PolicyInstance(module: module, policyID: "chatty", config: "")
        var bag = PolicyMetadata()
        #expect(policy.run(.preRoute, context: context(hostile: false), metadata: &bag) == .proceed(RequestMutations()))
        #expect(policy.lastLogs.count == 16 && policy.lastLogs.first == PolicyLogLine(level: .warn, message: "hey"))
        let (counters, dropped) = policy.takeCounters()
        // "c0" ... "c9" and then ":" ";" ... (not [a-z0-9_]): 10 valid names; 30 + 1 invalid updates and 24 log lines
        // dropped.
        #expect(counters.count == 10 && counters["c0"] == 1 && dropped == 24 + 31)
    }
}
