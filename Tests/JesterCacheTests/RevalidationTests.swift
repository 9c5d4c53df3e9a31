// SPDX-License-Identifier: Apache-2.0
@testable import JesterCache
import Testing

/// After the upstream answered: the 304 merge (RFC 9111 §4.3.3, §4.3.4, §3.2), stale-if-error (RFC 5861 §4),
/// storing and replacing, invalidation (§4.4), and the Cache-Status field (RFC 9211).
@Suite struct RevalidationTests {
    static let stored: Int64 = 1_796_598_000
    static let request = LookupTests.request()

    static func plan(_ request: CacheRequest = RevalidationTests.request, policy: CachePolicy = .init())
        -> CacheRequestPlan
    {
        guard case .cacheable(let plan) = request.classify(policy: policy) else { preconditionFailure() }
        return plan
    }

    static func decide(
        _ stored: StoredResponse?, _ outcome: UpstreamOutcome, forward: ForwardReason = .stale, at offset: Int64,
        request: CacheRequest = RevalidationTests.request, policy: CachePolicy = .init()
    ) -> UpstreamDecision {
        CacheRevalidation.decide(
            request: request, plan: plan(request, policy: policy), stored: stored, forward: forward,
            outcome: outcome, now: Self.stored + offset, policy: policy)
    }

    static func response(_ status: Int, _ fields: CacheFields, at offset: Int64) -> UpstreamOutcome {
        .response(
            status: status, fields: fields, requestTime: stored + offset, responseTime: stored + offset,
            contentLength: nil)
    }

    static let original: CacheFields = [
        ("Cache-Control", "max-age=60"), ("ETag", #""v1""#), ("Content-Type", "text/html"),
        ("Content-Length", "5"), ("X-Version", "1"), ("X-Multi", "a"), ("X-Multi", "b"),
    ]

    @Test func aMatching304RefreshesTheStoredResponse() {
        let entry = LookupTests.entry(Self.original)
        let notModified: CacheFields = [
            ("ETag", #""v1""#), ("Cache-Control", "max-age=120"), ("X-Version", "2"), ("X-Multi", "c"),
            ("Content-Length", "0"), ("Content-Type", "text/plain"), ("Connection", "close"),
        ]
        guard case .serveStored(let served, .store(let refreshed)) = Self.decide(
            entry, Self.response(304, notModified, at: 100), at: 100)
        else {
            Issue.record("not refreshed")
            return
        }
        // §3.2: the 304's fields replace the stored ones, except those the stored body depends on.
        #expect(refreshed.fields.first("Cache-Control") == "max-age=120")
        #expect(refreshed.fields.first("X-Version") == "2")
        #expect(refreshed.fields.values("X-Multi") == ["c"])
        #expect(refreshed.fields.first("Content-Length") == "5")
        #expect(refreshed.fields.first("Content-Type") == "text/html")
        #expect(!refreshed.fields.contains("Connection"))
        #expect(refreshed.status == 200 && refreshed.responseTime == Self.stored + 100)
        #expect(refreshed.freshness.lifetime == 120 && refreshed.freshness.isFresh(at: Self.stored + 150))
        #expect(served.fields.first("Age") == "0")
        #expect(served.status.fieldValue == "jester; fwd=stale; fwd-status=304; ttl=120; stored")
        #expect(!served.notModified)
    }

    /// §4.3.4's selection: (stored ETag, 304's validators, selected).
    @Test(arguments: [
        (#""v1""#, [("ETag", #""v1""#)], true),
        (#""v1""#, [("ETag", #""v2""#)], false),
        (#"W/"v1""#, [("ETag", #""v1""#)], false),  // a strong validator must match strongly
        (#"W/"v1""#, [("ETag", #"W/"v1""#)], true),  // a weak one weakly
        (#""v1""#, [("ETag", #"W/"v1""#)], true),
        (#""v1""#, [("ETag", "garbage")], false),
        (#""v1""#, [("ETag", #""v1""#), ("ETag", #""v2""#)], false),
        (#""v1""#, [("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")], true),
        (#""v1""#, [("Last-Modified", "Sun, 06 Nov 1994 08:49:38 GMT")], false),
        (#""v1""#, [], true),  // a bare 304 to the cache's own conditional
    ] as [(String, CacheFields, Bool)])
    func whichStoredResponseA304Selects(storedTag: String, fields: CacheFields, selected: Bool) {
        let entry = LookupTests.entry(
            [("Cache-Control", "max-age=60"), ("ETag", storedTag), ("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")])
        #expect(CacheRevalidation.selects(notModified: fields, entry) == selected)
        let decision = Self.decide(entry, Self.response(304, fields, at: 100), at: 100)
        if selected {
            guard case .serveStored = decision else {
                Issue.record("not served: \(decision)")
                return
            }
        } else {
            #expect(decision == .refetch(.stale))
        }
    }

    @Test func a304ThatNowForbidsStoringServesOnceAndRemoves() {
        let entry = LookupTests.entry(Self.original)
        let decision = Self.decide(entry, Self.response(304, [("Cache-Control", "no-store")], at: 100), at: 100)
        guard case .serveStored(let served, .remove(.noStore)) = decision else {
            Issue.record("not removed: \(decision)")
            return
        }
        #expect(served.fields.first("Cache-Control") == "no-store")
        #expect(served.status.detail == "no-store" && !served.status.stored)
        // A client's own no-store leaves the entry as it was.
        let noStore = LookupTests.request([("Cache-Control", "no-store")])
        guard case .serveStored(_, .keep) = Self.decide(
            entry, Self.response(304, [("ETag", #""v1""#)], at: 100), at: 100, request: noStore)
        else {
            Issue.record("not kept")
            return
        }
    }

    @Test func aHEADRefreshesTheStoredGETAndTheClientsConditionalIsAnsweredOnTheMergedResponse() {
        let entry = LookupTests.entry(Self.original)
        let head = LookupTests.request([("If-None-Match", #""v1""#)], method: "HEAD")
        guard case .serveStored(let served, .store) = Self.decide(
            entry, Self.response(304, [("ETag", #""v1""#)], at: 100), at: 100, request: head)
        else {
            Issue.record("not refreshed")
            return
        }
        #expect(served.notModified)
    }

    @Test func aFullResponseReplacesOrRemovesTheStaleOne() {
        let entry = LookupTests.entry(Self.original)
        let fresh: CacheFields = [("Cache-Control", "max-age=30"), ("ETag", #""v2""#)]
        guard case .forward(false, let status, .store(let replacement)) = Self.decide(
            entry, Self.response(200, fresh, at: 100), at: 100)
        else {
            Issue.record("not stored")
            return
        }
        #expect(replacement.entityTag == EntityTag(#""v2""#))
        #expect(status.fieldValue == "jester; fwd=stale; ttl=30; stored")
        // §4.3.3: a full response that may not be stored makes the old one unsuitable.
        #expect(
            Self.decide(entry, Self.response(200, [("Cache-Control", "private")], at: 100), at: 100)
                == .forward(notModified: false, status: Self.status(.stale, detail: "private"),
                    entry: .remove(.private)))
        // A HEAD's 200 is not stored as the GET, and says nothing against the stored one.
        let head = LookupTests.request(method: "HEAD")
        #expect(
            Self.decide(entry, Self.response(200, fresh, at: 100), at: 100, request: head)
                == .forward(notModified: false, status: Self.status(.stale, detail: "method"), entry: .keep))
        // A miss that is not stored changes nothing; neither does another variant's response.
        #expect(
            Self.decide(nil, Self.response(200, [("Cache-Control", "no-store")], at: 0), forward: .uriMiss, at: 0)
                == .forward(notModified: false, status: Self.status(.uriMiss, detail: "no-store"), entry: .keep))
        #expect(
            Self.decide(entry, Self.response(200, [("Cache-Control", "no-store")], at: 0), forward: .varyMiss, at: 0)
                == .forward(notModified: false, status: Self.status(.varyMiss, detail: "no-store"), entry: .keep))
    }

    @Test func aMissIsStoredAndTheClientsConditionalAnsweredFromIt() {
        let request = LookupTests.request([("If-None-Match", #""v1""#)])
        guard case .forward(true, let status, .store) = Self.decide(
            nil, Self.response(200, Self.original, at: 0), forward: .uriMiss, at: 0, request: request)
        else {
            Issue.record("not stored")
            return
        }
        #expect(status.fieldValue == "jester; fwd=uri-miss; ttl=60; stored")
        // An unexpected 304 to an unconditional fetch is passed on, not stored.
        guard case .forward(_, let passed, .keep) = Self.decide(
            nil, Self.response(304, [], at: 0), forward: .uriMiss, at: 0)
        else {
            Issue.record("stored a 304")
            return
        }
        #expect(passed.detail == "not-modified")
    }

    /// stale-if-error: (response Cache-Control, request Cache-Control, seconds after storing, outcome, served).
    @Test(arguments: [
        ("max-age=60, stale-if-error=100", "", Int64(150), UpstreamOutcome.failed, true),
        ("max-age=60, stale-if-error=100", "", 160, .failed, true),
        ("max-age=60, stale-if-error=100", "", 161, .failed, false),
        ("max-age=60, stale-if-error=100", "", 150, RevalidationTests.response(503, [], at: 150), true),
        ("max-age=60, stale-if-error=100", "", 150, RevalidationTests.response(500, [], at: 150), true),
        ("max-age=60, stale-if-error=100", "", 150, RevalidationTests.response(501, [], at: 150), false),
        ("max-age=60, stale-if-error=100", "", 150, RevalidationTests.response(404, [], at: 150), false),
        ("max-age=60", "", 61, .failed, false),
        ("max-age=60", "stale-if-error=10", 70, .failed, true),  // the client's own allowance
        ("max-age=60", "stale-if-error=10", 71, .failed, false),
        ("max-age=60, stale-if-error=100, must-revalidate", "", 61, .failed, false),
        ("max-age=60, stale-if-error=100, must-revalidate", "stale-if-error=100", 61, .failed, false),
        ("max-age=60, no-cache, stale-if-error=100", "", 10, .failed, false),
        ("max-age=60", "no-cache", 10, .failed, true),  // still fresh: better than an error
    ] as [(String, String, Int64, UpstreamOutcome, Bool)])
    func staleIfError(response: String, request: String, offset: Int64, outcome: UpstreamOutcome, served: Bool) {
        let entry = LookupTests.entry([("Cache-Control", response), ("ETag", #""v1""#)])
        let client = LookupTests.request(request.isEmpty ? [] : [("Cache-Control", request)])
        let decision = Self.decide(entry, outcome, at: offset, request: client)
        if case .serveStored(let stale, .keep) = decision {
            #expect(served)
            #expect(stale.status.detail == "stale-if-error")
        } else {
            #expect(!served, "\(decision)")
        }
    }

    @Test func theRoutesStaleIfErrorAndTheFailureStatus() {
        var policy = CachePolicy()
        policy.staleIfError = 3600
        let entry = LookupTests.entry([("Cache-Control", "max-age=60")], policy: policy)
        guard case .serveStored(let served, .keep) = Self.decide(
            entry, Self.response(502, [], at: 1000), at: 1000, policy: policy)
        else {
            Issue.record("not served stale")
            return
        }
        #expect(served.status.fieldValue == "jester; fwd=stale; fwd-status=502; ttl=-940; detail=stale-if-error")
        #expect(served.fields.first("Age") == "1000")
        // Nothing stored: the failure is the I/O layer's to answer.
        #expect(Self.decide(nil, .failed, forward: .uriMiss, at: 0) == .fail(Self.status(.uriMiss,
            detail: "upstream-failed")))
        // A vary-miss's failure is not answered with another variant.
        #expect(Self.decide(entry, .failed, forward: .varyMiss, at: 70, policy: policy) == .fail(Self.status(
            .varyMiss, detail: "upstream-failed")))
    }

    static func status(_ forward: ForwardReason, detail: String?) -> CacheStatus {
        var status = CacheStatus.forward(forward, name: "jester")
        status.detail = detail
        return status
    }

    // MARK: §4.4

    @Test func unsafeMethodsInvalidateTheTargetAndSameOriginLocations() {
        #expect(CacheInvalidation.invalidates(method: "POST", status: 201))
        #expect(CacheInvalidation.invalidates(method: "DELETE", status: 204))
        #expect(CacheInvalidation.invalidates(method: "PUT", status: 302))
        #expect(!CacheInvalidation.invalidates(method: "POST", status: 500))
        #expect(!CacheInvalidation.invalidates(method: "POST", status: 404))
        #expect(!CacheInvalidation.invalidates(method: "GET", status: 200))
        let post = CacheRequest(
            method: "POST", scheme: "https", authority: "Example.com:443", target: "/items?x=1", fields: [])
        let keys = CacheInvalidation.keys(
            request: post,
            responseFields: [("Location", "/items/7"), ("Content-Location", "https://EXAMPLE.com/items/7?v")],
            policy: .init())
        #expect(keys.map(\.text) == [
            "GET https://example.com/items?x=1", "GET https://example.com/items/7",
            "GET https://example.com/items/7?v",
        ])
        // Another origin's entries are never touched.
        for location in ["https://other.example/items", "//other.example/x", "http://example.com/items/7"] {
            let only = CacheInvalidation.keys(request: post, responseFields: [("Location", location)], policy: .init())
            #expect(only.count == 1, "\(location)")
        }
    }

    // MARK: RFC 9211

    @Test func cacheStatusFieldValues() {
        #expect(CacheStatus.hit(name: "jester", timeToLive: 376).fieldValue == "jester; hit; ttl=376")
        var miss = CacheStatus.forward(.uriMiss, name: "jester")
        miss.stored = true
        miss.collapsed = true
        #expect(miss.fieldValue == "jester; fwd=uri-miss; stored; collapsed")
        var odd = CacheStatus.forward(.bypass, name: "edge cache")
        odd.detail = #"say "hi"\é"#
        #expect(odd.fieldValue == #""edge cache"; fwd=bypass; detail="say \"hi\"\\??""#)
        #expect(CacheStatus.item("Example-Cache/1:a") == "Example-Cache/1:a")
        #expect(CacheStatus.item("1abc") == "\"1abc\"")
        #expect(CacheStatus.item("") == "\"\"")
    }
}
