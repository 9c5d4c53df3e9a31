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
    private var hash: SipHash

    /// A hasher with the 128-bit secret `seed`.
    public init(seed: (UInt64, UInt64)) {
        hash = SipHash(seed: seed)
    }

    /// Adds one part of the key: a filter's name, a header's value, an address.
    public mutating func combine(_ part: String) {
        hash.combine(bytes: part.utf8)
    }

    /// Adds one part given as bytes (an address in binary form).
    public mutating func combine<Bytes: Collection>(bytes: Bytes) where Bytes.Element == UInt8 {
        hash.combine(bytes: bytes)
    }

    /// The key. Never 0: the table reads 0 as an empty slot.
    public func finalize() -> UInt64 {
        let value = digest()
        return value == 0 ? 1 : value
    }

    /// Adds one raw byte to the message (no length prefix: the reference test vectors use this).
    mutating func write(_ byte: UInt8) {
        hash.write(byte)
    }

    /// SipHash-2-4 of the message written so far.
    func digest() -> UInt64 {
        hash.finalize64()
    }
}
