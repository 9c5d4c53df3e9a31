// SPDX-License-Identifier: Apache-2.0

/// Why a bearer token was not accepted: one case per class of failure, so logs and metrics can count them and
/// tests can name the one they expect.
///
/// Every refusal is answered 401 with `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3.1); none says
/// more to the client than a fixed description, because the details (which key, which claim value) help an
/// attacker more than a legitimate client. A valid identity that a policy then refuses is a 403, decided by the
/// filter, not here.
public enum JWTRefusal: Error, Sendable, Hashable, CustomStringConvertible {
    /// Longer than the configured limit; nothing was decoded.
    case oversize
    /// Not three base64url segments, padding or characters outside the alphabet, a header or claims set that is
    /// not a JSON object, or a registered claim of the wrong type.
    case malformed(MalformedPart)
    /// `alg: none` (RFC 7518 §3.6): never accepted, whatever the configuration says.
    case unsignedToken
    /// An `alg` Jester does not implement or this validator is not configured to accept.
    case algorithmNotAllowed
    /// A `crit` header parameter (RFC 7515 §4.1.11): Jester understands no extensions, so it must refuse.
    case unsupportedCriticalHeader
    /// No configured key fits: the `kid` is unknown, or no key of the algorithm's type (and allowed `alg`) exists.
    case unknownKey
    /// A key fitted, and the signature did not verify under it (or under any of the bounded candidates).
    case badSignature
    /// `exp` is past (with leeway).
    case expired
    /// `nbf` is in the future (with leeway).
    case notYetValid
    /// The validator requires `exp` and the token has none.
    case missingExpiry
    /// Issuers are configured and `iss` is absent or not one of them.
    case wrongIssuer
    /// Audiences are configured and `aud` names none of them.
    case wrongAudience

    /// Which part of the token could not be read.
    public enum MalformedPart: String, Sendable, Hashable {
        /// Not `header.payload.signature`, or a segment not strict base64url.
        case encoding
        /// The header is not a JSON object with a string `alg` (and string `kid`/`typ` when present).
        case header
        /// The payload is not a JSON object.
        case claims
        /// `exp`, `nbf`, `iss` or `aud` has the wrong JSON type.
        case registeredClaim
    }

    /// A short, fixed description for logs and for `error_description`: no token content ever appears in it,
    /// so it is safe to log and satisfies RFC 6750's character rules (no quote, no backslash).
    public var description: String {
        switch self {
        case .oversize: "token too large"
        case .malformed(.encoding): "malformed token"
        case .malformed(.header): "malformed token header"
        case .malformed(.claims): "malformed token claims"
        case .malformed(.registeredClaim): "malformed registered claim"
        case .unsignedToken: "unsigned token"
        case .algorithmNotAllowed: "algorithm not allowed"
        case .unsupportedCriticalHeader: "unsupported critical header"
        case .unknownKey: "no matching key"
        case .badSignature: "bad signature"
        case .expired: "token expired"
        case .notYetValid: "token not yet valid"
        case .missingExpiry: "token has no expiry"
        case .wrongIssuer: "wrong issuer"
        case .wrongAudience: "wrong audience"
        }
    }

    /// A stable snake_case name for metrics labels and structured logs.
    public var reason: String {
        switch self {
        case .oversize: "oversize"
        case .malformed: "malformed"
        case .unsignedToken: "unsigned"
        case .algorithmNotAllowed: "algorithm_not_allowed"
        case .unsupportedCriticalHeader: "unsupported_critical_header"
        case .unknownKey: "unknown_key"
        case .badSignature: "bad_signature"
        case .expired: "expired"
        case .notYetValid: "not_yet_valid"
        case .missingExpiry: "missing_expiry"
        case .wrongIssuer: "wrong_issuer"
        case .wrongAudience: "wrong_audience"
        }
    }

    /// The `WWW-Authenticate` value for the 401 (RFC 6750 §3): `Bearer realm="…", error="invalid_token",
    /// error_description="…"`. `realm` comes from the configuration; quotes and backslashes in it are escaped.
    public func challenge(realm: String? = nil) -> String {
        Self.bearerChallenge(realm: realm, error: "invalid_token", description: description)
    }

    /// The `WWW-Authenticate` value for a request that carried no bearer token at all: RFC 6750 §3.1 says such
    /// a response should not include an error code.
    public static func missingTokenChallenge(realm: String? = nil) -> String {
        bearerChallenge(realm: realm, error: nil, description: nil)
    }

    private static func bearerChallenge(realm: String?, error: String?, description: String?) -> String {
        var parameters: [String] = []
        if let realm { parameters.append("realm=\(quoted(realm))") }
        if let error { parameters.append("error=\(quoted(error))") }
        if let description { parameters.append("error_description=\(quoted(description))") }
        return parameters.isEmpty ? "Bearer" : "Bearer " + parameters.joined(separator: ", ")
    }

    /// An RFC 9110 §5.6.4 quoted-string; control characters (which a header cannot carry) are dropped.
    private static func quoted(_ text: String) -> String {
        var output = "\""
        for scalar in text.unicodeScalars where scalar.value >= 0x20 && scalar.value != 0x7F {
            if scalar == "\"" || scalar == "\\" { output.append("\\") }
            output.unicodeScalars.append(scalar)
        }
        return output + "\""
    }
}
