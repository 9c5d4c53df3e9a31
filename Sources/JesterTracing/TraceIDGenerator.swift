// SPDX-License-Identifier: Apache-2.0
/// Makes trace and span ids: xoshiro256** seeded once from the system's random source.
///
/// A request that arrives without a valid `traceparent` needs a trace id and every span an id; a getrandom call
/// for each would put a system call on the hottest path. Ids need uniqueness and uniform low bits (ratio
/// sampling reads them, here and at every later hop), not secrecy. One generator per event loop (a value type:
/// no lock), each seeded on its own.
public struct TraceIDGenerator: Sendable, RandomNumberGenerator {
    private var state: (UInt64, UInt64, UInt64, UInt64)

    /// A generator seeded from the system's random source (one system call, here only).
    public init() {
        var system = SystemRandomNumberGenerator()
        state = (system.next(), system.next(), system.next(), system.next())
        if state == (0, 0, 0, 0) { state.0 = 1 }
    }

    /// A generator with a fixed seed, for tests.
    public init(seed: UInt64) {
        state = (seed | 1, seed ^ 0x9E37_79B9_7F4A_7C15, ~seed, seed &* 0xBF58_476D_1CE4_E5B9)
    }

    /// The next 64 random bits (xoshiro256**).
    public mutating func next() -> UInt64 {
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

    /// A new trace id, never the invalid all-zero one.
    public mutating func traceID() -> TraceID {
        while true {
            let id = TraceID(high: next(), low: next())
            if id.isValid { return id }
        }
    }

    /// A new span id, never the invalid zero.
    public mutating func spanID() -> SpanID {
        while true {
            let value = next()
            if value != 0 { return SpanID(value) }
        }
    }
}
