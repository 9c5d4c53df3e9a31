// SPDX-License-Identifier: Apache-2.0
import Foundation
@testable import JesterAuth
import JesterTLS

/// The fixtures of Tests/Fixtures/auth (made once by its make.py with the openssl CLI and libxcrypt), and
/// helpers that build tokens in the test.
enum AuthFixture {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/auth")

    static func bytes(_ name: String) -> [UInt8] {
        Array(try! Data(contentsOf: directory.appendingPathComponent(name)))
    }

    static func text(_ name: String) -> String {
        String(decoding: bytes(name), as: UTF8.self)
    }

    /// The fixture key set (four usable keys, four skipped).
    static let keySet = try! JSONWebKeySet(json: bytes("jwks.json"))

    /// Tokens signed by the openssl CLI, by name ("PS256", "ES384", "RS256-no-kid"...).
    static let tokens = try! JSONDecoder().decode([String: String].self, from: Data(bytes("tokens.json")))

    /// The fixture tokens' claims are valid at this time (nbf 1600000000, exp 2000000000).
    static let now = 1_700_000_000.0

    /// A compact JWS of `header` and `claims` (JSON texts), HMAC-signed with `secret` under `digest`.
    static func hmacToken(header: String, claims: String, secret: [UInt8], digest: MessageDigest = .sha256)
        -> String
    {
        let input = unsignedToken(header: header, claims: claims)
        let tag = digest.authenticationCode(key: secret, message: Array(input.utf8))
        return input + "." + Base64.encodeURL(tag)
    }

    /// `header.claims` without the signature segment.
    static func unsignedToken(header: String, claims: String) -> String {
        Base64.encodeURL(Array(header.utf8)) + "." + Base64.encodeURL(Array(claims.utf8))
    }

    static func decodeURL(_ text: String) -> [UInt8] { Base64.decode(Substring(text).utf8, .urlUnpadded)! }
}
