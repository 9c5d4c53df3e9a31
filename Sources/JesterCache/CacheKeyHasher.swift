// SPDX-License-Identifier: Apache-2.0
/// A cache key's 128-bit hash: what the shared index stores and compares instead of the key's text.
///
/// 128 bits because the index trusts a hash match (it keeps no key text for every slot): at 2^64 work for a
/// collision by chance, two keys sharing a hash never happens in practice. The key text is still kept beside the
/// body (see Docs/cache-design.md), so a hit can be checked byte for byte before it is served.
public struct CacheKeyHash: Sendable, Hashable, CustomStringConvertible {
    /// The first eight bytes of SipHash-128's output, little-endian (the reference's byte order).
    public var low: UInt64
    /// The last eight bytes.
    public var high: UInt64

    /// A hash from its two halves (as the index stores them).
    public init(low: UInt64, high: UInt64) {
        self.low = low
        self.high = high
    }

    /// The 16 bytes in the reference implementation's order, for test vectors and file names.
    public var bytes: [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: low >> (8 * UInt64($0))) }
            + (0..<8).map { UInt8(truncatingIfNeeded: high >> (8 * UInt64($0))) }
    }

    /// 32 lowercase hex digits of `bytes`: a body file's name, and what `jesterctl cache` prints.
    public var description: String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(32)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// SipHash-2-4 with 128-bit output (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012, and the
/// 128-bit variant of their reference implementation), keyed with a secret seed.
///
/// Why keyed: cache keys come from clients (paths, queries, Vary'd fields). With an unkeyed hash (FNV, xxHash)
/// anyone can compute keys that land in one bucket of the index and evict other entries at will, or search for
/// two URLs whose hashes collide and have one served for the other. The seed is drawn when the master creates the
/// index and kept in its header, so every worker of every generation hashes alike and nobody outside knows it.
/// Why not the 64-bit `RateLimitKeyHasher` of JesterCore: a rate-limit slot may be shared by mistake at no cost
/// beyond a wrong count, a cache entry served for the wrong key is a leak; 128 bits make that impossible in
/// practice.
///
/// Parts added with `combine` are length-prefixed, so ("ab", "c") and ("a", "bc") hash differently.
public struct CacheKeyHasher: Sendable {
    private var v0: UInt64
    private var v1: UInt64
    private var v2: UInt64
    private var v3: UInt64
    /// Bytes not yet compressed (little-endian, `pendingCount` of them) and the message length so far.
    private var pending: UInt64 = 0
    private var pendingCount = 0
    private var length: UInt64 = 0

    /// A hasher with the 128-bit secret `seed` (k0, k1 of the paper).
    public init(seed: (UInt64, UInt64)) {
        v0 = seed.0 ^ 0x736f_6d65_7073_6575
        // The 128-bit variant differs from SipHash-2-4-64 here and in finalization (0xee, then 0xdd).
        v1 = seed.1 ^ 0x646f_7261_6e64_6f6d ^ 0xEE
        v2 = seed.0 ^ 0x6c79_6765_6e65_7261
        v3 = seed.1 ^ 0x7465_6462_7974_6573
    }

    /// Adds one part of a key: its length as 8 bytes, then its UTF-8 bytes.
    public mutating func combine(_ part: String) {
        combine(bytes: part.utf8)
    }

    /// Adds one part given as bytes, length-prefixed.
    public mutating func combine<Bytes: Collection>(bytes: Bytes) where Bytes.Element == UInt8 {
        var count = UInt64(bytes.count)
        for _ in 0..<8 {
            write(UInt8(truncatingIfNeeded: count))
            count >>= 8
        }
        write(bytes: bytes)
    }

    /// Adds raw bytes with no length prefix (the reference test vectors hash raw messages).
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

    /// SipHash-2-4-128 of the message written so far (the hasher can go on being written to).
    public func finalize() -> CacheKeyHash {
        var copy = self
        // The last block: the remaining bytes, and the message length's low byte on top.
        copy.compress(pending | (length << 56))
        copy.v2 ^= 0xEE
        for _ in 0..<4 { copy.round() }
        let low = copy.v0 ^ copy.v1 ^ copy.v2 ^ copy.v3
        copy.v1 ^= 0xDD
        for _ in 0..<4 { copy.round() }
        let high = copy.v0 ^ copy.v1 ^ copy.v2 ^ copy.v3
        return CacheKeyHash(low: low, high: high)
    }

    private mutating func compress(_ block: UInt64) {
        v3 ^= block
        round()
        round()
        v0 ^= block
    }

    private mutating func round() {
        v0 &+= v1
        v1 = rotate(v1, 13) ^ v0
        v0 = rotate(v0, 32)
        v2 &+= v3
        v3 = rotate(v3, 16) ^ v2
        v0 &+= v3
        v3 = rotate(v3, 21) ^ v0
        v2 &+= v1
        v1 = rotate(v1, 17) ^ v2
        v2 = rotate(v2, 32)
    }

    @inline(__always) private func rotate(_ value: UInt64, _ count: UInt64) -> UInt64 {
        (value << count) | (value >> (64 - count))
    }
}
