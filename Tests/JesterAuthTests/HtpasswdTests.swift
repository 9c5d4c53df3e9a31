// SPDX-License-Identifier: Apache-2.0
import Foundation
@testable import JesterAuth
import Testing

/// htpasswd files (fixture lines made by `openssl passwd -5/-6` and libxcrypt's bcrypt) and Basic credentials.

private let file = try! Htpasswd(parsing: AuthFixture.text("htpasswd"))

@Test func eachSchemeVerifiesItsOwnPasswordOnly() {
    #expect(file.users == ["bob", "carol", "dave", "erin"])
    #expect(file.scheme(of: "bob") == .sha256Crypt)
    #expect(file.scheme(of: "carol") == .sha512Crypt)
    #expect(file.scheme(of: "dave") == .bcrypt)
    #expect(file.scheme(of: "erin") == .sha256Crypt)
    for user in file.users {
        #expect(file.verify(user: user, password: "\(user)-secret"), "\(user)")
        #expect(!file.verify(user: user, password: "\(user)-Secret"), "\(user)")
        #expect(!file.verify(user: user, password: ""), "\(user)")
    }
    #expect(!file.verify(user: "mallory", password: "bob-secret"))
    #expect(!file.verify(user: "bob", password: "carol-secret"))
    #expect(!file.verify(user: "bob", password: "bob-secret\u{0}x"))
}

@Test func bcryptVariantsAreTheSameAlgorithm() throws {
    // $2a$, $2b$ and $2y$ differ only in historical bug handling, none of which an ASCII password touches.
    let line = AuthFixture.text("htpasswd").split(separator: "\n").first { $0.hasPrefix("dave:") }!
    for prefix in ["$2a$", "$2y$"] {
        let variant = try Htpasswd(parsing: "dave:" + prefix + line.dropFirst("dave:$2b$".count))
        #expect(variant.verify(user: "dave", password: "dave-secret"), "\(prefix)")
    }
}

@Test func successesAreCachedAndFailuresAreNot() {
    let fresh = try! Htpasswd(parsing: AuthFixture.text("htpasswd"), cacheCapacity: 2)
    #expect(!fresh.isCached(user: "dave", password: "dave-secret"))
    #expect(!fresh.verify(user: "dave", password: "wrong"))
    #expect(!fresh.isCached(user: "dave", password: "wrong"))
    #expect(fresh.verify(user: "dave", password: "dave-secret"))
    #expect(fresh.isCached(user: "dave", password: "dave-secret"))
    #expect(fresh.verify(user: "dave", password: "dave-secret"))
    // The key binds user and password: the pair split differently is another entry.
    #expect(!fresh.isCached(user: "dav", password: "edave-secret"))
    // Bounded: two more successes push the oldest out.
    #expect(fresh.verify(user: "bob", password: "bob-secret"))
    #expect(fresh.verify(user: "carol", password: "carol-secret"))
    #expect(!fresh.isCached(user: "dave", password: "dave-secret"))
    #expect(fresh.isCached(user: "carol", password: "carol-secret"))
    // Off: nothing is remembered.
    let uncached = try! Htpasswd(parsing: AuthFixture.text("htpasswd"), cacheCapacity: 0)
    #expect(uncached.verify(user: "bob", password: "bob-secret"))
    #expect(!uncached.isCached(user: "bob", password: "bob-secret"))
}

@Test func theCacheNeverHoldsThePassword() {
    let cache = VerifiedPasswordCache(capacity: 4)
    let fingerprint = cache.fingerprint(user: "bob", password: "bob-secret")
    #expect(fingerprint.count == 32)
    #expect(fingerprint != VerifiedPasswordCache(capacity: 4).fingerprint(user: "bob", password: "bob-secret"))
    cache.insert(fingerprint)
    cache.insert(fingerprint)
    #expect(cache.count == 1)
}

@Test func commentsBlankLinesAndCRLFAreAccepted() throws {
    let bob = AuthFixture.text("htpasswd").split(separator: "\n").first { $0.hasPrefix("bob:") }!
    let parsed = try Htpasswd(parsing: "# staff\r\n\r\n   \r\n\(bob)\r\n  # indented comment\n")
    #expect(parsed.users == ["bob"])
    #expect(parsed.verify(user: "bob", password: "bob-secret"))
    #expect(try Htpasswd(parsing: "").users.isEmpty)
    #expect(!(try Htpasswd(parsing: "")).verify(user: "bob", password: "x"))
}

@Test func weakOrBrokenLinesAreRefusedWithTheirLineNumber() {
    func error(_ text: String) -> Htpasswd.ParseError? {
        do throws(Htpasswd.ParseError) {
            _ = try Htpasswd(parsing: text)
            return nil
        } catch {
            return error
        }
    }
    let good = "bob:$5$saltsalt$iCmbmY9.v/oQLhejWTBIA.UqB2KOfoXGbBRqF/c1zA0"
    #expect(error(good) == nil)
    #expect(error("# header\n\nbob\n")?.line == 3)
    #expect(error("\(good)\nann:$apr1$abc$defghijklmnopqrstuvwx1")?.line == 2)
    #expect(error("ann:$apr1$abc$defghijklmnopqrstuvwx1")?.message.contains("MD5") == true)
    #expect(error("ann:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=")?.message.contains("{SHA}") == true)
    #expect(error("ann:plaintext")?.message.contains("unsupported") == true)
    #expect(error("ann:abJnggxhB/yWI")?.line == 1)  // DES crypt
    #expect(error("\(good)\n\(good)")?.message == "user bob is listed twice")
    #expect(error(":\(good.dropFirst(4))")?.line == 1)
    #expect(error("b b:\(good.dropFirst(4))")?.line == 1)
    #expect(error("bob:$2b$03$" + String(repeating: "a", count: 53)) != nil)  // cost below 4
    #expect(error("bob:$2b$10$" + String(repeating: "a", count: 52)) != nil)  // short
    #expect(error("bob:$2b$10$" + String(repeating: "!", count: 53)) != nil)  // alphabet
    #expect(error("bob:$5$saltsalt$iCmbmY9.v/oQLhejWTBIA.UqB2KOfoXGbBRqF/c1zA") != nil)  // short
    #expect(error("bob:$5$rounds=10$salt$" + String(repeating: "a", count: 43)) != nil)  // too few rounds
    #expect(error("bob:$6$saltsalt$" + String(repeating: "a", count: 43)) != nil)  // $6$ is 86
    #expect(error("bob:$6$" + String(repeating: "s", count: 17) + "$" + String(repeating: "a", count: 86)) != nil)
}

@Test func basicCredentialsAreParsedStrictly() {
    // "Aladdin:open sesame" (RFC 7617 §2).
    #expect(BasicCredentials.parse(headerValue: "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
        == BasicCredentials(user: "Aladdin", password: "open sesame"))
    #expect(BasicCredentials.parse(headerValue: "basic  QWxhZGRpbjpvcGVuIHNlc2FtZQ==")?.user == "Aladdin")
    // "a:b:c": the password keeps later colons. "a:" has an empty password.
    #expect(BasicCredentials.parse(headerValue: "Basic YTpiOmM=")?.password == "b:c")
    #expect(BasicCredentials.parse(headerValue: "Basic YTo=")?.password == "")
    // "test:123£" in UTF-8 (RFC 7617 §2.1).
    #expect(BasicCredentials.parse(headerValue: "Basic dGVzdDoxMjPCow==")?.password == "123£")
    for bad in [
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ",  // padding missing
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=",  // padding short
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZR==",  // non-zero trailing bits
        "Basic QWxhZGRpbjpvcGVu_HNlc2FtZQ==",  // URL alphabet
        "Basic QWxh ZGRpbjpvcGVuIHNlc2FtZQ==",  // space inside
        "Basic QWxhZGRpbg==",  // "Aladdin": no colon
        "Basic OnBhc3M=",  // ":pass": empty user
        "Basic YTpi/w==",  // "a:b\u{FF}": not UTF-8
        "Basic YTpiCg==",  // "a:b\n": control character
        "Basic ",
        "Basic",
        "Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        "BasicQWxhZGRpbjpvcGVuIHNlc2FtZQ==",
    ] {
        #expect(BasicCredentials.parse(headerValue: bad[...]) == nil, "\(bad)")
    }
    #expect(BasicCredentials.challenge(realm: #"staff "only""#) == #"Basic realm="staff \"only\"", charset="UTF-8""#)
}

@Test func verifyTakesParsedCredentials() {
    let header = "Basic " + "carol:carol-secret".data(using: .utf8)!.base64EncodedString()
    let credentials = BasicCredentials.parse(headerValue: header[...])!
    #expect(file.verify(credentials))
}
