// SPDX-License-Identifier: Apache-2.0
@testable import JesterAuth
import JesterTLS
import Testing

/// Reading key sets: usable keys kept, the rest skipped with a reason, and a set with nothing usable refused.

@Test func theFixtureSetKeepsFourKeysAndSaysWhyItSkippedFour() {
    let set = AuthFixture.keySet
    #expect(set.keys.map(\.id) == ["rsa-1", "ec384-1", "ec256-1", "ed-1"])
    #expect(set.skipped.count == 4)
    #expect(set.skipped[0] == "key 4 (kid ec521-1): unsupported curve P-521")
    #expect(set.skipped[1] == #"key 5 (kid rsa-enc): "use" is not "sig""#)
    #expect(set.skipped[2] == "key 6 (kid rsa-weak): RSA key of 1024 bits (< 2048)")
    #expect(set.skipped[3] == "key 7 (kid odd): unsupported key type")
}

@Test func candidatesFollowKidTypeAndBound() {
    let set = AuthFixture.keySet
    #expect(set.candidates(for: .ps256, keyID: nil, limit: 4).map(\.id) == ["rsa-1"])
    #expect(set.candidates(for: .ps256, keyID: "ec384-1", limit: 4).isEmpty)
    #expect(set.candidates(for: .es384, keyID: nil, limit: 4).map(\.id) == ["ec384-1"])
    #expect(set.candidates(for: .es256, keyID: nil, limit: 4).map(\.id) == ["ec256-1"])
    #expect(set.candidates(for: .edDSA, keyID: nil, limit: 4).map(\.id) == ["ed-1"])
    #expect(set.candidates(for: .hs256, keyID: nil, limit: 4).isEmpty)
    #expect(set.candidates(for: .rs256, keyID: nil, limit: 0).isEmpty)
}

@Test func setsWithoutUsableKeysAreRefused() {
    func load(_ json: String) -> JSONWebKeySet.LoadError? {
        do throws(JSONWebKeySet.LoadError) {
            _ = try JSONWebKeySet(json: Array(json.utf8))
            return nil
        } catch {
            return error
        }
    }
    #expect(load("[]") == .notAKeySet)
    #expect(load(#"{"keys":{}}"#) == .notAKeySet)
    #expect(load(#"{"keys":[]}"#) == .noUsableKey(skipped: []))
    #expect(load(#"{"keys":[{"kty":"oct"}]}"#) == .noUsableKey(skipped: [#"key 0: oct key without valid "k""#]))
    #expect(load(#"{"keys":[{"kty":"OKP","crv":"X25519","x":"AA"}]}"#)
        == .noUsableKey(skipped: ["key 0: unsupported curve X25519"]))
    #expect(load(#"{"keys":[{"kty":"oct","k":"c2VjcmV0","key_ops":["sign"]}]}"#)
        == .noUsableKey(skipped: [#"key 0: "key_ops" does not include "verify""#]))
    #expect(load(#"{"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"RS256"}]}"#)
        == .noUsableKey(skipped: [#"key 0: "alg" RS256 does not suit this key"#]))
    #expect(load(#"{"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"none"}]}"#)
        == .noUsableKey(skipped: [#"key 0: unsupported "alg""#]))
    let many = "{\"keys\":[" + Array(repeating: #"{"kty":"oct","k":"c2VjcmV0"}"#, count: 65).joined(separator: ",") + "]}"
    #expect(load(many) == .tooManyKeys(65))
}

@Test func ecKeysMustBeOnTheirCurve() throws {
    let x = AuthFixture.decodeURL("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU")
    let y = AuthFixture.decodeURL("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0")
    #expect(try SignatureKey.ellipticCurve(.p256, x: x, y: y).kind == .ellipticCurve(.p256))
    var offCurve = y
    offCurve[31] ^= 1
    #expect(throws: TLSError.self) { try SignatureKey.ellipticCurve(.p256, x: x, y: offCurve) }
    #expect(throws: TLSError.self) { try SignatureKey.ellipticCurve(.p384, x: x, y: y) }
    #expect(throws: TLSError.self) { try SignatureKey.ed25519(publicKey: Array(x.prefix(31))) }
    #expect(throws: TLSError.self) { try SignatureKey.rsa(modulus: [0, 0], exponent: [1, 0, 1]) }
    // A key never checks another family's algorithm.
    let ec = try SignatureKey.ellipticCurve(.p256, x: x, y: y)
    #expect(!ec.canVerify(.rsaPKCS1v15(.sha256)) && !ec.canVerify(.ecdsa(.p384)) && ec.canVerify(.ecdsa(.p256)))
    #expect(!ec.verify(.rsaPKCS1v15(.sha256), message: [1], signature: [1]))
}
