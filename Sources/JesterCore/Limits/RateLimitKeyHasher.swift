// SPDX-License-Identifier: Apache-2.0
/// The 64-bit key of a rate-limited client in the instance-wide table: SipHash-2-4 (Aumasson and Bernstein,
/// 2012) over the filter's name and the key's parts, with a secret seed.
///
/// Why not Swift's `Hasher`: it is seeded at random per process, and every worker of every generation must find
/// a client under the same key. Why not FNV-1a (as the balancers use): the key's parts come from clients
/// (addresses, headers, token claims), the table is set-associative, and with an unkeyed hash anyone can compute
/// keys that share a bucket and evict other clients' states, which gives those clients fresh allowance. The seed
/// is drawn when the master creates the table and kept in the table's header, so it is the same in every process
/// that maps the table and unknown outside it.
///
/// Each part is length-prefixed, so ("ab", "c") and ("a", "bc") are different keys.
public struct RateLimitKeyHasher: Sendable {
    private var v0: UInt64
    private var v1: UInt64
    private var v2: UInt64
    private var v3: UInt64
    /// Bytes not yet compressed (little-endian, `pendingCount` of them) and the message length so far.
    private var pending: UInt64 = 0
    private var pendingCount = 0
    private var length: UInt64 = 0

    /// A hasher with the 128-bit secret `seed`.
    public init(seed: (UInt64, UInt64)) {
        v0 = seed.0 ^ 0x736f_6d65_7073_6575
        v1 = seed.1 ^ 0x646f_7261_6e64_6f6d
        v2 = seed.0 ^ 0x6c79_6765_6e65_7261
        v3 = seed.1 ^ 0x7465_6462_7974_6573
    }

    /// Adds one part of the key: a filter's name, a header's value, an address.
    public mutating func combine(_ part: String) {
        combine(bytes: part.utf8)
    }

    /// Adds one part given as bytes (an address in binary form).
    public mutating func combine<Bytes: Collection>(bytes: Bytes) where Bytes.Element == UInt8 {
        var count = UInt64(bytes.count)
        for _ in 0..<8 {
            write(UInt8(truncatingIfNeeded: count))
            count >>= 8
        }
        for byte in bytes { write(byte) }
    }

    /// The key. Never 0: the table reads 0 as an empty slot.
    public func finalize() -> UInt64 {
        let hash = digest()
        return hash == 0 ? 1 : hash
    }

    // MARK: SipHash-2-4

    /// Adds one raw byte to the message (no length prefix: the reference test vectors use this).
    mutating func write(_ byte: UInt8) {
        pending |= UInt64(byte) << (8 * UInt64(pendingCount))
        pendingCount += 1
        length &+= 1
        if pendingCount == 8 {
            compress(pending)
            pending = 0
            pendingCount = 0
        }
    }

    /// SipHash-2-4 of the message written so far.
    func digest() -> UInt64 {
        var copy = self
        // The last block: the remaining bytes and the message length's low byte on top.
        copy.compress(pending | (length << 56))
        copy.v2 ^= 0xFF
        for _ in 0..<4 { copy.round() }
        return copy.v0 ^ copy.v1 ^ copy.v2 ^ copy.v3
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
