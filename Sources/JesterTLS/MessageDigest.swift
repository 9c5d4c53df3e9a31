// SPDX-License-Identifier: Apache-2.0
private import CJesterOpenSSL

/// The SHA-2 digests Jester's authentication needs, computed by OpenSSL: plain hashes (cache keys), HMAC (the JWS
/// HS* algorithms) and the digest half of the RSA and ECDSA signature algorithms.
///
/// Why here and not in the authentication module: JesterTLS is the one importer of OpenSSL, so every primitive
/// the gateway uses comes from the same, distribution-updated library and no one writes crypto by hand.
public enum MessageDigest: Sendable, Hashable, CaseIterable {
    case sha256
    case sha384
    case sha512

    /// The length of a digest (and of an HMAC tag) in bytes: 32, 48 or 64.
    public var byteCount: Int {
        switch self {
        case .sha256: 32
        case .sha384: 48
        case .sha512: 64
        }
    }

    /// OpenSSL's method table for this digest (static objects, never freed).
    var method: OpaquePointer {
        switch self {
        case .sha256: EVP_sha256()
        case .sha384: EVP_sha384()
        case .sha512: EVP_sha512()
        }
    }

    /// The digest of `bytes`.
    public func hash(_ bytes: [UInt8]) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: byteCount)
        var length: UInt32 = 0
        let status = bytes.withUnsafeBufferPointer { input in
            EVP_Digest(input.baseAddress, input.count, &output, &length, method, nil)
        }
        // A digest of memory cannot fail short of allocation failure inside OpenSSL; that is not recoverable.
        precondition(status == 1 && Int(length) == byteCount, "EVP_Digest failed")
        return output
    }

    /// The HMAC (RFC 2104) of `message` under `key`. Compare tags with `ConstantTime.equals`, never `==`.
    public func authenticationCode(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: byteCount)
        var length: UInt32 = 0
        // An empty key or message is legal HMAC, but OpenSSL wants non-null pointers: give it one byte of storage.
        let keyStorage = key.isEmpty ? [0] : key
        let messageStorage = message.isEmpty ? [0] : message
        let result: UnsafeMutablePointer<UInt8>? = keyStorage.withUnsafeBufferPointer { keyBytes in
            messageStorage.withUnsafeBufferPointer { messageBytes in
                HMAC(
                    method, keyBytes.baseAddress, Int32(key.count), messageBytes.baseAddress, message.count,
                    &output, &length)
            }
        }
        precondition(result != nil && Int(length) == byteCount, "HMAC failed")
        return output
    }
}

/// Comparison whose time depends only on the lengths, never on where the inputs first differ.
///
/// Why: comparing a MAC or password hash with `==` stops at the first differing byte, and that timing lets an
/// attacker find the right value a byte at a time. OpenSSL's `CRYPTO_memcmp` is written to resist that.
public enum ConstantTime {
    /// True if `a` and `b` hold the same bytes. Unequal lengths return false at once (lengths are not secret).
    public static func equals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        if a.isEmpty { return true }
        return a.withUnsafeBytes { a in
            b.withUnsafeBytes { b in CRYPTO_memcmp(a.baseAddress, b.baseAddress, a.count) == 0 }
        }
    }
}
