// SPDX-License-Identifier: Apache-2.0
/// Generates request ids: 32 lowercase hex digits (128 random bits), like a UUID without dashes.
///
/// Uses xoshiro256** seeded once from the system's random source: a getrandom call per request would cost a
/// system call on the hottest path, and ids need uniqueness, not secrecy.
public struct RequestIDGenerator: Sendable {
    @usableFromInline var state: (UInt64, UInt64, UInt64, UInt64)

    public init() {
        var system = SystemRandomNumberGenerator()
        state = (system.next(), system.next(), system.next(), system.next())
        if state == (0, 0, 0, 0) { state.0 = 1 }
    }

    /// A generator with a fixed seed, for tests.
    public init(seed: UInt64) {
        state = (seed | 1, seed ^ 0x9E37_79B9_7F4A_7C15, ~seed, seed &* 0xBF58_476D_1CE4_E5B9)
    }

    @inlinable @inline(__always)
    mutating func nextWord() -> UInt64 {
        let result = ((state.1 &* 5) << 7 | (state.1 &* 5) >> 57) &* 9
        let shifted = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= shifted
        state.3 = state.3 << 45 | state.3 >> 19
        return result
    }

    /// Calls `body` with the 32 ASCII bytes of a new id. Inlinable so that it is specialised at the call site
    /// (it runs once per proxied request).
    @inlinable
    public mutating func withNextID<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        let words = (nextWord(), nextWord())
        return try Self.withID(words.0, words.1, body)
    }

    /// The two random words of a new id, for a caller that keeps them and renders them later (`withID`).
    public mutating func nextWords() -> (UInt64, UInt64) {
        (nextWord(), nextWord())
    }

    /// Calls `body` with the 32 ASCII hex digits of the id made of `high` and `low`.
    @inlinable
    public static func withID<Result>(
        _ high: UInt64, _ low: UInt64, _ body: (UnsafeRawBufferPointer) throws -> Result
    ) rethrows -> Result {
        try withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { buffer in
            let digits: StaticString = "0123456789abcdef"
            for offset in 0..<2 {
                let word = offset == 0 ? high : low
                for nibble in 0..<16 {
                    let value = Int((word >> UInt64(60 - nibble * 4)) & 0xF)
                    buffer[offset * 16 + nibble] = digits.utf8Start[value]
                }
            }
            return try body(UnsafeRawBufferPointer(buffer))
        }
    }

    /// A new id as a `String` (for tests and logs).
    public mutating func nextID() -> String {
        withNextID { String(decoding: $0, as: UTF8.self) }
    }
}
