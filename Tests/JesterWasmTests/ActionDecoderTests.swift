import Testing

// SPDX-License-Identifier: Apache-2.0
@testable import JesterWasm

/// The action decoder on hand-made memory, without a module: every check it makes, and the layouts it reads.
@Suite struct ActionDecoderTests {
    /// A 64 KiB memory with `words` (little-endian u32s) from `at` and `text` bytes from `textAt`.
    private func memory(_ words: [UInt32], at: Int = 1024, text: [UInt8] = [], textAt: Int = 4096) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 65536)
        for (index, word) in words.enumerated() {
            for byte in 0..<4 { bytes[at + index * 4 + byte] = UInt8(truncatingIfNeeded: word >> (8 * byte)) }
        }
        bytes.replaceSubrange(textAt..<textAt + text.count, with: text)
        return bytes
    }

    private func decode(
        _ bytes: [UInt8],
        at pointer: UInt32 = 1024,
        stage: PolicyStage = .preRoute,
        limits: PolicyLimits = PolicyLimits()
    ) -> PolicyOutcome {
        bytes.withUnsafeBytes { ActionDecoder.decode(pointer, memory: $0, stage: stage, limits: limits) }
    }

    @Test func everyRequestMutation() {
        // mutations at 2048: set-header, add-header, remove-header, set-method, set-path, set-query, set-route,
        // add-route-tag, set-upstream, set-upstream-timeout, set-upstream-retries, set-body.
        let text = Array("x-aonex-bPOST/v2a=1r1blueup".utf8)
        func s(_ offset: Int, _ count: Int) -> [UInt32] { [UInt32(4096 + offset), UInt32(count)] }
        let mutations: [[UInt32]] = [
            [0] + s(0, 3) + s(3, 3), [1] + s(0, 3) + s(3, 3), [2] + s(6, 3) + [0, 0], [3] + s(9, 4) + [0, 0],
            [4] + s(13, 3) + [0, 0], [5] + s(16, 3) + [0, 0], [6] + s(19, 2) + [0, 0], [7] + s(21, 4) + [0, 0],
            [8] + s(25, 2) + [0, 0], [9, 2500, 0, 0, 0], [10, 2, 0, 0, 0], [11] + s(0, 5) + [0, 0],
        ]
        var bytes = memory([0, 2048, UInt32(mutations.count)], text: text)
        let words = mutations.flatMap { $0 }
        for (index, word) in words.enumerated() {
            for byte in 0..<4 { bytes[2048 + index * 4 + byte] = UInt8(truncatingIfNeeded: word >> (8 * byte)) }
        }
        var expected = RequestMutations()
        expected.fields = [.set(PolicyField("x-a", "one")), .add(PolicyField("x-a", "one")), .remove("x-b")]
        expected.method = "POST"
        expected.path = "/v2"
        expected.query = "a=1"
        expected.routeHint = RouteHint(route: "r1", tags: ["blue"], upstream: "up")
        expected.upstreamTimeoutMilliseconds = 2500
        expected.upstreamRetries = 2
        expected.body = Array("x-aon".utf8)
        #expect(decode(bytes, stage: .preUpstream) == .proceed(expected))
        // At pre-route, the timeout is refused (and so the whole action).
        guard case .failed(let failure) = decode(bytes, stage: .preRoute) else {
            Issue.record("accepted")
            return
        }
        #expect(failure.message == "set-upstream-timeout is not allowed at pre_route")
        // At post-response, the method is.
        guard case .failed(let response) = decode(bytes, stage: .postResponse) else {
            Issue.record("accepted")
            return
        }
        #expect(response.message == "set-method is not allowed at post_response")
    }

    @Test func respondAndDeny() {
        let respond = memory([1, 204, 0, 0, 4096, 2], text: Array("ok".utf8))
        #expect(decode(respond) == .respond(PolicyResponse(status: 204, body: Array("ok".utf8))))
        let deny = memory([2, 4096, 6], text: Array("no key".utf8))
        #expect(decode(deny) == .deny(reason: "no key"))
    }

    @Test func statusesOutsideTheFinalRange() {
        for status: UInt32 in [0, 101, 199, 600, 65535] {
            guard case .failed(let failure) = decode(memory([1, status])) else {
                Issue.record("\(status)")
                continue
            }
            #expect(failure.kind == .malformedResult)
        }
    }

    @Test func theResultBudgetCoversEverythingTheActionPointsAt() {
        // A 100-byte body passes a 100-byte budget, not a 99-byte one.
        let bytes = memory([1, 200, 0, 0, 4096, 100])
        #expect(decode(bytes, limits: PolicyLimits(resultBytes: 100)) != .failed(PolicyFailure(.malformedResult, "")))
        guard case .failed = decode(bytes, limits: PolicyLimits(resultBytes: 99)) else {
            Issue.record("over budget, accepted")
            return
        }
    }

    @Test func aStringThatRunsPastTheEndOfMemory() {
        guard case .failed(let failure) = decode(memory([2, 65530, 10])) else {
            Issue.record("accepted")
            return
        }
        #expect(failure.message.contains("outside memory"))
    }

    @Test func anActionAtTheVeryEndOfMemory() {
        guard case .failed(let failure) = decode(memory([]), at: 65536 - 20) else {
            Issue.record("accepted")
            return
        }
        #expect(failure.message.contains("outside memory"))
    }

    @Test func randomMemoryNeverCrashesTheDecoder() {
        // The decoder reads what a hostile module left in memory: whatever it finds, it answers an outcome.
        // Random memory, random pointers, and actions whose lengths are small enough to be followed.
        var generator = SplitMix(seed: 22)
        var outcomes = [0, 0]
        for round in 0..<2000 {
            var bytes = (0..<8192).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            // Half the rounds: a plausible action at 1024 (a known case, a small count, a pointer inside memory).
            if round % 2 == 0 {
                bytes[1024] = UInt8(generator.next() % 3)
                for (offset, value) in [(1028, generator.next() % 8192), (1032, generator.next() % 4)] {
                    for byte in 0..<4 { bytes[offset + byte] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(byte))) }
                }
            }
            let pointer = round % 2 == 0 ? 1024 : UInt32(truncatingIfNeeded: generator.next() % 9000)
            let stage = PolicyStage.allCases[round % 3]
            if case .failed = decode(bytes, at: pointer, stage: stage) { outcomes[0] += 1 } else { outcomes[1] += 1 }
        }
        #expect(outcomes[0] > 0 && outcomes[0] + outcomes[1] == 2000)
    }

    @Test func syntaxChecks() {
        #expect(HTTPSyntax.isToken("x-request-id") && !HTTPSyntax.isToken("") && !HTTPSyntax.isToken("a b"))
        #expect(HTTPSyntax.isFieldValue("a\tb é") && !HTTPSyntax.isFieldValue("a\rb"))
        #expect(!HTTPSyntax.isFieldValue("\u{7F}") && !HTTPSyntax.isFieldValue("a\u{0}"))
        #expect(
            HTTPSyntax.isPath("/a/b%20c") && !HTTPSyntax.isPath("a") && !HTTPSyntax.isPath("/a?b")
                && !HTTPSyntax.isPath("/é")
        )
        #expect(HTTPSyntax.isQuery("a=1&b=2") && !HTTPSyntax.isQuery("a b") && !HTTPSyntax.isQuery("a#b"))
    }
}

/// A small seeded generator (SplitMix64), so a failing round can be replayed.
struct SplitMix {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
