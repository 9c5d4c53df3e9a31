// SPDX-License-Identifier: Apache-2.0
import JesterHTTPAPI
import Foundation
import JesterControl
import Testing

@testable import JesterSupervisor

/// The web dashboard's pure parts: its routes and files, the cross-site check on actions, the reload history and
/// the recent-access ring. The live tier (Tests/Live/test_dashboard.py) drives the whole in headless Chromium.

// MARK: Routes and files

@Test(arguments: [
    ("GET", "/", AdminRoutes.Resolution.endpoint(.dashboard(.page))),
    ("GET", "/dashboard", .endpoint(.dashboard(.page))),
    ("GET", "/dashboard/", .endpoint(.dashboard(.page))),
    ("GET", "/dashboard/dashboard.js", .endpoint(.dashboard(.script))),
    ("GET", "/dashboard/dashboard.css", .endpoint(.dashboard(.style))),
    ("GET", "/dashboard/../api/v1/status", .notFound),
    ("GET", "/dashboard/other.js", .notFound),
    ("GET", "/dashboard/dashboard.js/x", .notFound),
    ("POST", "/", .methodNotAllowed(allowed: "GET")),
    ("GET", "/api/v1/reloads", .endpoint(.reloads)),
    ("POST", "/api/v1/reloads", .methodNotAllowed(allowed: "GET")),
    ("GET", "/api/v1/access/recent", .endpoint(.recentAccess)),
    ("GET", "/api/v1/access/recent/", .endpoint(.recentAccess)),
    ("GET", "/api/v1/access", .notFound),
    ("GET", "/api/v1/access/other", .notFound),
])
func dashboardPathsResolve(method: String, path: String, expected: AdminRoutes.Resolution) {
    #expect(AdminRoutes.resolve(method: method, path: path) == expected)
}

@Test func theFilesNeedNoTokenAndTheirDataDoes() {
    for asset in DashboardAsset.allCases { #expect(AdminEndpoint.dashboard(asset).requiredRole == nil) }
    #expect(AdminEndpoint.reloads.requiredRole == .read)
    #expect(AdminEndpoint.recentAccess.requiredRole == .read)
}

@Test func everyFileIsServedWithTheSecurityFieldsAndTheRightType() {
    for asset in DashboardAsset.allCases {
        let response = asset.response
        let fields = Dictionary(uniqueKeysWithValues: response.fields.map { ($0.name, $0.value) })
        #expect(response.status == 200 && !response.body.isEmpty)
        #expect(fields["Content-Security-Policy"]?.hasPrefix("default-src 'self'") == true)
        #expect(fields["X-Content-Type-Options"] == "nosniff")
        #expect(fields["Referrer-Policy"] == "no-referrer")
        #expect(fields["X-Frame-Options"] == "DENY")
        #expect(fields["Content-Type"] == asset.contentType)
        // The path the page links each file by resolves back to it.
        #expect(AdminRoutes.resolve(method: "GET", path: asset.path) == .endpoint(.dashboard(asset)))
    }
}

@Test func thePageLinksItsFilesAndHasNoInlineScriptOrStyle() {
    let page = DashboardPage.html
    #expect(page.contains("src=\"\(DashboardAsset.script.path)\""))
    #expect(page.contains("href=\"\(DashboardAsset.style.path)\""))
    // The policy forbids inline script, handlers and style attributes: the page must not need them.
    #expect(!page.contains("<script>") && !page.contains(" style=") && !page.contains(" onclick="))
    #expect(!page.contains("http://") && !page.contains("https://"))
    #expect(!DashboardScript.source.contains("innerHTML") && !DashboardScript.source.contains("eval("))
}

// MARK: Cross-site actions

@Test(arguments: [
    // Not a browser (curl, jesterctl): neither field.
    (String?.none, String?.none, String?.some("127.0.0.1:9901"), true),
    // The dashboard itself: same origin.
    ("http://127.0.0.1:9901", "same-origin", "127.0.0.1:9901", true),
    ("http://127.0.0.1:9901", nil, "127.0.0.1:9901", true),
    ("HTTP://LOCALHOST:9901", nil, "localhost:9901", true),
    // Through a TLS listener that forwards to the API.
    ("https://admin.example", nil, "admin.example", true),
    (nil, "none", "127.0.0.1:9901", true),
    // Another site, another port of the same host, an opaque origin.
    ("http://evil.example", "cross-site", "127.0.0.1:9901", false),
    (nil, "cross-site", "127.0.0.1:9901", false),
    (nil, "same-site", "127.0.0.1:9901", false),
    ("http://127.0.0.1:8080", nil, "127.0.0.1:9901", false),
    ("http://127.0.0.1:9901", "cross-site", "127.0.0.1:9901", false),
    ("null", nil, "127.0.0.1:9901", false),
    ("http://127.0.0.1:9901", nil, nil, false),
    ("http://127.0.0.1:9901.evil.example", nil, "127.0.0.1:9901", false),
])
func crossSiteActionsAreRefused(origin: String?, fetchSite: String?, host: String?, allowed: Bool) {
    let decision = CrossSiteCheck.decide(origin: origin, fetchSite: fetchSite, host: host)
    if allowed {
        #expect(decision == .allowed)
    } else {
        guard case .refuse(let message) = decision else {
            Issue.record("allowed \(String(describing: origin)) \(String(describing: fetchSite))")
            return
        }
        #expect(message.contains("may not act"))
    }
}

// MARK: Reload history

@Test func theReloadHistoryKeepsTheNewestFirstAndIsBounded() throws {
    var history = ReloadHistory()
    for generation in 1...(ReloadHistory.capacity + 5) {
        let success = generation % 3 != 0
        history.record(ReloadResult(success: success, generation: generation, configHash: "h\(generation)",
            errors: success ? [] : ["bad"]), kind: "reload", at: Double(generation))
    }
    #expect(history.reloads.count == ReloadHistory.capacity)
    #expect(history.reloads.first?.generation == ReloadHistory.capacity + 5)
    #expect(history.reloads.last?.generation == 6)
    #expect(history.reloads.first { !$0.success }?.errors == ["bad"])
    let encoded = APIResponse.json(200, history).body
    let object = try #require(try JSONSerialization.jsonObject(with: Data(encoded)) as? [String: Any])
    let first = try #require((object["reloads"] as? [[String: Any]])?.first)
    #expect(Set(first.keys) == ["at", "kind", "success", "generation", "config_hash", "errors"])
}

// MARK: Recent access records

func record(_ n: Int, status: Int = 200) -> TapRecord {
    TapRecord(route: "r", upstream: "u", status: status, line: "{\"target\":\"/\(n)\",\"status\":\(status)}")
}

@Test func theRingKeepsTheNewestRecordsAndCountsTheRest() {
    var ring = RecentAccess()
    ring.append((1...30).map { record($0) }, dropped: 2)
    ring.append((31...(RecentAccess.capacity + 40)).map { record($0) }, dropped: 0)
    #expect(ring.records.count == RecentAccess.capacity)
    #expect(ring.records.first?.line.contains("/41") == true)
    #expect(ring.dropped == 2 + 40)
}

@Test func theTapIsWantedOnlyWhileADashboardPolls() {
    var ring = RecentAccess()
    #expect(!ring.isWanted(at: 5))
    ring.polled(at: 1_000)
    #expect(ring.isWanted(at: 1_000) && ring.isWanted(at: 1_000 + RecentAccess.idleTimeout - 1))
    #expect(!ring.isWanted(at: 1_000 + RecentAccess.idleTimeout))
}

@Test func theTapAnswersNewestFirstAndLeavesOutLinesThatAreNotJSONObjects() throws {
    var clock: UInt64 = 0
    let tap = RecentAccessTap(now: { clock })
    #expect(!tap.isOpen)
    tap.polled()
    #expect(tap.isOpen)
    tap.send(.tapRecords([record(1), TapRecord(route: "r", upstream: "u", status: 500, line: "not json"),
        TapRecord(route: "r", upstream: "u", status: 500, line: "[1]"), record(2, status: 503)], dropped: 1))
    // Other messages are not for it.
    tap.send(.done(success: true, message: "x"))
    let object = try #require(
        try JSONSerialization.jsonObject(with: Data(tap.body(tapping: true))) as? [String: Any])
    let records = try #require(object["records"] as? [[String: Any]])
    #expect(records.map { $0["target"] as? String } == ["/2", "/1"])
    #expect(object["dropped"] as? Int == 1 && object["tapping"] as? Bool == true)
    clock += RecentAccess.idleTimeout
    #expect(!tap.isOpen)
}
