// SPDX-License-Identifier: Apache-2.0
@testable import JesterAuth
@testable import JesterTLS
import Testing

/// Every refusal class, each produced by the smallest token that shows it.

private let secret = Array("a shared secret of at least thirty-two bytes!".utf8)
private let now = AuthFixture.now

/// A validator with the fixture keys, the HMAC secret, every algorithm allowed and both claim lists set.
private let validator = JWTValidator(
    allowedAlgorithms: Set(JWTAlgorithm.allCases), keySet: AuthFixture.keySet, secret: secret,
    issuers: ["https://id.example"], audiences: ["jester"])

private func hs256(_ claims: String, header: String = #"{"alg":"HS256","typ":"JWT"}"#) -> String {
    AuthFixture.hmacToken(header: header, claims: claims, secret: secret)
}

private func refusal(_ token: String, _ validator: JWTValidator = validator) -> JWTRefusal? {
    validator.validate(token: token, now: now).failure
}

private let goodClaims = #"{"iss":"https://id.example","aud":"jester","sub":"bob","exp":1700000100}"#

@Test func aWellFormedHMACTokenPasses() {
    #expect(refusal(hs256(goodClaims)) == nil)
}

@Test func unsignedTokensAreRefusedWhateverTheConfiguration() {
    for name in ["none", "None", "NONE"] {
        let token = AuthFixture.unsignedToken(header: #"{"alg":"\#(name)"}"#, claims: goodClaims) + "."
        #expect(refusal(token) == .unsignedToken)
    }
    // Even with a signature segment appended.
    let signed = AuthFixture.unsignedToken(header: #"{"alg":"none"}"#, claims: goodClaims) + ".c2ln"
    #expect(refusal(signed) == .unsignedToken)
}

@Test func algorithmsOutsideTheAllowListAreRefused() {
    let rsaOnly = JWTValidator(allowedAlgorithms: [.ps256], keySet: AuthFixture.keySet)
    #expect(refusal(AuthFixture.tokens["RS512"]!, rsaOnly) == .algorithmNotAllowed)
    #expect(refusal(AuthFixture.tokens["PS256"]!, rsaOnly) == nil)
    #expect(refusal(hs256(goodClaims, header: #"{"alg":"HS1"}"#)) == .algorithmNotAllowed)
    #expect(refusal(hs256(goodClaims, header: #"{"alg":"ES512"}"#)) == .algorithmNotAllowed)
    #expect(refusal(hs256(goodClaims), JWTValidator(allowedAlgorithms: [], secret: secret)) == .algorithmNotAllowed)
}

@Test func anRSAPublicKeyIsNeverAnHMACSecret() {
    // The classic confusion attack: HS256 "signed" with the server's RSA public key (PEM and DER) as secret.
    let pem = AuthFixture.bytes("rsa.pub.pem")
    let body = AuthFixture.text("rsa.pub.pem").split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
    let der = Base64.decode(Substring(body).utf8, .standardPadded)!
    let pemKey = try! SignatureKey.publicKeyPEM(pem)
    let withPEMKey = JWTValidator(
        allowedAlgorithms: [.rs256, .hs256],
        keySet: JSONWebKeySet(keys: [JSONWebKey(id: "rsa-1", algorithm: nil, material: .publicKey(pemKey))]))
    let withJWKS = JWTValidator(allowedAlgorithms: [.rs256, .hs256], keySet: AuthFixture.keySet)
    for forgedSecret in [pem, der] {
        for header in [#"{"alg":"HS256"}"#, #"{"alg":"HS256","kid":"rsa-1"}"#] {
            let token = AuthFixture.hmacToken(header: header, claims: goodClaims, secret: forgedSecret)
            #expect(refusal(token, withPEMKey) == .unknownKey)
            #expect(refusal(token, withJWKS) == .unknownKey)
        }
    }
}

@Test func aKeyPinnedToAnotherAlgorithmIsNotUsed() {
    // ec384-1 is pinned to ES384 and ec256-1 to ES256: neither checks the other's tokens, even by kid.
    let es384 = AuthFixture.tokens["ES384"]!
    let relabelled = AuthFixture.unsignedToken(header: #"{"alg":"ES256","kid":"ec384-1"}"#, claims: goodClaims)
        + "." + es384.split(separator: ".")[2]
    #expect(refusal(relabelled) == .unknownKey)
    let pinned = try! JSONWebKeySet(
        json: Array(
            #"{"keys":[{"kty":"oct","alg":"HS512","k":"\#(Base64.encodeURL(secret + secret))"}]}"#.utf8))
    let validator = JWTValidator(allowedAlgorithms: [.hs256, .hs512], keySet: pinned)
    #expect(refusal(hs256(goodClaims), validator) == .unknownKey)
}

@Test func keysTheSetSkippedDoNotVerify() {
    // The encryption key and the 1024-bit key were skipped when the set was read; their tokens find no key.
    #expect(refusal(AuthFixture.tokens["RS256-enc-key"]!) == .unknownKey)
    #expect(refusal(AuthFixture.tokens["RS256-weak-key"]!) == .unknownKey)
    #expect(refusal(hs256(goodClaims, header: #"{"alg":"RS256","kid":"no-such-key"}"#)) == .unknownKey)
    #expect(refusal(hs256(goodClaims), JWTValidator(allowedAlgorithms: [.hs256])) == .unknownKey)
    // A secret shorter than the digest is not an HS512 key (RFC 7518 §3.2).
    let short = JWTValidator(allowedAlgorithms: [.hs512], secret: Array(secret.prefix(40)))
    let token = AuthFixture.hmacToken(
        header: #"{"alg":"HS512"}"#, claims: goodClaims, secret: Array(secret.prefix(40)), digest: .sha512)
    #expect(refusal(token, short) == .unknownKey)
}

@Test func badSignaturesAreRefused() {
    let parts = AuthFixture.tokens["PS256"]!.split(separator: ".").map(String.init)
    // Another payload under the original signature.
    let otherPayload = Base64.encodeURL(Array(goodClaims.utf8))
    #expect(refusal([parts[0], otherPayload, parts[2]].joined(separator: ".")) == .badSignature)
    // Truncated RSA signature (whole bytes removed).
    let truncated = Base64.encodeURL(Array(AuthFixture.decodeURL(parts[2]).dropLast(3)))
    #expect(refusal([parts[0], parts[1], truncated].joined(separator: ".")) == .badSignature)
    // Wrong HMAC secret.
    let wrong = AuthFixture.hmacToken(header: #"{"alg":"HS256"}"#, claims: goodClaims, secret: secret + [1])
    #expect(refusal(wrong) == .badSignature)
    // Empty signature.
    #expect(refusal(AuthFixture.unsignedToken(header: #"{"alg":"HS256"}"#, claims: goodClaims) + ".") == .badSignature)
}

@Test func ecdsaSignaturesMustBeRawAndExactlySized() throws {
    let parts = AuthFixture.tokens["ES384"]!.split(separator: ".").map(String.init)
    let raw = AuthFixture.decodeURL(parts[2])
    #expect(raw.count == 96)
    func token(_ signature: [UInt8]) -> String { [parts[0], parts[1], Base64.encodeURL(signature)].joined(separator: ".") }
    #expect(refusal(token(raw)) == nil)
    #expect(refusal(token(Array(raw.dropLast()))) == .badSignature)
    #expect(refusal(token(raw + [0])) == .badSignature)
    #expect(refusal(token([0] + raw.dropLast())) == .badSignature)
    // The same signature in DER (what OpenSSL itself produces) is not a JWS signature.
    let der = try #require(SignatureKey.derSignature(raw: raw, curve: .p384))
    #expect(refusal(token(der)) == .badSignature)
}

@Test func encodingMustBeStrictBase64URL() {
    let token = hs256(goodClaims)
    let parts = token.split(separator: ".").map(String.init)
    #expect(refusal(token) == nil)
    #expect(refusal(parts[0] + "=." + parts[1] + "." + parts[2]) == .malformed(.encoding))
    #expect(refusal(token + "=") == .malformed(.encoding))
    #expect(refusal(parts[0] + "." + parts[1].replacingOccurrences(of: "_", with: "/") + "x." + parts[2])
        == .malformed(.encoding))
    #expect(refusal(parts[0] + "+." + parts[1] + "." + parts[2]) == .malformed(.encoding))
    #expect(refusal(parts[0] + "." + parts[1]) == .malformed(.encoding))
    #expect(refusal(token + ".x.y") == .malformed(.encoding))
    #expect(refusal(" " + token) == .malformed(.encoding))
    // A combining mark after a dot must not be merged into it.
    #expect(refusal(parts[0] + ".\u{301}" + parts[1] + "." + parts[2]) == .malformed(.encoding))
    // Non-zero trailing bits: "eQ" and "eR" would both decode to "y".
    #expect(Base64.decode("eQ".utf8[...], .urlUnpadded) == Array("y".utf8))
    #expect(Base64.decode("eR".utf8[...], .urlUnpadded) == nil)
    #expect(Base64.decode("e".utf8[...], .urlUnpadded) == nil)
}

@Test func headersAndClaimsMustBeJSONObjects() {
    #expect(refusal(hs256(goodClaims, header: "[]")) == .malformed(.header))
    #expect(refusal(hs256(goodClaims, header: #"{"typ":"JWT"}"#)) == .malformed(.header))
    #expect(refusal(hs256(goodClaims, header: #"{"alg":256}"#)) == .malformed(.header))
    #expect(refusal(hs256(goodClaims, header: #"{"alg":"HS256","kid":7}"#)) == .malformed(.header))
    #expect(refusal(hs256("[1,2]")) == .malformed(.claims))
    #expect(refusal(hs256("not json")) == .malformed(.claims))
    #expect(refusal(hs256(#"{"exp":"tomorrow"}"#)) == .malformed(.registeredClaim))
    #expect(refusal(hs256(#"{"exp":1700000100,"aud":["jester",7]}"#)) == .malformed(.registeredClaim))
    #expect(refusal(hs256(#"{"exp":1700000100,"iss":["a"]}"#)) == .malformed(.registeredClaim))
}

@Test func criticalHeadersAreRefused() {
    #expect(refusal(hs256(goodClaims, header: #"{"alg":"HS256","crit":["exp"],"exp":1}"#)) == .unsupportedCriticalHeader)
    #expect(refusal(hs256(goodClaims, header: #"{"alg":"HS256","b64":false,"crit":["b64"]}"#))
        == .unsupportedCriticalHeader)
}

@Test func oversizeTokensAreRefusedBeforeDecoding() {
    var small = validator
    small.maximumTokenBytes = 64
    #expect(refusal(hs256(goodClaims), small) == .oversize)
    // Garbage of the same length is refused for its size, not its content.
    #expect(refusal(String(repeating: "!", count: 65), small) == .oversize)
    #expect(refusal(String(repeating: "a", count: 9000)) == .oversize)
}

@Test func timeClaimsAreCheckedWithLeeway() {
    func claims(_ times: String) -> String { #"{"iss":"https://id.example","aud":"jester",\#(times)}"# }
    #expect(refusal(hs256(claims(#""exp":1699999941"#))) == nil)  // 59 s ago: within the 60 s leeway
    #expect(refusal(hs256(claims(#""exp":1699999940"#))) == .expired)
    #expect(refusal(hs256(claims(#""exp":1700000100,"nbf":1700000060"#))) == nil)
    #expect(refusal(hs256(claims(#""exp":1700000100,"nbf":1700000061"#))) == .notYetValid)
    #expect(refusal(hs256(claims(#""nbf":1600000000"#))) == .missingExpiry)
    var lenient = validator
    lenient.requireExpiry = false
    lenient.leeway = 0
    #expect(refusal(hs256(claims(#""nbf":1600000000"#)), lenient) == nil)
    #expect(refusal(hs256(claims(#""exp":1700000000"#)), lenient) == .expired)  // invalid on or after exp
    #expect(refusal(hs256(claims(#""exp":1700000000.5"#)), lenient) == nil)
}

@Test func issuerAndAudienceMustMatchWhenConfigured() {
    #expect(refusal(hs256(#"{"iss":"https://evil.example","aud":"jester","exp":1700000100}"#)) == .wrongIssuer)
    #expect(refusal(hs256(#"{"aud":"jester","exp":1700000100}"#)) == .wrongIssuer)
    #expect(refusal(hs256(#"{"iss":"https://id.example","aud":"other","exp":1700000100}"#)) == .wrongAudience)
    #expect(refusal(hs256(#"{"iss":"https://id.example","exp":1700000100}"#)) == .wrongAudience)
    #expect(refusal(hs256(#"{"iss":"https://id.example","aud":["x","jester"],"exp":1700000100}"#)) == nil)
    let open = JWTValidator(allowedAlgorithms: [.hs256], secret: secret)
    #expect(refusal(hs256(#"{"exp":1700000100}"#), open) == nil)
}

@Test func refusalsRenderRFC6750Challenges() {
    #expect(JWTRefusal.expired.challenge(realm: "api")
        == #"Bearer realm="api", error="invalid_token", error_description="token expired""#)
    #expect(JWTRefusal.badSignature.challenge()
        == #"Bearer error="invalid_token", error_description="bad signature""#)
    #expect(JWTRefusal.missingTokenChallenge(realm: #"a "q" \ b"#) == #"Bearer realm="a \"q\" \\ b""#)
    #expect(JWTRefusal.missingTokenChallenge() == "Bearer")
    #expect(JWTRefusal.malformed(.encoding).reason == "malformed")
    // No description may break a quoted-string.
    let all: [JWTRefusal] = [
        .oversize, .malformed(.encoding), .malformed(.header), .malformed(.claims), .malformed(.registeredClaim),
        .unsignedToken, .algorithmNotAllowed, .unsupportedCriticalHeader, .unknownKey, .badSignature, .expired,
        .notYetValid, .missingExpiry, .wrongIssuer, .wrongAudience,
    ]
    #expect(all.allSatisfy { !$0.description.contains("\"") && !$0.description.contains("\\") })
    #expect(Set(all.map(\.reason)).count == all.count - 3)
}

@Test func bearerTokensAreTakenFromTheAuthorizationHeader() {
    #expect(JSONWebToken.bearerToken(fromAuthorization: "Bearer abc.def.ghi") == "abc.def.ghi")
    #expect(JSONWebToken.bearerToken(fromAuthorization: "bearer   abc") == "abc")
    #expect(JSONWebToken.bearerToken(fromAuthorization: "Basic abc") == nil)
    #expect(JSONWebToken.bearerToken(fromAuthorization: "Bearer") == nil)
    #expect(JSONWebToken.bearerToken(fromAuthorization: "Bearer ") == nil)
    #expect(JSONWebToken.bearerToken(fromAuthorization: "Bearerabc") == nil)
}

@Test func claimLookupsForForwardingAndRateLimits() throws {
    let token = hs256(
        #"{"iss":"https://id.example","aud":"jester","exp":1700000100,"sub":"bob","n":1.5,"big":12345678901,"#
            + #""ok":true,"realm_access":{"roles":["r1","r2"]},"bad":"a\nb","mixed":["a",1]}"#)
    let claims = try validator.validate(token: token, now: now).get().claims
    #expect(claims.value(at: ["realm_access", "roles"])?.stringsValue == ["r1", "r2"])
    #expect(claims.value(at: ["realm_access", "nope"]) == nil)
    #expect(claims.headerValue("sub") == "bob")
    #expect(claims.headerValue("n") == "1.5")
    #expect(claims.headerValue("big") == "12345678901")
    #expect(claims.headerValue("ok") == "true")
    #expect(claims.headerValue("bad") == nil)
    #expect(claims.headerValue("mixed") == nil)
    #expect(claims.headerValue("realm_access") == nil)
    #expect(claims.strings("aud") == ["jester"])
}
