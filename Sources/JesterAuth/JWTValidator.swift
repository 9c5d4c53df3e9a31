// SPDX-License-Identifier: Apache-2.0
import JesterTLS

/// A token that passed every check: who it says the caller is, and which key said so.
public struct VerifiedToken: Sendable {
    /// The algorithm the token was signed with.
    public let algorithm: JWTAlgorithm
    /// The `kid` of the key that verified it, if that key has one.
    public let keyID: String?
    /// The claims, for forwarding as headers and for rate-limit keys.
    public let claims: JWTClaims
}

/// Checks bearer tokens against one configuration: allowed algorithms, trusted keys, issuers, audiences and
/// time limits. Built once per configuration (or key-set refresh) and shared by all requests; `validate` is a
/// pure function of the token and the time passed in.
///
/// The order of checks is part of the contract. Size, then structure, then `alg` (none, allow-list), then key
/// selection, then the signature; only a token whose signature verified has its claims parsed and checked
/// (`exp`, `nbf`, `iss`, `aud`). So an attacker without a key learns nothing about claim handling, and the JSON
/// decoder sees an unauthenticated payload never.
///
/// Algorithm confusion is impossible by construction: the allow-list is checked first, and a key is only tried
/// for an algorithm of its own family (`JSONWebKey.fits`), so an RSA public key is never an HMAC secret and
/// HS* needs a configured secret (`secret`, or an `oct` key in the set).
public struct JWTValidator: Sendable {
    /// The algorithms accepted. Empty accepts nothing. Configure exactly what the issuer uses.
    public var allowedAlgorithms: Set<JWTAlgorithm>
    /// The public keys (and `oct` secrets) from the configured JWKS file or URL.
    public var keySet: JSONWebKeySet
    /// A shared secret for HS*; used only for HS algorithms, and only if they are allowed.
    public var secret: [UInt8]?
    /// Accepted `iss` values; empty accepts any (and a missing `iss`).
    public var issuers: Set<String>
    /// Accepted `aud` values; the token must name at least one. Empty accepts any (and a missing `aud`).
    public var audiences: Set<String>
    /// Clock skew tolerated on `exp` and `nbf`, in seconds (60 by default, as most gateways use).
    public var leeway: Double
    /// Whether a token without `exp` is refused. True by default: a bearer token that never expires is a
    /// credential that cannot be revoked.
    public var requireExpiry: Bool
    /// Longest token accepted, in bytes, checked before any decoding (8 KiB by default: larger than any
    /// reasonable JWT, smaller than the header limits that would otherwise be the only bound).
    public var maximumTokenBytes: Int
    /// Most keys tried for one token when it names no `kid` (4 by default), so a kid-less token costs a bounded
    /// number of signature checks.
    public var maximumKeysTried: Int

    public init(
        allowedAlgorithms: Set<JWTAlgorithm>, keySet: JSONWebKeySet = JSONWebKeySet(keys: []),
        secret: [UInt8]? = nil, issuers: Set<String> = [], audiences: Set<String> = [], leeway: Double = 60,
        requireExpiry: Bool = true, maximumTokenBytes: Int = 8192, maximumKeysTried: Int = 4
    ) {
        self.allowedAlgorithms = allowedAlgorithms
        self.keySet = keySet
        self.secret = secret
        self.issuers = issuers
        self.audiences = audiences
        self.leeway = leeway
        self.requireExpiry = requireExpiry
        self.maximumTokenBytes = maximumTokenBytes
        self.maximumKeysTried = maximumKeysTried
    }

    /// Checks `token` (the text after `Bearer `) at time `now` (seconds since the epoch).
    public func validate(token: Substring, now: Double) -> Result<VerifiedToken, JWTRefusal> {
        do throws(JWTRefusal) {
            return .success(try check(token, now: now))
        } catch {
            return .failure(error)
        }
    }

    /// `validate` for a `String`.
    public func validate(token: String, now: Double) -> Result<VerifiedToken, JWTRefusal> {
        validate(token: token[...], now: now)
    }

    private func check(_ text: Substring, now: Double) throws(JWTRefusal) -> VerifiedToken {
        let token = try JSONWebToken.parse(text, maxBytes: maximumTokenBytes)
        guard allowedAlgorithms.contains(token.algorithm) else { throw .algorithmNotAllowed }
        let keys = candidates(for: token)
        guard !keys.isEmpty else { throw .unknownKey }
        guard let key = keys.first(where: { verify(token, with: $0) }) else { throw .badSignature }
        guard let members = JSONValue.object(decoding: token.payload) else { throw .malformed(.claims) }
        let claims = try JWTClaims(members: members)
        try checkTimes(claims, now: now)
        if !issuers.isEmpty {
            guard let issuer = claims.issuer, issuers.contains(issuer) else { throw .wrongIssuer }
        }
        if !audiences.isEmpty {
            guard claims.audiences.contains(where: audiences.contains) else { throw .wrongAudience }
        }
        return VerifiedToken(algorithm: token.algorithm, keyID: key.id, claims: claims)
    }

    /// The keys to try: the configured secret first for HS*, then the set's keys that fit (bounded).
    private func candidates(for token: JSONWebToken) -> [JSONWebKey] {
        var keys: [JSONWebKey] = []
        if case .hmac = token.algorithm.family, let secret {
            // The configured secret has no kid: it is tried whatever the token names (issuers sharing one
            // secret still often set a kid), then the set's `oct` keys that match.
            let configured = JSONWebKey(id: nil, algorithm: nil, material: .secret(secret))
            if configured.fits(token.algorithm) { keys.append(configured) }
        }
        let room = max(0, maximumKeysTried - keys.count)
        return keys + keySet.candidates(for: token.algorithm, keyID: token.keyID, limit: room)
    }

    /// Whether `token`'s signature verifies under `key` (whose family `candidates` already matched).
    private func verify(_ token: JSONWebToken, with key: JSONWebKey) -> Bool {
        switch (token.algorithm.family, key.material) {
        case (.hmac(let digest), .secret(let secret)):
            let expected = digest.authenticationCode(key: secret, message: token.signingInput)
            return ConstantTime.equals(expected, token.signature)
        case (.signature(let algorithm), .publicKey(let publicKey)):
            return publicKey.verify(algorithm, message: token.signingInput, signature: token.signature)
        default:
            return false
        }
    }

    /// `exp` and `nbf` with leeway (RFC 7519 §4.1.4: the token is invalid on or after `exp`).
    private func checkTimes(_ claims: JWTClaims, now: Double) throws(JWTRefusal) {
        if let expiry = claims.expiry {
            guard now < expiry + leeway else { throw .expired }
        } else if requireExpiry {
            throw .missingExpiry
        }
        if let notBefore = claims.notBefore, now + leeway < notBefore { throw .notYetValid }
    }
}
