// SPDX-License-Identifier: Apache-2.0
@testable import JesterCache
import Testing

/// Cache-Control parsing (RFC 9111 §5.2, RFC 5861, RFC 8246): syntax, both argument forms, duplicates and
/// invalid values, for responses and requests.
@Suite struct CacheControlTests {
    private func response(_ values: String...) -> ResponseCacheControl {
        ResponseCacheControl(CacheFields(values.map { CacheFields.Field("Cache-Control", $0) }))
    }

    private func request(_ values: String...) -> RequestCacheControl {
        RequestCacheControl(CacheFields(values.map { CacheFields.Field("cache-control", $0) }))
    }

    @Test func directivesAreTokensWithTokenOrQuotedArguments() {
        let fields: CacheFields = [("Cache-Control", #"Max-Age=60, private="Set-Cookie, X-A", no-store"#)]
        #expect(
            CacheDirective.parse(fields) == [
                CacheDirective("max-age", .value("60")), CacheDirective("private", .value("Set-Cookie, X-A")),
                CacheDirective("no-store"),
            ])
        #expect(CacheDirective.parse(member: #"a="x\"y""#) == CacheDirective("a", .value(#"x"y"#)))
        #expect(CacheDirective.parse(member: "a=") == CacheDirective("a", .malformed))
        #expect(CacheDirective.parse(member: #"a="open"#) == CacheDirective("a", .malformed))
        #expect(CacheDirective.parse(member: #"a="x"y"#) == CacheDirective("a", .malformed))
        #expect(CacheDirective.parse(member: "a=6 0") == CacheDirective("a", .malformed))
        #expect(CacheDirective.parse(member: "a b") == nil)
        #expect(CacheDirective.parse(member: "=5") == nil)
        #expect(CacheDirective.parse(member: "max-age = 5") == CacheDirective("max-age", .value("5")))
    }

    /// (field value, max-age, s-maxage): RFC 9111 §4.2.1 and §1.2.2.
    @Test(arguments: [
        ("max-age=60", DeltaSeconds.seconds(60), DeltaSeconds.absent),
        (#"max-age="60""#, .seconds(60), .absent),  // §5.2: recipients accept the quoted form
        ("MAX-AGE=60", .seconds(60), .absent),
        ("max-age=0", .seconds(0), .absent),
        ("max-age=60, max-age=60", .seconds(60), .absent),  // a copied line: the same value
        ("max-age=60, max-age=120", .invalid, .absent),  // §4.2.1: conflicting, so stale
        ("max-age", .invalid, .absent),
        ("max-age=", .invalid, .absent),
        ("max-age=-1", .invalid, .absent),
        ("max-age=1.5", .invalid, .absent),
        ("max-age=abc", .invalid, .absent),
        ("max-age=99999999999999999999999", .seconds(2_147_483_648), .absent),  // §1.2.2: 2^31
        ("s-maxage=10, max-age=60", .seconds(60), .seconds(10)),
        ("s-maxage=x", .absent, .invalid),
        ("public", .absent, .absent),
    ])
    func lifetimeDirectives(value: String, maxAge: DeltaSeconds, sharedMaxAge: DeltaSeconds) {
        let control = response(value)
        #expect(control.maxAge == maxAge)
        #expect(control.sharedMaxAge == sharedMaxAge)
    }

    @Test func duplicatesAcrossLinesCountLikeOneList() {
        #expect(response("max-age=60", "max-age=120").maxAge == .invalid)
        #expect(response("max-age=60", "no-store").noStore)
        #expect(response("max-age=60", "no-store").maxAge == .seconds(60))
    }

    @Test func booleanDirectivesAndTheirStrayArguments() {
        let all = response("public, must-revalidate, proxy-revalidate, no-transform, must-understand, immutable")
        #expect(all.isPublic && all.mustRevalidate && all.proxyRevalidate && all.noTransform)
        #expect(all.mustUnderstand && all.immutable && !all.noStore)
        // Restrictive ones are honoured with an argument; permissive ones are not.
        #expect(response("no-store=1").noStore)
        #expect(response("must-revalidate=yes").mustRevalidate)
        #expect(!response("public=no").isPublic)
        #expect(!response("immutable=0").immutable)
        // Unknown directives are ignored (§5.2.3).
        var expected = ResponseCacheControl()
        expected.maxAge = .seconds(5)
        #expect(response(#"community="UCI", max-age=5"#) == expected)
    }

    @Test func noCacheAndPrivateWithAndWithoutFieldNames() {
        #expect(response("no-cache").noCache == .whole)
        #expect(response(#"no-cache="Set-Cookie""#).noCache == .fields(["set-cookie"]))
        #expect(response("no-cache=Set-Cookie").noCache == .fields(["set-cookie"]))  // token form accepted
        #expect(response(#"no-cache="Set-Cookie, X-Token""#).noCache == .fields(["set-cookie", "x-token"]))
        #expect(response(#"no-cache="A", no-cache="B, a""#).noCache == .fields(["a", "b"]))
        // An unqualified one anywhere wins: the most restrictive (§4.2.1).
        #expect(response(#"no-cache="A""#, "no-cache").noCache == .whole)
        #expect(response(#"no-cache="A"#).noCache == .whole)  // malformed argument
        #expect(response(#"private="Set-Cookie""#).privateScope == .fields(["set-cookie"]))
        #expect(response("private").privateScope == .whole)
        #expect(response("max-age=5").privateScope == .absent)
        #expect(response(#"no-cache="""#).noCache == .fields([]))
    }

    @Test func staleExtensionsAndWhatForbidsStale() {
        let control = response("max-age=60, stale-while-revalidate=30, stale-if-error=600")
        #expect(control.staleWhileRevalidate == .seconds(30) && control.staleIfError == .seconds(600))
        #expect(!control.forbidsStale)
        // An invalid allowance grants nothing.
        #expect(response("stale-while-revalidate=x").staleWhileRevalidate == .absent)
        #expect(response("stale-if-error").staleIfError == .absent)
        #expect(response("must-revalidate").forbidsStale)
        #expect(response("proxy-revalidate").forbidsStale)
        #expect(response("s-maxage=5").forbidsStale)  // §5.2.2.10
    }

    @Test func requestDirectives() {
        let control = request("max-age=5, min-fresh=10, no-cache, no-store, no-transform, only-if-cached")
        #expect(control.maxAge == 5 && control.minFresh == 10)
        #expect(control.noCache && control.noStore && control.noTransform && control.onlyIfCached)
        #expect(request("max-stale").maxStale == .any)
        #expect(request("max-stale=30").maxStale == .seconds(30))
        #expect(request(#"max-stale="30""#).maxStale == .seconds(30))
        #expect(request("max-stale=x").maxStale == .absent)  // unreadable: no staleness accepted
        #expect(request("max-age=x").maxAge == 0)  // unreadable: the strictest reading
        #expect(request("min-fresh=x").minFresh == nil)
        #expect(request("stale-if-error=60").staleIfError == 60)
        #expect(request().maxAge == nil && !request().noCache && request().maxStale == .absent)
        // Pragma is deprecated (RFC 9111 §5.4) and not read.
        #expect(RequestCacheControl([("Pragma", "no-cache")]) == RequestCacheControl())
    }

    @Test func listsSplitOutsideQuotesOnly() {
        #expect(CacheFields.splitList(#" a , "b,c" ,, d=1 "#) == ["a", #""b,c""#, "d=1"])
        #expect(CacheFields.splitList(#"x="a\",b", y"#) == [#"x="a\",b""#, "y"])
        #expect(CacheFields.splitList("") == [])
    }
}
