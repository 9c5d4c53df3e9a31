// SPDX-License-Identifier: Apache-2.0
import JesterCore

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

/// SipHash-2-4 with 128-bit output (JesterCore's `SipHash`, the reference implementation's 128-bit variant),
/// keyed with a secret seed.
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
    private var hash: SipHash

    /// A hasher with the 128-bit secret `seed` (k0, k1 of the paper).
    public init(seed: (UInt64, UInt64)) {
        hash = SipHash(seed: seed, wide: true)
    }

    /// Adds one part of a key: its length as 8 bytes, then its UTF-8 bytes.
    public mutating func combine(_ part: String) {
        hash.combine(bytes: part.utf8)
    }

    /// Adds one part given as bytes, length-prefixed.
    public mutating func combine<Bytes: Collection>(bytes: Bytes) where Bytes.Element == UInt8 {
        hash.combine(bytes: bytes)
    }

    /// Adds raw bytes with no length prefix (the reference test vectors hash raw messages).
    public mutating func write<Bytes: Sequence>(bytes: Bytes) where Bytes.Element == UInt8 {
        hash.write(bytes: bytes)
    }

    /// Adds one raw byte.
    public mutating func write(_ byte: UInt8) {
        hash.write(byte)
    }

    /// SipHash-2-4-128 of the message written so far (the hasher can go on being written to).
    public func finalize() -> CacheKeyHash {
        let (low, high) = hash.finalize128()
        return CacheKeyHash(low: low, high: high)
    }
}
