// SPDX-License-Identifier: Apache-2.0
import JesterTLS

/// The JWS `alg` values Jester verifies (RFC 7518 §3.1, RFC 8037 §3.1). `none` is deliberately not a case: an
/// unsigned token can never be represented as acceptable.
public enum JWTAlgorithm: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case hs256 = "HS256"
    case hs384 = "HS384"
    case hs512 = "HS512"
    case rs256 = "RS256"
    case rs384 = "RS384"
    case rs512 = "RS512"
    case ps256 = "PS256"
    case ps384 = "PS384"
    case ps512 = "PS512"
    case es256 = "ES256"
    case es384 = "ES384"
    case edDSA = "EdDSA"

    /// The kind of key an algorithm needs. Key selection matches on this first, which is what makes algorithm
    /// confusion impossible: an RSA public key is never offered to an HS algorithm as a secret, and an HMAC
    /// secret never to a signature algorithm.
    public enum Family: Sendable, Hashable {
        /// HS*: a shared secret.
        case hmac(MessageDigest)
        /// RS*, PS*, ES*, EdDSA: a public key of the type the `SignatureAlgorithm` names.
        case signature(SignatureAlgorithm)
    }

    /// This algorithm's key family and parameters.
    public var family: Family {
        switch self {
        case .hs256: .hmac(.sha256)
        case .hs384: .hmac(.sha384)
        case .hs512: .hmac(.sha512)
        case .rs256: .signature(.rsaPKCS1v15(.sha256))
        case .rs384: .signature(.rsaPKCS1v15(.sha384))
        case .rs512: .signature(.rsaPKCS1v15(.sha512))
        case .ps256: .signature(.rsaPSS(.sha256))
        case .ps384: .signature(.rsaPSS(.sha384))
        case .ps512: .signature(.rsaPSS(.sha512))
        case .es256: .signature(.ecdsa(.p256))
        case .es384: .signature(.ecdsa(.p384))
        case .edDSA: .signature(.ed25519)
        }
    }

    public var description: String { rawValue }
}
