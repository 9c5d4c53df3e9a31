// SPDX-License-Identifier: Apache-2.0
@testable import JesterAuth
import JesterTLS
import Testing

/// The published vectors: RFC 7515 appendix A.1-A.3 and RFC 8037 appendix A.4, each checked through the same
/// path a request takes; then one token per algorithm family made once with the openssl CLI.

/// RFC 7515 A.1-A.3 share this payload: {"iss":"joe", "exp":1300819380, "http://example.com/is_root":true}.
private let rfcPayload = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
/// Before the vectors' `exp`.
private let rfcNow = 1_300_819_000.0

private let rfcRSAModulus =
    "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-"
    + "pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2"
    + "CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9"
    + "gb54h4FRWyuXpoQ"
private let rfcECX = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"
private let rfcECY = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"

private func keySet(_ json: String) -> JSONWebKeySet { try! JSONWebKeySet(json: Array(json.utf8)) }

@Test func rfc7515AppendixA1HS256() throws {
    let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.\(rfcPayload).dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    let validator = JWTValidator(
        allowedAlgorithms: [.hs256],
        keySet: keySet(
            #"{"keys":[{"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}]}"#
        ))
    let verified = try validator.validate(token: token, now: rfcNow).get()
    #expect(verified.algorithm == .hs256)
    #expect(verified.claims.issuer == "joe")
    #expect(verified.claims.expiry == 1_300_819_380)
    #expect(verified.claims["http://example.com/is_root"] == .bool(true))
    // The same token after its exp (plus the default 60 s leeway).
    #expect(validator.validate(token: token, now: 1_300_819_380 + 60).failure == .expired)
    #expect(validator.validate(token: token, now: 1_300_819_380 + 59).failure == nil)
}

@Test func rfc7515AppendixA2RS256() throws {
    let signature =
        "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7"
        + "t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--x"
        + "i12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_Io"
        + "ypGlUPQGe77Rw"
    let token = "eyJhbGciOiJSUzI1NiJ9.\(rfcPayload).\(signature)"
    let validator = JWTValidator(
        allowedAlgorithms: [.rs256], keySet: keySet(#"{"keys":[{"kty":"RSA","n":"\#(rfcRSAModulus)","e":"AQAB"}]}"#))
    #expect(try validator.validate(token: token, now: rfcNow).get().claims.issuer == "joe")
    // RS256 checks a PKCS#1 v1.5 signature; the same bytes are not a PSS signature.
    let key = try SignatureKey.rsa(modulus: AuthFixture.decodeURL(rfcRSAModulus), exponent: [1, 0, 1])
    let input = Array("eyJhbGciOiJSUzI1NiJ9.\(rfcPayload)".utf8)
    #expect(key.bits == 2048)
    #expect(key.verify(.rsaPKCS1v15(.sha256), message: input, signature: AuthFixture.decodeURL(signature)))
    #expect(!key.verify(.rsaPSS(.sha256), message: input, signature: AuthFixture.decodeURL(signature)))
    #expect(!key.verify(.rsaPKCS1v15(.sha384), message: input, signature: AuthFixture.decodeURL(signature)))
}

@Test func rfc7515AppendixA3ES256() throws {
    let signature = "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
    let token = "eyJhbGciOiJFUzI1NiJ9.\(rfcPayload).\(signature)"
    let validator = JWTValidator(
        allowedAlgorithms: [.es256],
        keySet: keySet(#"{"keys":[{"kty":"EC","crv":"P-256","x":"\#(rfcECX)","y":"\#(rfcECY)"}]}"#))
    #expect(try validator.validate(token: token, now: rfcNow).get().claims.issuer == "joe")
}

@Test func rfc8037AppendixA4Ed25519() throws {
    let key = try SignatureKey.ed25519(publicKey: AuthFixture.decodeURL("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"))
    let input = Array("eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc".utf8)
    let signature = AuthFixture.decodeURL(
        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg")
    #expect(key.verify(.ed25519, message: input, signature: signature))
    #expect(!key.verify(.ed25519, message: input + [0x2E], signature: signature))
    // Through the validator: the signature verifies, then the payload ("Example of Ed25519 signing") is refused
    // as claims, which shows claims are parsed only after the signature.
    let validator = JWTValidator(
        allowedAlgorithms: [.edDSA],
        keySet: JSONWebKeySet(keys: [JSONWebKey(id: nil, algorithm: nil, material: .publicKey(key))]))
    let token = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
        + "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
    #expect(validator.validate(token: token, now: rfcNow).failure == .malformed(.claims))
    let forged = String(token.dropLast()) + "A"
    #expect(validator.validate(token: forged, now: rfcNow).failure == .badSignature)
}

// MARK: One token per family, made with the openssl CLI

@Test(arguments: [
    ("PS256", JWTAlgorithm.ps256, "rsa-1"), ("RS512", .rs512, "rsa-1"), ("ES384", .es384, "ec384-1"),
    ("ES256", .es256, "ec256-1"), ("EdDSA", .edDSA, "ed-1"),
])
func opensslMadeTokensVerify(name: String, algorithm: JWTAlgorithm, keyID: String) throws {
    let validator = JWTValidator(
        allowedAlgorithms: Set(JWTAlgorithm.allCases), keySet: AuthFixture.keySet, issuers: ["https://id.example"],
        audiences: ["jester"])
    let verified = try validator.validate(token: AuthFixture.tokens[name]!, now: AuthFixture.now).get()
    #expect(verified.algorithm == algorithm)
    #expect(verified.keyID == keyID)
    #expect(verified.claims.subject == "alice")
    #expect(verified.claims.strings("groups") == ["admin", "ops"])
    #expect(verified.claims.number("tier") == 3)
    #expect(verified.claims.headerValue("tier") == "3")
    #expect(verified.claims.headerValue("groups") == "admin, ops")
    #expect(verified.claims.audiences == ["jester", "other"])
}

@Test func aTokenWithoutKidTriesTheKeysOfItsType() throws {
    let validator = JWTValidator(allowedAlgorithms: [.rs256], keySet: AuthFixture.keySet)
    let verified = try validator.validate(token: AuthFixture.tokens["RS256-no-kid"]!, now: AuthFixture.now).get()
    #expect(verified.keyID == "rsa-1")
    // Bounded: with room for no key at all, nothing is tried.
    var stingy = validator
    stingy.maximumKeysTried = 0
    #expect(stingy.validate(token: AuthFixture.tokens["RS256-no-kid"]!, now: AuthFixture.now).failure == .unknownKey)
}

@Test func aPEMPublicKeyServesLikeAJWK() throws {
    let key = try SignatureKey.publicKeyPEM(AuthFixture.bytes("rsa.pub.pem"))
    #expect(key.kind == .rsa && key.bits == 2048)
    let ec = try SignatureKey.publicKeyPEM(AuthFixture.bytes("ec384.pub.pem"))
    #expect(ec.kind == .ellipticCurve(.p384))
    let validator = JWTValidator(
        allowedAlgorithms: [.ps256, .es384],
        keySet: JSONWebKeySet(keys: [
            JSONWebKey(id: "rsa-1", algorithm: nil, material: .publicKey(key)),
            JSONWebKey(id: "ec384-1", algorithm: nil, material: .publicKey(ec)),
        ]))
    #expect(validator.validate(token: AuthFixture.tokens["PS256"]!, now: AuthFixture.now).failure == nil)
    #expect(validator.validate(token: AuthFixture.tokens["ES384"]!, now: AuthFixture.now).failure == nil)
    #expect(throws: TLSError.self) { try SignatureKey.publicKeyPEM(Array("not a key".utf8)) }
}

@Test func digestsAndHMACMatchKnownAnswers() {
    // FIPS 180-2 "abc"; RFC 4231 test case 2 ("Jefe").
    #expect(MessageDigest.sha256.hash(Array("abc".utf8)).prefix(4) == [0xBA, 0x78, 0x16, 0xBF])
    let tag = MessageDigest.sha256.authenticationCode(
        key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8))
    #expect(tag.prefix(4) == [0x5B, 0xDC, 0xC1, 0x46])
    #expect(MessageDigest.sha512.authenticationCode(key: [], message: []).count == 64)
    #expect(ConstantTime.equals([1, 2, 3], [1, 2, 3]))
    #expect(!ConstantTime.equals([1, 2, 3], [1, 2, 4]))
    #expect(!ConstantTime.equals([1, 2], [1, 2, 3]))
}

extension Result {
    /// The error, or nil on success (tests compare refusals with ==).
    var failure: Failure? {
        if case .failure(let error) = self { error } else { nil }
    }
}
