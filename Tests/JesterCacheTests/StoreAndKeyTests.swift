// SPDX-License-Identifier: Apache-2.0
@testable import JesterCache
import Testing

/// What may be stored (RFC 9111 §3), what of it, and the keys it is stored under (§2, §4.1), including the
/// unkeyed fields that would let one client poison everyone's entry.
@Suite struct StoreAndKeyTests {
    static let now: Int64 = 1_796_598_000

    static func getRequest(_ target: String = "/a", _ fields: CacheFields = [], method: String = "GET")
        -> CacheRequest
    {
        CacheRequest(method: method, scheme: "https", authority: "example.com", target: target, fields: fields)
    }

    static func plan(_ request: CacheRequest, _ policy: CachePolicy = .init()) -> CacheRequestPlan {
        guard case .cacheable(let plan) = request.classify(policy: policy) else {
            preconditionFailure("not cacheable: \(request)")
        }
        return plan
    }

    static func store(
        _ status: Int, _ fields: CacheFields, request: CacheRequest = getRequest(), policy: CachePolicy = .init(),
        length: Int64? = nil
    ) -> StoreDecision {
        StoreDecision.decide(
            request: request, plan: plan(request, policy), status: status, fields: fields, requestTime: now,
            responseTime: now, contentLength: length, policy: policy)
    }

    static func reason(_ decision: StoreDecision) -> NotStoredReason? {
        if case .doNotStore(let reason) = decision { return reason }
        return nil
    }

    static var authorized: CacheRequest { getRequest("/a", [("Authorization", "Bearer x")]) }
    static var noStoreRequest: CacheRequest { getRequest("/a", [("Cache-Control", "no-store")]) }
    static var head: CacheRequest { getRequest("/a", method: "HEAD") }
    static var withCookies: CachePolicy {
        var policy = CachePolicy()
        policy.setCookie = .storeWithout
        return policy
    }
    static var small: CachePolicy {
        var policy = CachePolicy()
        policy.maxObjectSize = 1000
        return policy
    }

    /// (request, status, response fields, policy, declared length, nil if stored else the reason)
    static let storing: [(CacheRequest, Int, CacheFields, CachePolicy, Int64?, NotStoredReason?)] = [
        (getRequest(), 200, [("Cache-Control", "max-age=60")], .init(), nil, nil),
        (getRequest(), 200, [("Cache-Control", "max-age=60"), ("ETag", #""x""#)], .init(), 10, nil),
        // Cacheable by default with a validator: stored stale, revalidated on use.
        (getRequest(), 200, [("ETag", #""x""#)], .init(), nil, nil),
        (getRequest(), 404, [("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")], .init(), nil, nil),
        // Nothing to go on at all.
        (getRequest(), 200, [], .init(), nil, .noFreshnessInformation),
        (getRequest(), 302, [("ETag", #""x""#)], .init(), nil, .noFreshnessInformation),
        (getRequest(), 302, [("Cache-Control", "max-age=60")], .init(), nil, nil),  // explicit: any final status
        (getRequest(), 200, [("Cache-Control", "max-age=0")], .init(), nil, .staleWithoutValidator),
        (getRequest(), 200, [("Cache-Control", "max-age=0, stale-if-error=60")], .init(), nil, nil),
        (getRequest(), 200, [("Cache-Control", "max-age=abc")], .init(), nil, .staleWithoutValidator),
        (getRequest(), 200, [("Cache-Control", "public")], .init(), nil, .noFreshnessInformation),
        (getRequest(), 200, [("Expires", "0")], .init(), nil, .staleWithoutValidator),
        (getRequest(), 200, [("Expires", "0"), ("ETag", #""x""#)], .init(), nil, nil),
        (getRequest(), 100, [("Cache-Control", "max-age=60")], .init(), nil, .statusNotFinal),
        (getRequest(), 304, [("Cache-Control", "max-age=60")], .init(), nil, .notModified),
        (getRequest(), 206, [("Cache-Control", "max-age=60")], .init(), nil, .partialContent),
        (getRequest(), 200, [("Cache-Control", "max-age=60, no-store")], .init(), nil, .noStore),
        (getRequest(), 200, [("Cache-Control", "max-age=60, private")], .init(), nil, .private),
        (getRequest(), 200, [("Cache-Control", #"max-age=60, private="X-User""#)], .init(), nil, nil),
        // must-understand: a known status overrides no-store (§5.2.2.3); an unknown one is never stored.
        (getRequest(), 200, [("Cache-Control", "max-age=60, must-understand, no-store")], .init(), nil, nil),
        (
            getRequest(), 299, [("Cache-Control", "max-age=60, must-understand, no-store")], .init(), nil,
            .statusNotUnderstood
        ),
        (getRequest(), 200, [("Cache-Control", "max-age=60"), ("Vary", "Accept, *")], .init(), nil, .varyAny),
        (getRequest(), 200, [("Cache-Control", "max-age=60"), ("Set-Cookie", "s=1")], .init(), nil, .setCookie),
        (getRequest(), 200, [("Cache-Control", "max-age=60"), ("Set-Cookie", "s=1")], withCookies, nil, nil),
        // §3.5: credentials.
        (authorized, 200, [("Cache-Control", "max-age=60")], .init(), nil, .authorization),
        (authorized, 200, [("Cache-Control", "max-age=60, public")], .init(), nil, nil),
        (authorized, 200, [("Cache-Control", "s-maxage=60")], .init(), nil, nil),
        (authorized, 200, [("Cache-Control", "max-age=60, must-revalidate")], .init(), nil, nil),
        (authorized, 200, [("Cache-Control", "s-maxage=x")], .init(), nil, .authorization),
        (noStoreRequest, 200, [("Cache-Control", "max-age=60")], .init(), nil, .requestNoStore),
        // A HEAD response has no body to serve a GET with.
        (head, 200, [("Cache-Control", "max-age=60")], .init(), nil, .method),
        (getRequest(), 200, [("Cache-Control", "max-age=60")], small, 1001, .tooLarge),
        (getRequest(), 200, [("Cache-Control", "max-age=60")], small, 1000, nil),
        (getRequest(), 200, [("Cache-Control", "max-age=60")], small, nil, nil),
    ]

    @Test(arguments: StoreAndKeyTests.storing.indices)
    func storability(index: Int) {
        let (request, status, fields, policy, length, expected) = Self.storing[index]
        let decision = Self.store(status, fields, request: request, policy: policy, length: length)
        #expect(Self.reason(decision) == expected)
    }

    @Test func storedFieldsLoseHopByHopAgeAndWhatNoCacheOrPrivateNamed() {
        let fields: CacheFields = [
            ("Cache-Control", #"max-age=60, no-cache="X-Secret", private="X-User""#), ("Connection", "X-Hop"),
            ("X-Hop", "1"), ("Keep-Alive", "timeout=5"), ("Transfer-Encoding", "chunked"), ("Age", "5"),
            ("X-Secret", "s"), ("X-User", "u"), ("Content-Type", "text/plain"), ("Set-Cookie", "a=1"),
        ]
        guard case .store(let stored) = Self.store(200, fields, policy: Self.withCookies) else {
            Issue.record("not stored")
            return
        }
        #expect(stored.fields.fields.map(\.name) == ["Cache-Control", "Content-Type"])
        #expect(stored.freshness.correctedInitialAge == 5)  // the Age counted before it was dropped
        #expect(stored.servedFields(at: Self.now + 10).first("Age") == "15")
    }

    @Test func varyIsRecordedSortedWithTheRequestsNormalizedValues() {
        let request = Self.getRequest("/a", [("Accept-Encoding", "GZIP ,  br;q=0.5"), ("Accept-Language", "en")])
        let fields: CacheFields = [("Cache-Control", "max-age=60"), ("Vary", "accept-encoding, Accept-Language"),
            ("Vary", "X-Missing, Accept-Encoding")]
        guard case .store(let stored) = Self.store(200, fields, request: request) else {
            Issue.record("not stored")
            return
        }
        #expect(stored.varyNames == ["accept-encoding", "accept-language", "x-missing"])
        #expect(stored.varyValues.map(\.value) == ["gzip,br;q=0.5", "en", nil])
        #expect(stored.varyMatches(request.fields))
        #expect(stored.varyMatches([("accept-encoding", "gzip"), ("Accept-Encoding", "br ; q=0.5"),
            ("Accept-Language", "EN")]))
        #expect(!stored.varyMatches([("Accept-Encoding", "gzip"), ("Accept-Language", "en")]))
        #expect(!stored.varyMatches([("Accept-Encoding", "gzip,br;q=0.5"), ("Accept-Language", "en"),
            ("X-Missing", "")]))  // absent and empty differ
        #expect(stored.indexHash(seed: (1, 2)) != stored.key.hash(seed: (1, 2)))
    }

    // MARK: Keys

    @Test func theKeyNormalizesSchemeHostAndDefaultPortOnly() {
        func key(_ scheme: String, _ authority: String, _ target: String, method: String = "GET") -> CacheKey {
            CacheKey(
                request: CacheRequest(method: method, scheme: scheme, authority: authority, target: target, fields: []),
                policy: .init())
        }
        #expect(key("HTTPS", "Example.COM:443", "/a?b=1") == key("https", "example.com", "/a?b=1"))
        #expect(key("http", "example.com:80", "/") == key("http", "example.com", "/"))
        #expect(key("http", "example.com:443", "/") != key("http", "example.com", "/"))
        #expect(key("https", "example.com:8443", "/") != key("https", "example.com", "/"))
        #expect(key("http", "example.com", "/") != key("https", "example.com", "/"))
        #expect(key("https", "example.com", "/A") != key("https", "example.com", "/a"))  // paths are case-sensitive
        #expect(key("https", "example.com", "/%41") != key("https", "example.com", "/A"))  // not decoded
        #expect(key("https", "example.com", "/a?") != key("https", "example.com", "/a"))
        #expect(key("https", "example.com", "/a?x=1&y=2") != key("https", "example.com", "/a?y=2&x=1"))
        #expect(key("https", "example.com", "/a", method: "HEAD") == key("https", "example.com", "/a"))
        #expect(key("https", "example.com", "").path == "/")
        #expect(key("https", "Example.com:443", "/a?b").text == "GET https://example.com/a?b")
    }

    @Test func queryKeyingPolicies() {
        #expect(CacheKey.keyedQuery("utm=1&id=2", .whole) == "utm=1&id=2")
        #expect(CacheKey.keyedQuery("utm=1&id=2", .ignored) == nil)
        #expect(CacheKey.keyedQuery("utm=1&id=2&v=a&id=1", .only(["id", "v"])) == "id=1&id=2&v=a")
        #expect(CacheKey.keyedQuery("utm=1", .only(["id"])) == nil)
        #expect(CacheKey.keyedQuery("id&x=1", .only(["id"])) == "id")
        var policy = CachePolicy()
        policy.queryKey = .only(["id"])
        let a = CacheKey(request: Self.getRequest("/p?id=7&utm_source=x"), policy: policy)
        let b = CacheKey(request: Self.getRequest("/p?utm_source=y&id=7"), policy: policy)
        #expect(a == b && a.hash(seed: (9, 9)) == b.hash(seed: (9, 9)))
        policy.queryKey = .ignored
        let ignored = CacheKey(request: Self.getRequest("/p?z"), policy: policy)
        #expect(ignored == CacheKey(request: Self.getRequest("/p"), policy: policy))
    }

    @Test func keyFieldsAndVaryValuesTellAbsentFromEmpty() {
        var policy = CachePolicy()
        policy.keyFields = ["X-Tenant"]
        let none = CacheKey(request: Self.getRequest("/a"), policy: policy)
        let empty = CacheKey(request: Self.getRequest("/a", [("X-Tenant", "")]), policy: policy)
        let one = CacheKey(request: Self.getRequest("/a", [("x-tenant", "one")]), policy: policy)
        #expect(Set([none.hash(seed: (1, 1)), empty.hash(seed: (1, 1)), one.hash(seed: (1, 1))]).count == 3)
        #expect(one.text == "GET https://example.com/a\nx-tenant: one")
        #expect(VaryValue.names(from: [("Vary", "*")]) == nil)
        #expect(VaryValue.names(from: []) == [])
    }

    // MARK: Requests the cache stays out of, and poisoning

    @Test(arguments: [
        (StoreAndKeyTests.getRequest("/a", method: "POST"), BypassReason.method),
        (StoreAndKeyTests.getRequest("/a", method: "get"), .method),  // methods are case-sensitive
        (CacheRequest(method: "GET", scheme: "https", authority: "h", target: "/", fields: [], hasBody: true),
            .requestBody),
        (StoreAndKeyTests.getRequest("/a", [("Range", "bytes=0-1")]), .range),
        (StoreAndKeyTests.getRequest("/a", [("Upgrade", "websocket")]), .upgrade),
        (StoreAndKeyTests.getRequest("/a", [("If-Match", #""x""#)]), .precondition),
        (StoreAndKeyTests.getRequest("/a", [("Cookie", "session=1")]), .cookie),
    ])
    func bypassedRequests(request: CacheRequest, reason: BypassReason) {
        #expect(request.classify(policy: .init()) == .bypass(reason))
    }

    @Test func requestsWithCredentialsAreNotLookedUpAndCookiesOnlyWhenAllowed() {
        let plan = Self.plan(Self.authorized)
        #expect(!plan.looksUp && plan.mayStore)
        var policy = CachePolicy()
        policy.cachesAuthorizedRequests = true
        policy.cachesRequestsWithCookies = true
        #expect(Self.plan(Self.authorized, policy).looksUp)
        #expect(Self.plan(Self.getRequest("/a", [("Cookie", "a=1")]), policy).looksUp)
        #expect(!Self.plan(Self.noStoreRequest).mayStore)
        var noHead = CachePolicy()
        noHead.methods = ["GET"]
        #expect(Self.head.classify(policy: noHead) == .bypass(.method))
    }

    /// The attack: a request whose unkeyed X-Forwarded-Host makes the origin build links to the attacker's
    /// host; stored under the plain URL's key, every later visitor would get them.
    @Test func anUnkeyedForwardedHostCannotPoisonTheEntry() {
        let clean = Self.getRequest("/home")
        let attack = Self.getRequest("/home", [("X-Forwarded-Host", "evil.example"), ("X-Original-URL", "/admin")])
        // Default: the fields are stripped before the request goes upstream, so the origin never sees them.
        let plan = Self.plan(attack)
        #expect(plan.stripFields == ["x-forwarded-host", "x-original-url"])
        #expect(plan.key == Self.plan(clean).key)
        #expect(Self.plan(clean).stripFields.isEmpty)
        // Bypass instead: the attacker's request neither reads nor writes the entry.
        var bypass = CachePolicy()
        bypass.unkeyedFieldAction = .bypass
        #expect(attack.classify(policy: bypass) == .bypass(.unkeyedField))
        #expect(clean.classify(policy: bypass) != .bypass(.unkeyedField))
        // Keyed: it passes to the origin, and the response lands under a key of its own.
        var keyed = CachePolicy()
        keyed.keyFields = ["x-forwarded-host"]
        let keyedPlan = Self.plan(attack, keyed)
        #expect(keyedPlan.stripFields == ["x-original-url"])
        #expect(keyedPlan.key != Self.plan(clean, keyed).key)
        // What goes upstream, and what lookups and stores then see, is the clean request.
        #expect(attack.stripping(plan.stripFields) == clean)
        // A field outside the list that the origin varies on gets variants of its own, never the clean one.
        let themed = Self.getRequest("/home", [("X-Theme", "evil")])
        guard case .store(let variant) = Self.store(
            200, [("Cache-Control", "max-age=60"), ("Vary", "X-Theme")], request: themed)
        else {
            Issue.record("not stored")
            return
        }
        #expect(!variant.varyMatches(clean.fields))
        #expect(variant.indexHash(seed: (1, 2)) != Self.plan(clean).key.hash(seed: (1, 2)))
    }

    @Test func aMethodOverrideOrABodyCannotPoisonEither() {
        let override = Self.getRequest("/a", [("X-HTTP-Method-Override", "DELETE")])
        #expect(Self.plan(override).stripFields == ["x-http-method-override"])
        // A GET with a body (the body is not in the key).
        let fat = CacheRequest(
            method: "GET", scheme: "https", authority: "example.com", target: "/a", fields: [], hasBody: true)
        #expect(fat.classify(policy: .init()) == .bypass(.requestBody))
        // A HEAD response stored as the GET would serve an empty body to everyone.
        #expect(Self.reason(Self.store(200, [("Cache-Control", "max-age=60")], request: Self.head)) == .method)
    }
}
