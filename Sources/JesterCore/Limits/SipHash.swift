// SPDX-License-Identifier: Apache-2.0
/// SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012), keyed with a 128-bit secret,
/// with 64-bit output or the reference implementation's 128-bit variant. The one implementation behind Jester's
/// keyed hashes of client-chosen input (`RateLimitKeyHasher`, the cache's `CacheKeyHasher`), which differ only in
/// how wide a hash they need.
///
/// Parts added with `combine` are length-prefixed, so ("ab", "c") and ("a", "bc") hash differently; `write` adds
/// raw bytes (the reference test vectors hash raw messages).
public struct SipHash: Sendable {
    private var v0: UInt64
    private var v1: UInt64
    private var v2: UInt64
    private var v3: UInt64
    /// Bytes not yet compressed (little-endian, `pendingCount` of them) and the message length so far.
    private var pending: UInt64 = 0
    private var pendingCount = 0
    private var length: UInt64 = 0
    /// The 128-bit variant (it differs in initialization and finalization).
    private let wide: Bool

    /// A hasher with the secret `seed` (k0, k1 of the paper); `wide`: 128-bit output (`finalize128`).
    public init(seed: (UInt64, UInt64), wide: Bool = false) {
        self.wide = wide
        v0 = seed.0 ^ 0x736f_6d65_7073_6575
        v1 = seed.1 ^ 0x646f_7261_6e64_6f6d ^ (wide ? 0xEE : 0)
        v2 = seed.0 ^ 0x6c79_6765_6e65_7261
        v3 = seed.1 ^ 0x7465_6462_7974_6573
    }

    /// Adds one part: its length as 8 bytes, then its bytes.
    public mutating func combine<Bytes: Collection>(bytes: Bytes) where Bytes.Element == UInt8 {
        var count = UInt64(bytes.count)
        for _ in 0..<8 {
            write(UInt8(truncatingIfNeeded: count))
            count >>= 8
        }
        write(bytes: bytes)
    }

    /// Adds raw bytes, with no length prefix.
    public mutating func write<Bytes: Sequence>(bytes: Bytes) where Bytes.Element == UInt8 {
        for byte in bytes { write(byte) }
    }

    /// Adds one raw byte.
    public mutating func write(_ byte: UInt8) {
        pending |= UInt64(byte) << (8 * UInt64(pendingCount))
        pendingCount += 1
        length &+= 1
        if pendingCount == 8 {
            compress(pending)
            pending = 0
            pendingCount = 0
        }
    }

    /// SipHash-2-4 (64-bit) of the message written so far; the hasher can go on being written to.
    public func finalize64() -> UInt64 {
        precondition(!wide, "a 128-bit SipHash finalizes with finalize128")
        var copy = lastBlock(0xFF)
        return copy.squeeze()
    }

    /// SipHash-2-4-128 of the message written so far, as its first and last eight output bytes (little-endian,
    /// the reference's order).
    public func finalize128() -> (low: UInt64, high: UInt64) {
        precondition(wide, "a 64-bit SipHash finalizes with finalize64")
        var copy = lastBlock(0xEE)
        let low = copy.squeeze()
        copy.v1 ^= 0xDD
        return (low, copy.squeeze())
    }

    /// A copy with the last block (the remaining bytes, the length's low byte on top) compressed and
    /// finalization's constant `mark` applied.
    private func lastBlock(_ mark: UInt64) -> SipHash {
        var copy = self
        copy.compress(pending | (length << 56))
        copy.v2 ^= mark
        return copy
    }

    /// Four rounds, then the state folded into 64 bits.
    private mutating func squeeze() -> UInt64 {
        for _ in 0..<4 { round() }
        return v0 ^ v1 ^ v2 ^ v3
    }

    private mutating func compress(_ block: UInt64) {
        v3 ^= block
        round()
        round()
        v0 ^= block
    }

    private mutating func round() {
        v0 &+= v1
        v1 = v1.rotatedLeft(13) ^ v0
        v0 = v0.rotatedLeft(32)
        v2 &+= v3
        v3 = v3.rotatedLeft(16) ^ v2
        v0 &+= v3
        v3 = v3.rotatedLeft(21) ^ v0
        v2 &+= v1
        v1 = v1.rotatedLeft(17) ^ v2
        v2 = v2.rotatedLeft(32)
    }
}

extension UInt64 {
    fileprivate func rotatedLeft(_ count: UInt64) -> UInt64 {
        (self << count) | (self >> (64 - count))
    }
}
