// SPDX-License-Identifier: Apache-2.0
@testable import JesterCache
import Testing

/// The lookup decision (RFC 9111 §4, §4.2.4, §5.2.1; RFC 5861 §3) and the client's own conditionals (§4.3.2).
@Suite struct LookupTests {
    static let stored: Int64 = 1_796_598_000

    static func request(_ fields: CacheFields = [], method: String = "GET") -> CacheRequest {
        CacheRequest(method: method, scheme: "https", authority: "example.com", target: "/a", fields: fields)
    }

    /// A response stored at `stored` for a plain GET of /a.
    static func entry(
        _ fields: CacheFields, request: CacheRequest = LookupTests.request(), policy: CachePolicy = .init()
    ) -> StoredResponse {
        guard case .cacheable(let plan) = request.classify(policy: policy),
            case .store(let response) = StoreDecision.decide(
                request: request, plan: plan, status: 200, fields: fields, requestTime: stored, responseTime: stored,
                policy: policy)
        else { preconditionFailure("not stored") }
        return response
    }

    static func lookup(
        _ request: CacheRequest, _ entry: StoredResponse?, at offset: Int64, primaryFound: Bool = false,
        policy: CachePolicy = .init()
    ) -> LookupDecision {
        guard case .cacheable(let plan) = request.classify(policy: policy) else { preconditionFailure() }
        return CacheLookup.decide(
            request: request, plan: plan, stored: entry, primaryFound: primaryFound, now: stored + offset,
            policy: policy)
    }

    /// A compact form of a decision for tables: "serve", "serve+revalidate", "revalidate:<fwd>", "fetch:<fwd>",
    /// "504".
    static func summary(_ decision: LookupDecision) -> String {
        switch decision {
        case .serve: return "serve"
        case .serveAndRevalidate: return "serve+revalidate"
        case .revalidate(_, let forward): return "revalidate:\(forward.rawValue)"
        case .fetch(let forward): return "fetch:\(forward.rawValue)"
        case .gatewayTimeout: return "504"
        }
    }

    /// (response Cache-Control, request Cache-Control or "", seconds after storing, expected)
    @Test(arguments: [
        ("max-age=60", "", Int64(0), "serve"),
        ("max-age=60", "", 59, "serve"),
        ("max-age=60", "", 60, "revalidate:stale"),
        ("max-age=60", "", 6000, "revalidate:stale"),
        // Client directives (§5.2.1).
        ("max-age=60", "no-cache", 10, "revalidate:request"),
        ("max-age=60", "max-age=5", 10, "revalidate:request"),
        ("max-age=60", "max-age=10", 10, "serve"),
        ("max-age=60", "min-fresh=30", 40, "revalidate:request"),
        ("max-age=60", "min-fresh=30", 29, "serve"),
        ("max-age=60", "max-stale", 6000, "serve"),
        ("max-age=60", "max-stale=10", 69, "serve"),
        ("max-age=60", "max-stale=10", 71, "revalidate:stale"),
        ("max-age=60, must-revalidate", "max-stale", 61, "revalidate:stale"),  // §4.2.4
        ("s-maxage=60", "max-stale", 61, "revalidate:stale"),
        ("max-age=60, proxy-revalidate", "max-stale", 61, "revalidate:stale"),
        ("max-age=60", "only-if-cached", 10, "serve"),
        ("max-age=60", "only-if-cached", 61, "504"),
        ("max-age=60", "only-if-cached, max-stale", 61, "serve"),
        // RFC 8246: immutable and fresh, a reload's no-cache is answered from the cache.
        ("max-age=60, immutable", "no-cache", 10, "serve"),
        ("max-age=60, immutable", "no-cache", 61, "revalidate:request"),
        // no-cache in the response: validated on every use (§5.2.2.4).
        ("max-age=60, no-cache", "", 0, "revalidate:stale"),
        (#"max-age=60, no-cache="X-A""#, "", 0, "serve"),
        // stale-while-revalidate (RFC 5861 §3).
        ("max-age=60, stale-while-revalidate=30", "", 75, "serve+revalidate"),
        ("max-age=60, stale-while-revalidate=30", "", 90, "serve+revalidate"),
        ("max-age=60, stale-while-revalidate=30", "", 91, "revalidate:stale"),
        ("max-age=60, stale-while-revalidate=30", "max-age=70", 75, "revalidate:request"),
        ("max-age=60, stale-while-revalidate=30", "only-if-cached", 75, "504"),
        ("max-age=60, stale-while-revalidate=30, must-revalidate", "", 75, "revalidate:stale"),
    ])
    func decisions(response: String, request: String, offset: Int64, expected: String) {
        var fields: CacheFields = [("Cache-Control", response), ("ETag", #""v1""#)]
        fields.append("Date", HTTPDate.format(Self.stored))
        let entry = Self.entry(fields)
        let requestFields: CacheFields = request.isEmpty ? [] : [("Cache-Control", request)]
        #expect(Self.summary(Self.lookup(Self.request(requestFields), entry, at: offset)) == expected)
    }

    @Test func aRouteMayIgnoreTheClientsRevalidationDemands() {
        var policy = CachePolicy()
        policy.honoursClientRevalidation = false
        let entry = Self.entry([("Cache-Control", "max-age=60, stale-while-revalidate=30")])
        for demand in ["no-cache", "max-age=0", "min-fresh=100"] {
            let request = Self.request([("Cache-Control", demand)])
            #expect(Self.summary(Self.lookup(request, entry, at: 10, policy: policy)) == "serve")
            #expect(Self.summary(Self.lookup(request, entry, at: 70, policy: policy)) == "serve+revalidate")
        }
    }

    @Test func missesTellTheURIFromTheVariant() {
        #expect(Self.summary(Self.lookup(Self.request(), nil, at: 0)) == "fetch:uri-miss")
        #expect(Self.summary(Self.lookup(Self.request(), nil, at: 0, primaryFound: true)) == "fetch:vary-miss")
        let gzip = Self.request([("Accept-Encoding", "gzip")])
        let entry = Self.entry([("Cache-Control", "max-age=60"), ("Vary", "Accept-Encoding")], request: gzip)
        #expect(Self.summary(Self.lookup(gzip, entry, at: 1)) == "serve")
        #expect(Self.summary(Self.lookup(Self.request([("Accept-Encoding", "br")]), entry, at: 1)) == "fetch:vary-miss")
        #expect(Self.summary(Self.lookup(Self.request(), entry, at: 1)) == "fetch:vary-miss")
        // An entry found under the hash but for another key (a collision) is a miss, never served.
        let other = CacheRequest(method: "GET", scheme: "https", authority: "example.com", target: "/b", fields: [])
        #expect(Self.summary(Self.lookup(other, entry, at: 1)) == "fetch:miss")
        // only-if-cached turns every miss into 504.
        #expect(Self.summary(Self.lookup(Self.request([("Cache-Control", "only-if-cached")]), nil, at: 0)) == "504")
    }

    @Test func requestsWithCredentialsGoUpstreamAsBypass() {
        let entry = Self.entry([("Cache-Control", "max-age=60")])
        let authorized = Self.request([("Authorization", "Basic eDp5")])
        #expect(Self.summary(Self.lookup(authorized, entry, at: 1)) == "fetch:bypass")
    }

    @Test func aHitCarriesAgeAndCacheStatus() {
        let entry = Self.entry([("Cache-Control", "max-age=60"), ("Date", HTTPDate.format(Self.stored - 5))])
        guard case .serve(let served) = Self.lookup(Self.request(), entry, at: 10) else {
            Issue.record("not served")
            return
        }
        #expect(served.fields.first("Age") == "15")
        #expect(served.status.fieldValue == "jester; hit; ttl=45")
        #expect(!served.notModified)
        guard case .serve(let stale) = Self.lookup(Self.request([("Cache-Control", "max-stale")]), entry, at: 100)
        else {
            Issue.record("not served")
            return
        }
        #expect(stale.status.fieldValue == "jester; hit; ttl=-45; detail=max-stale")
    }

    @Test func conditionalRequestsCarryTheStoredValidatorsInPlaceOfTheClients() {
        let lastModified = "Sun, 06 Nov 1994 08:49:37 GMT"
        let entry = Self.entry([("Cache-Control", "max-age=60"), ("ETag", #"W/"v1""#), ("Last-Modified", lastModified)])
        let request = Self.request([("If-None-Match", #""client""#)])
        guard case .revalidate(let conditional, .stale) = Self.lookup(request, entry, at: 100) else {
            Issue.record("not revalidated")
            return
        }
        #expect(conditional.add == [("If-None-Match", #"W/"v1""#), ("If-Modified-Since", lastModified)])
        #expect(conditional.remove.contains("if-none-match") && conditional.remove.contains("if-modified-since"))
        // Without validators the revalidation is an unconditional request.
        let bare = Self.entry([("Cache-Control", "max-age=60, stale-if-error=600")])
        guard case .revalidate(let none, _) = Self.lookup(Self.request(), bare, at: 100) else {
            Issue.record("not revalidated")
            return
        }
        #expect(none.add.fields.isEmpty)
        guard case .serveAndRevalidate(let served, let background) = Self.lookup(
            Self.request(), Self.entry([("Cache-Control", "max-age=60, stale-while-revalidate=60"), ("ETag", #""e""#)]),
            at: 70)
        else {
            Issue.record("not served")
            return
        }
        #expect(background.add.first("If-None-Match") == #""e""#)
        #expect(served.status.fieldValue == "jester; hit; ttl=-10; detail=stale-while-revalidate")
    }

    /// §4.3.2 with RFC 9110 §13.2.2's order: If-None-Match first, If-Modified-Since only without it.
    @Test(arguments: [
        ([("If-None-Match", #""v1""#)], true),
        ([("If-None-Match", #"W/"v1""#)], true),  // weak comparison
        ([("If-None-Match", #""v0", "v1""#)], true),
        ([("If-None-Match", "*")], true),
        ([("If-None-Match", #""v2""#)], false),
        ([("If-None-Match", #""v2""#), ("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT")], false),
        ([("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT")], true),
        ([("If-Modified-Since", "Sun, 06 Nov 1994 08:49:36 GMT")], false),
        ([("If-Modified-Since", "Mon, 07 Nov 1994 00:00:00 GMT")], true),
        ([("If-Modified-Since", "yesterday")], false),
        ([], false),
    ] as [(CacheFields, Bool)])
    func theClientsOwnConditional(fields: CacheFields, notModified: Bool) {
        let entry = Self.entry(
            [("Cache-Control", "max-age=60"), ("ETag", #""v1""#), ("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")])
        #expect(ClientConditional.notModified(Self.request(fields), entry) == notModified)
        guard case .serve(let served) = Self.lookup(Self.request(fields), entry, at: 1) else {
            Issue.record("not served")
            return
        }
        #expect(served.notModified == notModified)
        // Never for other methods or statuses.
        #expect(!ClientConditional.notModified(Self.request(fields, method: "POST"), entry))
        #expect(!ClientConditional.notModified(Self.request(fields), status: 404, fields: entry.fields,
            responseTime: Self.stored))
    }

    @Test func ifModifiedSinceFallsBackToDateThenReceipt() {
        let dated = Self.entry([("Cache-Control", "max-age=600"), ("Date", HTTPDate.format(Self.stored - 100))])
        let since = { (offset: Int64) in Self.request([("If-Modified-Since", HTTPDate.format(Self.stored + offset))]) }
        #expect(ClientConditional.notModified(since(-100), dated))
        #expect(!ClientConditional.notModified(since(-101), dated))
        let undated = Self.entry([("Cache-Control", "max-age=60")])
        #expect(ClientConditional.notModified(since(0), undated))
        #expect(!ClientConditional.notModified(since(-1), undated))
    }
}
