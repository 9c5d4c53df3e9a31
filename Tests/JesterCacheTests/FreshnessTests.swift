// SPDX-License-Identifier: Apache-2.0
@testable import JesterCache
import Testing

/// Freshness lifetime (RFC 9111 §4.2.1, §4.2.2) and age (§4.2.3), with times passed in.
@Suite struct FreshnessTests {
    static let received: Int64 = 1_796_598_000
    static func date(_ offset: Int64) -> String { HTTPDate.format(received + offset) }

    static var heuristic: CachePolicy {
        var policy = CachePolicy()
        policy.heuristic = .init(percent: 10, maxLifetime: 86_400)
        return policy
    }

    /// (fields, status, policy, expected lifetime, expected source)
    static let lifetimes: [(CacheFields, Int, CachePolicy, Int64, Freshness.Source)] = [
        ([("Cache-Control", "s-maxage=10, max-age=60"), ("Expires", date(120))], 200, .init(), 10, .sharedMaxAge),
        ([("Cache-Control", "max-age=60"), ("Expires", date(120)), ("Date", date(0))], 200, .init(), 60, .maxAge),
        ([("Expires", date(120)), ("Date", date(0))], 200, .init(), 120, .expires),
        // No Date: the time of receipt stands in (RFC 9110 §6.6.1).
        ([("Expires", date(120))], 200, .init(), 120, .expires),
        // The origin's clock is ahead: Expires minus Date is what counts, not Expires minus now.
        ([("Expires", date(160)), ("Date", date(100))], 200, .init(), 60, .expires),
        ([("Expires", date(-60)), ("Date", date(0))], 200, .init(), 0, .expires),
        // §5.3: an invalid Expires, "0" above all, is in the past.
        ([("Expires", "0")], 200, .init(), 0, .invalid),
        ([("Expires", "tomorrow")], 200, heuristic, 0, .invalid),
        ([("Expires", date(60)), ("Expires", date(120))], 200, .init(), 0, .invalid),
        // A lifetime directive that cannot be read is not skipped in favour of the next.
        ([("Cache-Control", "max-age=abc"), ("Expires", date(120))], 200, .init(), 0, .invalid),
        ([("Cache-Control", "max-age=60, max-age=61")], 200, .init(), 0, .invalid),
        ([("Cache-Control", "s-maxage=x, max-age=60")], 200, .init(), 0, .invalid),
        ([], 200, .init(), 0, .none),
        // Heuristic: only when configured, 10% of (Date - Last-Modified), capped.
        ([("Last-Modified", date(-1000)), ("Date", date(0))], 200, .init(), 0, .none),
        ([("Last-Modified", date(-1000)), ("Date", date(0))], 200, heuristic, 100, .heuristic),
        ([("Last-Modified", date(-10_000_000))], 200, heuristic, 86_400, .heuristic),
        ([("Last-Modified", date(-1000))], 404, heuristic, 100, .heuristic),
        ([("Last-Modified", date(-1000))], 302, heuristic, 0, .none),  // not cacheable by default
        ([("Last-Modified", date(-1000)), ("Cache-Control", "public")], 302, heuristic, 100, .heuristic),
        ([("Last-Modified", date(1000))], 200, heuristic, 0, .heuristic),  // modified in the future
        ([("Last-Modified", "yesterday")], 200, heuristic, 0, .none),
    ]

    @Test(arguments: FreshnessTests.lifetimes.indices)
    func lifetimePrecedence(index: Int) {
        let (fields, status, policy, lifetime, source) = Self.lifetimes[index]
        let freshness = Freshness(
            status: status, fields: fields, requestTime: Self.received, responseTime: Self.received, policy: policy)
        #expect(freshness.lifetime == lifetime)
        #expect(freshness.source == source)
    }

    /// §4.2.3 worked through: request sent at R-2, response at R.
    @Test(arguments: [
        // (Date offset, Age, corrected initial age)
        (Int64(0), String?.none, Int64(2)),  // no apparent age; the response delay
        (-10, "5", 10),  // apparent age 10 beats Age 5 + delay 2
        (-10, "30", 32),  // Age 30 + delay 2 beats the apparent age
        (100, nil, 2),  // a Date in the future gives no negative age
        (0, "abc", 2),  // an unreadable Age counts as none
        (0, "99999999999", 2_147_483_650),
    ])
    func correctedInitialAge(dateOffset: Int64, age: String?, expected: Int64) {
        var fields: CacheFields = [("Date", Self.date(dateOffset))]
        if let age { fields.append("Age", age) }
        let initial = Freshness.correctedInitialAge(
            fields: fields, requestTime: Self.received - 2, responseTime: Self.received)
        #expect(initial == expected)
    }

    @Test func ageGrowsWhileStoredAndFreshnessEndsWhenAgeReachesTheLifetime() {
        let fields: CacheFields = [("Cache-Control", "max-age=60"), ("Date", Self.date(-10))]
        let freshness = Freshness(
            status: 200, fields: fields, requestTime: Self.received, responseTime: Self.received, policy: .init())
        #expect(freshness.age(at: Self.received) == 10)
        #expect(freshness.age(at: Self.received + 40) == 50)
        #expect(freshness.isFresh(at: Self.received + 49))
        #expect(freshness.timeToLive(at: Self.received + 49) == 1)
        #expect(!freshness.isFresh(at: Self.received + 50))  // fresh only while lifetime > age (§4.2)
        #expect(freshness.timeToLive(at: Self.received + 80) == -30)
        #expect(freshness.ageFieldValue(at: Self.received + 80) == "90")
        // A clock that goes back does not make it younger than when it arrived.
        #expect(freshness.age(at: Self.received - 100) == 10)
        #expect(freshness.usefulUntil == Self.received + 50)
    }

    @Test func theAgeFieldIsCappedAtTwoToTheThirtyOne() {
        let freshness = Freshness(
            status: 200, fields: [("Age", "2147483648")], requestTime: 0, responseTime: 0, policy: .init())
        #expect(freshness.ageFieldValue(at: 1_000) == "2147483648")
    }

    @Test func staleAllowancesComeFromTheResponseThenThePolicyAndDirectivesCanForbidThem() {
        var policy = CachePolicy()
        policy.staleIfError = 300
        func freshness(_ control: String) -> Freshness {
            Freshness(
                status: 200, fields: [("Cache-Control", control)], requestTime: 0, responseTime: 0, policy: policy)
        }
        #expect(freshness("max-age=5").staleIfError == 300)
        #expect(freshness("max-age=5, stale-if-error=20").staleIfError == 20)
        #expect(freshness("max-age=5, stale-while-revalidate=20").staleWhileRevalidate == 20)
        #expect(freshness("max-age=5").staleWhileRevalidate == 0)
        for forbidding in ["must-revalidate", "proxy-revalidate", "s-maxage=5"] {
            let forbidden = freshness("max-age=5, stale-while-revalidate=20, stale-if-error=20, \(forbidding)")
            #expect(forbidden.forbidsStale)
            #expect(forbidden.staleIfError == 0 && forbidden.staleWhileRevalidate == 0)
        }
        #expect(freshness("no-cache").requiresValidation)
        #expect(!freshness(#"no-cache="Set-Cookie""#).requiresValidation)
        #expect(freshness("max-age=5, immutable").immutable)
        #expect(freshness("max-age=5, stale-if-error=100").usefulUntil == 105)
    }
}
