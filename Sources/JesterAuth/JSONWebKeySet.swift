// SPDX-License-Identifier: Apache-2.0
import JesterTLS

/// One verification key from a JWK Set (RFC 7517): the key itself and the constraints the set puts on it.
public struct JSONWebKey: Sendable {
    /// A public key (RSA, EC, OKP) or a shared secret (`oct`, for HS*).
    public enum Material: Sendable {
        case publicKey(SignatureKey)
        case secret([UInt8])
    }

    /// `kid`, if the set names the key.
    public let id: String?
    /// `alg`, if the set pins the key to one algorithm (RFC 7517 §4.4); a token naming another is not checked
    /// with this key.
    public let algorithm: JWTAlgorithm?
    /// The key.
    public let material: Material

    /// A key made by hand (a configured secret or PEM file), not read from a set.
    public init(id: String?, algorithm: JWTAlgorithm?, material: Material) {
        self.id = id
        self.algorithm = algorithm
        self.material = material
    }

    /// Whether this key may check a token signed with `algorithm`: the key's type is the algorithm's family (an
    /// EC key on exactly its curve), any pinned `alg` is the same, and an HMAC secret is at least as long as
    /// the digest (RFC 7518 §3.2).
    public func fits(_ algorithm: JWTAlgorithm) -> Bool {
        if let pinned = self.algorithm, pinned != algorithm { return false }
        switch (algorithm.family, material) {
        case (.hmac(let digest), .secret(let secret)):
            return secret.count >= digest.byteCount
        case (.signature(let signature), .publicKey(let key)):
            return key.canVerify(signature)
        default:
            return false
        }
    }
}

/// A JWK Set: the keys a JWT validator trusts, read from the JSON of a JWKS file or URL (RFC 7517 §5).
///
/// Keys Jester cannot use are skipped with a reason, not fatal, because identity providers publish keys for
/// other purposes beside the signing keys (encryption keys, newer curves); the set fails to load only if no key
/// at all is usable, since then every token would be refused. Skipped keys go to the log at load time.
public struct JSONWebKeySet: Sendable {
    /// Why a set could not be loaded.
    public enum LoadError: Error, Sendable, Hashable, CustomStringConvertible {
        /// Not a JSON object with a `keys` array.
        case notAKeySet
        /// More keys than `maximumKeys`: a hostile or broken endpoint.
        case tooManyKeys(Int)
        /// Every key was skipped; the reasons say why.
        case noUsableKey(skipped: [String])

        public var description: String {
            switch self {
            case .notAKeySet: "not a JWK Set (a JSON object with a \"keys\" array)"
            case .tooManyKeys(let count): "\(count) keys, more than the \(JSONWebKeySet.maximumKeys) allowed"
            case .noUsableKey(let skipped): "no usable key: \(skipped.joined(separator: "; "))"
            }
        }
    }

    /// Upper bound on the keys in one set. Real providers publish a handful; the bound keeps a hostile JWKS URL
    /// from making the master build thousands of keys.
    public static let maximumKeys = 64

    /// The usable keys, in the set's order.
    public let keys: [JSONWebKey]
    /// One line per skipped key ("key 3 (kid ec521-1): unsupported curve P-521"), for the load-time log.
    public let skipped: [String]

    /// A set of keys built by hand (tests, a configured secret or PEM key).
    public init(keys: [JSONWebKey]) {
        self.keys = keys
        skipped = []
    }

    /// Reads a JWK Set from its JSON text.
    public init(json: [UInt8]) throws(LoadError) {
        guard let document = JSONValue.object(decoding: json), case .array(let entries)? = document["keys"] else {
            throw .notAKeySet
        }
        guard entries.count <= Self.maximumKeys else { throw .tooManyKeys(entries.count) }
        var keys: [JSONWebKey] = []
        var skipped: [String] = []
        for (index, entry) in entries.enumerated() {
            guard case .object(let members) = entry else {
                skipped.append("key \(index): not a JSON object")
                continue
            }
            switch Self.key(members) {
            case .success(let key):
                keys.append(key)
            case .failure(let reason):
                let name = members["kid"]?.stringValue.map { " (kid \($0))" } ?? ""
                skipped.append("key \(index)\(name): \(reason.text)")
            }
        }
        guard !keys.isEmpty else { throw .noUsableKey(skipped: skipped) }
        self.keys = keys
        self.skipped = skipped
    }

    /// The keys that may check a token signed with `algorithm` and naming `keyID`: with a `kid`, only keys of
    /// that id; without one, every key of the algorithm's type. At most `limit` are returned, so a token without
    /// `kid` against a large set cannot make Jester try every key.
    public func candidates(for algorithm: JWTAlgorithm, keyID: String?, limit: Int) -> [JSONWebKey] {
        var found: [JSONWebKey] = []
        guard limit > 0 else { return found }
        for key in keys where key.fits(algorithm) && (keyID == nil || key.id == keyID) {
            found.append(key)
            if found.count == limit { break }
        }
        return found
    }

    /// A reason a key was skipped.
    struct SkipReason: Error {
        let text: String
        init(_ text: String) { self.text = text }
    }

    /// One JWK's members → a usable key, or why not.
    static func key(_ members: [String: JSONValue]) -> Result<JSONWebKey, SkipReason> {
        // RFC 7517 §4.2 and §4.3: a key marked for another use, or whose operations exclude verifying, is not
        // a signature key, whatever its type.
        if let use = members["use"], use != .string("sig") { return .failure(SkipReason("\"use\" is not \"sig\"")) }
        if let operations = members["key_ops"] {
            guard let list = operations.stringsValue, list.contains("verify") else {
                return .failure(SkipReason("\"key_ops\" does not include \"verify\""))
            }
        }
        var algorithm: JWTAlgorithm?
        if let pinned = members["alg"] {
            guard let name = pinned.stringValue, let known = JWTAlgorithm(rawValue: name) else {
                return .failure(SkipReason("unsupported \"alg\""))
            }
            algorithm = known
        }
        var id: String?
        if let kid = members["kid"] {
            guard let name = kid.stringValue else { return .failure(SkipReason("\"kid\" is not a string")) }
            id = name
        }
        guard let type = members["kty"]?.stringValue else { return .failure(SkipReason("no \"kty\"")) }
        let material: JSONWebKey.Material
        switch Self.material(type: type, members) {
        case .success(let value): material = value
        case .failure(let reason): return .failure(reason)
        }
        let key = JSONWebKey(id: id, algorithm: algorithm, material: material)
        // A pinned alg the key cannot serve (an RSA key pinned to ES256) would never verify anything.
        if let algorithm, !key.fits(algorithm) {
            return .failure(SkipReason("\"alg\" \(algorithm) does not suit this key"))
        }
        return .success(key)
    }

    /// The key material for `kty` (RFC 7518 §6, RFC 8037 §2).
    private static func material(type: String, _ members: [String: JSONValue]) -> Result<
        JSONWebKey.Material, SkipReason
    > {
        func bytes(_ name: String) -> [UInt8]? {
            guard let text = members[name]?.stringValue else { return nil }
            return Base64.decode(Substring(text).utf8, .urlUnpadded)
        }
        do throws(TLSError) {
            switch type {
            case "RSA":
                guard let modulus = bytes("n"), let exponent = bytes("e") else {
                    return .failure(SkipReason("RSA key without valid \"n\" and \"e\""))
                }
                let key = try SignatureKey.rsa(modulus: modulus, exponent: exponent)
                // RFC 7518 §3.3: 2048 bits or more.
                guard key.bits >= 2048 else { return .failure(SkipReason("RSA key of \(key.bits) bits (< 2048)")) }
                return .success(.publicKey(key))
            case "EC":
                guard let name = members["crv"]?.stringValue else { return .failure(SkipReason("EC key without \"crv\"")) }
                guard let curve = EllipticCurve(rawValue: name) else {
                    return .failure(SkipReason("unsupported curve \(name)"))
                }
                guard let x = bytes("x"), let y = bytes("y") else {
                    return .failure(SkipReason("EC key without valid \"x\" and \"y\""))
                }
                return .success(.publicKey(try SignatureKey.ellipticCurve(curve, x: x, y: y)))
            case "OKP":
                guard let name = members["crv"]?.stringValue else { return .failure(SkipReason("OKP key without \"crv\"")) }
                guard name == "Ed25519" else { return .failure(SkipReason("unsupported curve \(name)")) }
                guard let x = bytes("x") else { return .failure(SkipReason("OKP key without valid \"x\"")) }
                return .success(.publicKey(try SignatureKey.ed25519(publicKey: x)))
            case "oct":
                guard let secret = bytes("k"), !secret.isEmpty else {
                    return .failure(SkipReason("oct key without valid \"k\""))
                }
                return .success(.secret(secret))
            default:
                return .failure(SkipReason("unsupported key type"))
            }
        } catch {
            return .failure(SkipReason(error.description))
        }
    }
}
