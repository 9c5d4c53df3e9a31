// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterTLS
import Testing

@testable import JesterProxy

/// The jwt filter's cache of verified tokens: a hit still honours the token's times, and a new key set empties it.

private let secret = Array(repeating: UInt8(ascii: "k"), count: 32)

private func segment(_ json: String) -> String {
    Data(json.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-")
        .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
}

private func token(expiry: Int, key: [UInt8] = secret) -> String {
    let input = segment(#"{"alg":"HS256","typ":"JWT"}"#) + "." + segment(#"{"sub":"alice","exp":\#(expiry)}"#)
    let mac = MessageDigest.sha256.authenticationCode(key: key, message: Array(input.utf8))
    return input + "." + Data(mac).base64EncodedString().replacingOccurrences(of: "+", with: "-")
        .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
}

private func filter() throws -> JWTFilter {
    var settings = JWTSettings(algorithms: [.hs256])
    settings.secret = Data(secret)
    return try #require(JWTFilter(name: "api", settings: settings))
}

private func passes(_ verdict: FilterVerdict) -> Bool {
    if case .proceed = verdict { return true }
    return false
}

@Test func aVerifiedTokenIsCheckedOnceAndStillExpiresOnTime() throws {
    let jwt = try filter()
    let now = 1_800_000_000.0
    let bearer = "Bearer " + token(expiry: Int(now) + 60)
    #expect(passes(jwt.decide(bearer, context: filterContext(), now: now)))
    #expect(jwt.cachedTokens == 1)
    let context = filterContext()
    #expect(passes(jwt.decide(bearer, context: context, now: now + 30)))
    #expect(context.user == "alice" && context.claims["sub"] == "alice")
    // At its expiry the cached token is refused like any other.
    #expect(!passes(jwt.decide(bearer, context: filterContext(), now: now + 60)))
    #expect(jwt.cachedTokens == 0)
}

@Test func badTokensAreNeverCachedAndANewKeySetEmptiesTheCache() throws {
    let jwt = try filter()
    let now = 1_800_000_000.0
    let forged = "Bearer " + token(expiry: Int(now) + 60, key: Array(repeating: UInt8(ascii: "x"), count: 32))
    #expect(!passes(jwt.decide(forged, context: filterContext(), now: now)))
    #expect(jwt.cachedTokens == 0)
    #expect(passes(jwt.decide("Bearer " + token(expiry: Int(now) + 60), context: filterContext(), now: now)))
    #expect(jwt.cachedTokens == 1)
    let jwks = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../Fixtures/auth/jwks.json").standardized
    _ = try jwt.replaceKeySet(json: Array(try Data(contentsOf: jwks)))
    #expect(jwt.cachedTokens == 0)
}
