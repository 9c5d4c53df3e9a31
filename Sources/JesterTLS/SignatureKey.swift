// SPDX-License-Identifier: Apache-2.0
private import CJesterOpenSSL

/// The two NIST curves JSON Web Signatures use with ECDSA (RFC 7518 §3.4): ES256 is P-256 with SHA-256, ES384
/// is P-384 with SHA-384. P-521 (ES512) is not offered: no identity provider Jester has met issues it.
public enum EllipticCurve: String, Sendable, Hashable, CaseIterable {
    case p256 = "P-256"
    case p384 = "P-384"

    /// The size of one coordinate, and of each of r and s in a raw signature: 32 or 48 bytes.
    public var coordinateByteCount: Int {
        switch self {
        case .p256: 32
        case .p384: 48
        }
    }

    /// The digest the curve is paired with; JWS allows no other pairing.
    public var digest: MessageDigest {
        switch self {
        case .p256: .sha256
        case .p384: .sha384
        }
    }

    /// OpenSSL's group name (static: OSSL_PARAM_BLD keeps the pointer until it builds the parameters).
    var groupName: StaticString {
        switch self {
        case .p256: "prime256v1"
        case .p384: "secp384r1"
        }
    }
}

/// How a signature is made, in the terms of the key that checks it: the JWS names map onto these one to one
/// (RS256 is `.rsaPKCS1v15(.sha256)`, PS256 `.rsaPSS(.sha256)`, ES256 `.ecdsa(.p256)`, EdDSA `.ed25519`).
public enum SignatureAlgorithm: Sendable, Hashable {
    /// RSASSA-PKCS1-v1_5 with the digest.
    case rsaPKCS1v15(MessageDigest)
    /// RSASSA-PSS with the digest, MGF1 over the same digest and a salt as long as the digest (RFC 7518 §3.5).
    case rsaPSS(MessageDigest)
    /// ECDSA on the curve with its paired digest; the signature is raw r‖s, each a fixed-size coordinate, as JWS
    /// sends it (RFC 7518 §3.4), not DER.
    case ecdsa(EllipticCurve)
    /// Ed25519 (RFC 8032), which hashes internally.
    case ed25519
}

/// A public key that checks signatures: RSA, EC (P-256, P-384) or Ed25519, built from the components a JSON Web
/// Key carries or from a PEM `PUBLIC KEY` block.
///
/// Why a class: it owns OpenSSL's `EVP_PKEY` and frees it in `deinit`. It is built once per configuration (or
/// key-set refresh) and shared by every request on every thread: OpenSSL 3 allows concurrent read-only use of a
/// key, and each `verify` makes its own digest context.
public final class SignatureKey: @unchecked Sendable, CustomStringConvertible {
    /// The key's type, which decides the algorithms it may check (a key never checks another family's signature).
    public enum Kind: Sendable, Hashable {
        case rsa
        case ellipticCurve(EllipticCurve)
        case ed25519
    }

    /// What this key is.
    public let kind: Kind
    /// The key's size in bits (the modulus for RSA), so callers can refuse weak keys (RFC 7518 §3.3: RSA ≥ 2048).
    public let bits: Int
    /// The `EVP_PKEY`.
    private let key: OpaquePointer

    private init(taking key: OpaquePointer, kind: Kind) {
        self.key = key
        self.kind = kind
        bits = Int(EVP_PKEY_get_bits(key))
    }

    deinit {
        EVP_PKEY_free(key)
    }

    public var description: String {
        switch kind {
        case .rsa: "RSA-\(bits)"
        case .ellipticCurve(let curve): "EC \(curve.rawValue)"
        case .ed25519: "Ed25519"
        }
    }

    // MARK: Construction

    /// An RSA public key from its modulus and public exponent, big-endian unsigned (a JWK's `n` and `e`).
    public static func rsa(modulus: [UInt8], exponent: [UInt8]) throws(TLSError) -> SignatureKey {
        guard modulus.contains(where: { $0 != 0 }), exponent.contains(where: { $0 != 0 }) else {
            throw TLSError("building an RSA key", reasons: ["the modulus or exponent is zero"])
        }
        let key = try withMarkedErrors("building an RSA key") { () -> OpaquePointer? in
            guard let n = bignum(modulus) else { return nil }
            defer { BN_free(n) }
            guard let e = bignum(exponent) else { return nil }
            defer { BN_free(e) }
            return fromData(type: "RSA") { builder in
                OSSL_PARAM_BLD_push_BN(builder, cString("n"), n) == 1  // OSSL_PKEY_PARAM_RSA_N
                    && OSSL_PARAM_BLD_push_BN(builder, cString("e"), e) == 1  // OSSL_PKEY_PARAM_RSA_E
            }
        }
        return SignatureKey(taking: key, kind: .rsa)
    }

    /// An EC public key from its affine coordinates (a JWK's `x` and `y`), each exactly the curve's coordinate
    /// size. A point not on the curve is refused here, not discovered at the first signature.
    public static func ellipticCurve(_ curve: EllipticCurve, x: [UInt8], y: [UInt8]) throws(TLSError)
        -> SignatureKey
    {
        guard x.count == curve.coordinateByteCount, y.count == curve.coordinateByteCount else {
            throw TLSError(
                "building an EC key",
                reasons: ["\(curve.rawValue) coordinates are \(curve.coordinateByteCount) bytes each"])
        }
        // SEC 1 §2.3.3 uncompressed point: 0x04 ‖ x ‖ y.
        let point = [0x04] + x + y
        let key = try withMarkedErrors("building an EC key") { () -> OpaquePointer? in
            let key = point.withUnsafeBufferPointer { point in
                fromData(type: "EC") { builder in
                    // OSSL_PKEY_PARAM_GROUP_NAME and OSSL_PKEY_PARAM_PUB_KEY.
                    OSSL_PARAM_BLD_push_utf8_string(builder, cString("group"), cString(curve.groupName), 0) == 1
                        && OSSL_PARAM_BLD_push_octet_string(
                            builder, cString("pub"), point.baseAddress, point.count) == 1
                }
            }
            guard let key else { return nil }
            guard publicCheck(key) else {
                EVP_PKEY_free(key)
                return nil
            }
            return key
        }
        return SignatureKey(taking: key, kind: .ellipticCurve(curve))
    }

    /// An Ed25519 public key from its 32 raw bytes (a JWK's `x`, RFC 8037 §2).
    public static func ed25519(publicKey: [UInt8]) throws(TLSError) -> SignatureKey {
        guard publicKey.count == 32 else {
            throw TLSError("building an Ed25519 key", reasons: ["an Ed25519 public key is 32 bytes"])
        }
        let key = try withMarkedErrors("building an Ed25519 key") {
            publicKey.withUnsafeBufferPointer {
                EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, $0.baseAddress, $0.count)
            }
        }
        return SignatureKey(taking: key, kind: .ed25519)
    }

    /// A key from a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) block, for operators who configure a key file
    /// instead of a key set. RSA, EC on P-256/P-384 and Ed25519 are accepted; anything else is an error.
    public static func publicKeyPEM(_ pem: [UInt8]) throws(TLSError) -> SignatureKey {
        let key = try withMarkedErrors("reading a PEM public key") { () -> OpaquePointer? in
            pem.withUnsafeBytes { bytes in
                guard let bio = BIO_new_mem_buf(bytes.baseAddress, Int32(bytes.count)) else { return nil }
                defer { BIO_free(bio) }
                return PEM_read_bio_PUBKEY(bio, nil, nil, nil)
            }
        }
        let kind: Kind
        switch EVP_PKEY_get_base_id(key) {
        case EVP_PKEY_RSA:
            kind = .rsa
        case EVP_PKEY_ED25519:
            kind = .ed25519
        case EVP_PKEY_EC:
            var name = [CChar](repeating: 0, count: 64)
            var length = 0
            _ = EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, &name, name.count, &length)
            let group = String(decoding: name.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard let curve = EllipticCurve.allCases.first(where: { "\($0.groupName)" == group }) else {
                EVP_PKEY_free(key)
                throw TLSError("reading a PEM public key", reasons: ["unsupported curve \(group)"])
            }
            kind = .ellipticCurve(curve)
        default:
            EVP_PKEY_free(key)
            throw TLSError("reading a PEM public key", reasons: ["not an RSA, EC or Ed25519 key"])
        }
        return SignatureKey(taking: key, kind: kind)
    }

    // MARK: Verification

    /// True if this key's type can check `algorithm` at all: RSA for the RSA algorithms, an EC key on exactly
    /// the algorithm's curve for ECDSA, Ed25519 for Ed25519.
    public func canVerify(_ algorithm: SignatureAlgorithm) -> Bool {
        switch (algorithm, kind) {
        case (.rsaPKCS1v15, .rsa), (.rsaPSS, .rsa), (.ed25519, .ed25519): true
        case (.ecdsa(let wanted), .ellipticCurve(let curve)): wanted == curve
        default: false
        }
    }

    /// True only if `signature` is a valid signature of `message` by this key under `algorithm`. A key of the
    /// wrong type, a raw ECDSA signature of the wrong length, or any OpenSSL error is false, never a crash.
    ///
    /// Errors OpenSSL queues on the way are removed before returning, and only those: a failed signature must
    /// not be reported later against a TLS connection served on the same thread.
    public func verify(_ algorithm: SignatureAlgorithm, message: [UInt8], signature: [UInt8]) -> Bool {
        guard canVerify(algorithm) else { return false }
        var signature = signature
        let digest: OpaquePointer?
        switch algorithm {
        case .rsaPKCS1v15(let method), .rsaPSS(let method):
            digest = method.method
        case .ecdsa(let curve):
            guard let der = Self.derSignature(raw: signature, curve: curve) else { return false }
            signature = der
            digest = curve.digest.method
        case .ed25519:
            digest = nil  // Ed25519 is "one-shot": no separate digest (RFC 8032 §5.1).
        }
        ERR_set_mark()
        defer { ERR_pop_to_mark() }
        guard let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context) }
        var keyContext: OpaquePointer?
        guard EVP_DigestVerifyInit(context, &keyContext, digest, nil, key) == 1 else { return false }
        switch algorithm {
        case .rsaPKCS1v15:
            guard EVP_PKEY_CTX_set_rsa_padding(keyContext, RSA_PKCS1_PADDING) == 1 else { return false }
        case .rsaPSS(let method):
            guard EVP_PKEY_CTX_set_rsa_padding(keyContext, RSA_PKCS1_PSS_PADDING) == 1,
                EVP_PKEY_CTX_set_rsa_mgf1_md(keyContext, method.method) == 1,
                EVP_PKEY_CTX_set_rsa_pss_saltlen(keyContext, Int32(method.byteCount)) == 1
            else { return false }
        case .ecdsa, .ed25519:
            break
        }
        let status = signature.withUnsafeBufferPointer { signature in
            message.withUnsafeBufferPointer { message in
                EVP_DigestVerify(context, signature.baseAddress, signature.count, message.baseAddress, message.count)
            }
        }
        return status == 1
    }

    // MARK: Helpers

    /// The DER `ECDSA-Sig-Value` (what OpenSSL verifies) for a JWS raw r‖s signature; nil unless the raw form is
    /// exactly twice the coordinate size, so a truncated or padded signature never reaches OpenSSL.
    static func derSignature(raw: [UInt8], curve: EllipticCurve) -> [UInt8]? {
        let size = curve.coordinateByteCount
        guard raw.count == 2 * size else { return nil }
        guard let value = ECDSA_SIG_new() else { return nil }
        defer { ECDSA_SIG_free(value) }
        guard let r = bignum(raw[0..<size]) else { return nil }
        guard let s = bignum(raw[size...]) else {
            BN_free(r)
            return nil
        }
        guard ECDSA_SIG_set0(value, r, s) == 1 else {
            BN_free(r)
            BN_free(s)
            return nil
        }
        let length = i2d_ECDSA_SIG(value, nil)
        guard length > 0 else { return nil }
        var der = [UInt8](repeating: 0, count: Int(length))
        let written = der.withUnsafeMutableBufferPointer { buffer in
            var cursor = buffer.baseAddress
            return i2d_ECDSA_SIG(value, &cursor)
        }
        return written == length ? der : nil
    }

    /// A NUL-terminated C string in static storage. OSSL_PARAM_BLD stores the key and string pointers it is
    /// given and reads them only in `OSSL_PARAM_BLD_to_param`, so a Swift String's temporary C copy (freed when
    /// the push call returns) would leave it reading freed memory.
    private static func cString(_ text: StaticString) -> UnsafePointer<CChar> {
        UnsafeRawPointer(text.utf8Start).assumingMemoryBound(to: CChar.self)
    }

    /// A BIGNUM from big-endian unsigned bytes; the caller frees it.
    private static func bignum(_ bytes: some Collection<UInt8>) -> OpaquePointer? {
        Array(bytes).withUnsafeBufferPointer { BN_bin2bn($0.baseAddress, Int32($0.count), nil) }
    }

    /// A public key of OpenSSL type `type` from the parameters `build` pushes; nil on any failure.
    private static func fromData(type: String, build: (OpaquePointer) -> Bool) -> OpaquePointer? {
        guard let builder = OSSL_PARAM_BLD_new() else { return nil }
        defer { OSSL_PARAM_BLD_free(builder) }
        guard build(builder), let parameters = OSSL_PARAM_BLD_to_param(builder) else { return nil }
        defer { OSSL_PARAM_free(parameters) }
        guard let context = EVP_PKEY_CTX_new_from_name(nil, type, nil) else { return nil }
        defer { EVP_PKEY_CTX_free(context) }
        var key: OpaquePointer?
        guard EVP_PKEY_fromdata_init(context) == 1,
            EVP_PKEY_fromdata(context, &key, cjester_evp_pkey_public_key_selection(), parameters) == 1
        else { return nil }
        return key
    }

    /// True if OpenSSL's public-key check passes (for EC: the point is on the curve and not at infinity).
    private static func publicCheck(_ key: OpaquePointer) -> Bool {
        guard let context = EVP_PKEY_CTX_new_from_pkey(nil, key, nil) else { return false }
        defer { EVP_PKEY_CTX_free(context) }
        return EVP_PKEY_public_check(context) == 1
    }

    /// Runs `body`; a nil result becomes a `TLSError` carrying just the errors OpenSSL queued meanwhile.
    private static func withMarkedErrors(_ operation: String, _ body: () -> OpaquePointer?) throws(TLSError)
        -> OpaquePointer
    {
        ERR_set_mark()
        if let result = body() {
            ERR_pop_to_mark()
            return result
        }
        // OpenSSL cannot list the errors after a mark without taking older ones too; the newest is the most
        // specific, so keep it and discard the rest of ours.
        var reasons: [String] = []
        let code = ERR_peek_last_error()
        if code != 0 {
            var text = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &text, text.count)
            reasons.append(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        ERR_pop_to_mark()
        throw TLSError(operation, reasons: reasons)
    }
}
