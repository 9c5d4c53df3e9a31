// SPDX-License-Identifier: Apache-2.0

/// A JWT in JWS compact serialization (RFC 7515 §7.1), split and decoded but not yet trusted: the header's
/// parameters, the signing input, the signature bytes and the undecoded claims.
///
/// Why the claims stay bytes here: nothing in the payload matters until the signature is checked, so the
/// validator parses it as JSON only after that (less attacker-controlled input reaches the JSON decoder).
///
/// Header parameters that would tell Jester where to find a key (`jku`, `jwk`, `x5u`, `x5c`) are ignored on
/// purpose: keys come only from the configuration, never from the token they are meant to check.
public struct JSONWebToken: Sendable {
    /// `alg`: known, allowed by nobody yet (the validator checks its allow-list).
    public let algorithm: JWTAlgorithm
    /// `kid`, if the header names a key.
    public let keyID: String?
    /// `typ`, if present ("JWT", "at+jwt"...).
    public let type: String?
    /// The ASCII bytes of `header.payload`, which the signature covers.
    let signingInput: [UInt8]
    /// The decoded payload (the claims set's JSON).
    let payload: [UInt8]
    /// The decoded signature.
    let signature: [UInt8]

    /// Splits and decodes `token`. The size limit is checked before anything else, so an oversize token costs
    /// one comparison. Fails with `.oversize`, `.malformed`, `.unsignedToken` (any spelling of `none`),
    /// `.algorithmNotAllowed` (an `alg` Jester does not implement) or `.unsupportedCriticalHeader`.
    public static func parse(_ token: Substring, maxBytes: Int) throws(JWTRefusal) -> JSONWebToken {
        let bytes = token.utf8
        guard bytes.count <= maxBytes else { throw .oversize }
        let dots = bytes.indices.filter { bytes[$0] == UInt8(ascii: ".") }
        // Three segments; a JWE (five) or a JWS JSON serialization is not a bearer JWT Jester accepts.
        guard dots.count == 2 else { throw .malformed(.encoding) }
        // Byte offsets, not Characters: a combining mark after a dot must not be merged into it and skipped.
        guard let headerBytes = Base64.decode(bytes[bytes.startIndex..<dots[0]], .urlUnpadded),
            let payload = Base64.decode(bytes[bytes.index(after: dots[0])..<dots[1]], .urlUnpadded),
            let signature = Base64.decode(bytes[bytes.index(after: dots[1])...], .urlUnpadded)
        else { throw .malformed(.encoding) }
        guard let header = JSONValue.object(decoding: headerBytes), case .string(let name)? = header["alg"] else {
            throw .malformed(.header)
        }
        // RFC 7518 §3.6: an unsecured JWS. Refused before anything else is looked at, in any letter case (some
        // libraries once compared case-insensitively and were tricked with "None").
        if name.lowercased() == "none" { throw .unsignedToken }
        guard let algorithm = JWTAlgorithm(rawValue: name) else { throw .algorithmNotAllowed }
        // RFC 7515 §4.1.11: a recipient that does not understand a listed extension must refuse the JWS. Jester
        // implements none (b64 = false of RFC 7797 included), so any `crit` is refused.
        if header["crit"] != nil { throw .unsupportedCriticalHeader }
        var keyID: String?
        switch header["kid"] {
        case nil: break
        case .string(let value)?: keyID = value
        default: throw .malformed(.header)
        }
        var type: String?
        switch header["typ"] {
        case nil: break
        case .string(let value)?: type = value
        default: throw .malformed(.header)
        }
        return JSONWebToken(
            algorithm: algorithm, keyID: keyID, type: type,
            signingInput: Array(bytes[bytes.startIndex..<dots[1]]), payload: payload, signature: signature)
    }

    /// The token from an `Authorization` header value `Bearer <token>` (RFC 6750 §2.1: scheme case-insensitive,
    /// one or more spaces), or nil for another scheme or an empty token. The token itself is checked by `parse`.
    public static func bearerToken(fromAuthorization value: Substring) -> Substring? {
        let scheme = value.prefix { $0 != " " }
        guard scheme.lowercased() == "bearer" else { return nil }
        let token = value[scheme.endIndex...].drop { $0 == " " }
        // Trailing whitespace would have been removed by the header parser; anything else after the token
        // (a second word) is not b64token and fails `parse` as malformed.
        return token.isEmpty ? nil : token
    }
}
