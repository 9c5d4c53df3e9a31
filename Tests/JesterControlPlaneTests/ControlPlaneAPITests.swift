// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterControl
@testable import JesterControlPlane
import JesterHTTPAPI
import Testing

/// The control plane's REST API without sockets or files: requests in, answers and versions out. The server
/// stores a decision's version and commits it; `Harness` does the same in memory.

private struct Harness {
    var api = ControlPlaneAPI(history: [])
    var stored: [SnapshotVersion] = []
    var audit: [AuditRecord] = []
    var clock = 0

    @discardableResult
    mutating func send(
        _ method: String, _ path: String, _ body: String? = nil, fields: [(String, String)] = [],
        host: String = "127.0.0.1:9400"
    ) -> APIResponse {
        clock += 1
        // Through the reader the server uses, so paths, queries and fields arrive as they would.
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host)\r\n"
        for (name, value) in fields { head += "\(name): \(value)\r\n" }
        let bytes = Array((body ?? "").utf8)
        if body != nil { head += "Content-Length: \(bytes.count)\r\n" }
        var reader = APIRequestReader()
        reader.append(Array((head + "\r\n").utf8) + bytes)
        guard case .request(let request) = reader.next() else {
            Issue.record("the reader did not take \(method) \(path)")
            return APIResponse(status: 0)
        }
        let decision = api.handle(request, now: "2026-12-07T00:00:\(String(format: "%02d", clock))Z")
        if let version = decision.version {
            stored.append(version)
            api.commit(version)
        }
        if let record = decision.audit {
            audit.append(record)
            api.remember(record)
        }
        return decision.response
    }
}

private func json(_ response: APIResponse) -> JSONTree {
    (try? JSONTree.parse(response.body)) ?? .null
}

private func field(_ response: APIResponse, _ name: String) -> String? {
    response.fields.first { $0.name.lowercased() == name.lowercased() }?.value
}

private let upstream = #"{"targets": ["127.0.0.1:9000"]}"#
private let route = #"{"path_prefix": "/api/", "upstream": "app"}"#

@Test func aResourceCreatedThroughTheAPIMakesAVersionAndIsServedBack() {
    var harness = Harness()
    let created = harness.send("PUT", "/api/v1/upstreams/app", upstream)
    #expect(created.status == 201)
    #expect(field(created, "ETag") == "\"v1\"")
    #expect(field(created, "Location") == "/api/v1/upstreams/app")
    #expect(json(created)[member: "version"]?.integerValue == 1)
    let routed = harness.send("PUT", "/api/v1/routes/api", route)
    #expect(routed.status == 201 && harness.api.current.number == 2)

    let read = harness.send("GET", "/api/v1/routes/api")
    #expect(read.status == 200 && field(read, "ETag") == "\"v2\"")
    #expect(json(read)[member: "name"] == .string("api"))  // the URL's name is the route's
    #expect(json(read)[member: "upstream"] == .string("app"))

    let snapshot = json(harness.send("GET", "/api/v1/snapshot"))
    #expect(snapshot[member: "version"]?.integerValue == 2)
    #expect(snapshot[member: "document"]?[member: "upstreams"]?[member: "app"] != nil)
    #expect(harness.audit.map(\.outcome) == [.accepted, .accepted])
}

@Test func aChangeAnyDataPlaneWouldRefuseIsRefusedAtTheFieldAndNothingChanges() {
    var harness = Harness()
    harness.send("PUT", "/api/v1/upstreams/app", upstream)
    let refused = harness.send("PUT", "/api/v1/routes/api", #"{"path_prefix": "/api/", "upstream": "missing"}"#)
    #expect(refused.status == 422)
    guard case .array(let problems)? = json(refused)[member: "problems"] else {
        Issue.record("no problems listed")
        return
    }
    // Relative to the body sent, and where it is in the whole document.
    #expect(problems.contains { $0[member: "pointer"] == .string("/upstream") })
    #expect(problems.contains { $0[member: "document_pointer"] == .string("/routes/0/upstream") })
    #expect(harness.api.current.number == 1)
    #expect(harness.audit.last?.outcome == .refused && harness.audit.last?.reason?.contains("/routes/0/upstream") == true)

    // A value of the wrong type, and a path on the host: the loader's own messages.
    #expect(harness.send("PUT", "/api/v1/upstreams/bad", #"{"targets": "not-a-list"}"#).status == 422)
    let hostFile = harness.send("PUT", "/api/v1/routes/page",
        #"{"respond": {"status": 200}, "error_pages": {"pages": {"404": "/etc/shadow"}}}"#)
    #expect(hostFile.status == 422)
    #expect(String(decoding: hostFile.body, as: UTF8.self).contains("cannot name files on the host"))
    #expect(harness.stored.count == 1)
}

@Test func aDeleteThatWouldLeaveARouteWithoutItsUpstreamIsRefused() {
    var harness = Harness()
    harness.send("PUT", "/api/v1/upstreams/app", upstream)
    harness.send("PUT", "/api/v1/routes/api", route)
    let refused = harness.send("DELETE", "/api/v1/upstreams/app")
    #expect(refused.status == 422)
    #expect(harness.api.current.document.resource(.upstreams, "app") != nil)
    #expect(harness.send("DELETE", "/api/v1/routes/api").status == 200)
    #expect(harness.send("DELETE", "/api/v1/upstreams/app").status == 200)
    #expect(harness.send("DELETE", "/api/v1/upstreams/app").status == 404)
    // Deleted, the kinds stay set (empty), so the data planes drop theirs rather than fall back to their files.
    #expect(harness.api.current.document.kinds == [.routes, .upstreams])
}

@Test func ifMatchRefusesAChangeBasedOnAnotherVersion() {
    var harness = Harness()
    harness.send("PUT", "/api/v1/upstreams/app", upstream)
    let stale = harness.send("PUT", "/api/v1/upstreams/app", #"{"targets": ["127.0.0.1:9001"]}"#,
        fields: [("If-Match", "\"v0\"")])
    #expect(stale.status == 412 && field(stale, "ETag") == "\"v1\"")
    #expect(harness.api.current.number == 1)
    let fresh = harness.send("PUT", "/api/v1/upstreams/app", #"{"targets": ["127.0.0.1:9001"]}"#,
        fields: [("If-Match", "\"v1\"")])
    #expect(fresh.status == 200 && field(fresh, "ETag") == "\"v2\"")
    // If-None-Match on a read: 304 while the version is the same.
    #expect(harness.send("GET", "/api/v1/upstreams/app", fields: [("If-None-Match", "\"v2\"")]).status == 304)
    #expect(harness.send("GET", "/api/v1/upstreams/app", fields: [("If-None-Match", "\"v1\"")]).status == 200)
}

@Test func theSameValueAgainMakesNoVersion() {
    var harness = Harness()
    harness.send("PUT", "/api/v1/upstreams/app", upstream)
    let again = harness.send("PUT", "/api/v1/upstreams/app", upstream)
    #expect(again.status == 200 && json(again)[member: "version"]?.integerValue == 1)
    #expect(harness.stored.count == 1 && harness.audit.last?.outcome == .unchanged)
}

@Test func historyDiffAndRollback() {
    var harness = Harness()
    harness.send("PUT", "/api/v1/upstreams/app", upstream)  // 1
    harness.send("PUT", "/api/v1/routes/api", route)  // 2
    harness.send("PUT", "/api/v1/upstreams/app", #"{"targets": ["127.0.0.1:9001"]}"#)  // 3

    let history = json(harness.send("GET", "/api/v1/versions"))
    #expect(history[member: "current"]?.integerValue == 3)
    guard case .array(let versions)? = history[member: "versions"] else {
        Issue.record("no versions")
        return
    }
    #expect(versions.compactMap { $0[member: "version"]?.integerValue } == [3, 2, 1])

    let diff = json(harness.send("GET", "/api/v1/diff?from=1&to=3"))
    guard case .array(let changes)? = diff[member: "changes"] else {
        Issue.record("no changes")
        return
    }
    #expect(Set(changes.compactMap { $0[member: "summary"]?.stringValue })
        == ["routes set by the control plane", "route 'api' added", "upstream 'app' changed"])

    let rolledBack = harness.send("POST", "/api/v1/versions/1/rollback")
    #expect(rolledBack.status == 200)
    #expect(harness.api.current.number == 4 && harness.api.current.rolledBackTo == 1)
    #expect(harness.api.current.document == harness.api.history[1].document)
    #expect(harness.send("POST", "/api/v1/versions/99/rollback").status == 404)
    #expect(harness.send("GET", "/api/v1/versions/2").status == 200)
}

@Test func wholeSnapshotsAreCheckedAsTheFileWouldBe() {
    var harness = Harness()
    let accepted = harness.send("PUT", "/api/v1/snapshot", """
        {"upstreams": {"app": \(upstream)}, "routes": [{"name": "api", "path_prefix": "/", "upstream": "app"}]}
        """)
    #expect(accepted.status == 200 && harness.api.current.document.names(.routes) == ["api"])

    let refused = harness.send("PUT", "/api/v1/snapshot", """
        {"listeners": [], "routes": [{"path_prefix": "/", "upstream": "app"}, {"name": "x", "respond": {"status": 200}}]}
        """)
    #expect(refused.status == 422)
    let pointers = Set((json(refused)[member: "problems"].flatMap { tree -> [JSONTree]? in
        if case .array(let items) = tree { return items } else { return nil }
    } ?? []).compactMap { $0[member: "pointer"]?.stringValue })
    #expect(pointers.contains("/listeners"))  // the bootstrap file's to set
    #expect(pointers.contains("/routes/0/name"))  // a kept route needs a name
    #expect(harness.send("PUT", "/api/v1/snapshot", "{not json").status == 400)
    #expect(harness.send("PUT", "/api/v1/snapshot", "{}", fields: [("Content-Type", "text/plain")]).status == 415)
    #expect(harness.api.current.number == 1)
}

@Test func tokensGiveRolesAndNameTheActor() throws {
    let (tokens, problems) = AdminTokens.parse("""
        read  rrrrrrrrrrrrrrrrrrrr viewer
        write wwwwwwwwwwwwwwwwwwww alice
        write zzzzzzzzzzzzzzzzzzzz
        """)
    #expect(problems.isEmpty)
    var harness = Harness()
    harness.api.authorization = BearerAuthorization(tokens: tokens)
    let anonymous = harness.send("GET", "/api/v1/snapshot")
    #expect(anonymous.status == 401 && field(anonymous, "WWW-Authenticate")?.hasPrefix("Bearer") == true)
    #expect(harness.send("GET", "/api/v1/snapshot", fields: [("Authorization", "Bearer wrongwrongwrongwrong")]).status == 401)
    #expect(harness.send("GET", "/api/v1/snapshot", fields: [("Authorization", "Bearer rrrrrrrrrrrrrrrrrrrr")]).status == 200)
    let weak = harness.send("PUT", "/api/v1/upstreams/app", upstream,
        fields: [("Authorization", "Bearer rrrrrrrrrrrrrrrrrrrr")])
    #expect(weak.status == 403 && harness.audit.last?.actor == "viewer" && harness.audit.last?.outcome == .refused)
    #expect(harness.send("PUT", "/api/v1/upstreams/app", upstream,
        fields: [("Authorization", "bearer wwwwwwwwwwwwwwwwwwww")]).status == 201)
    #expect(harness.api.current.actor == "alice")
    harness.send("PUT", "/api/v1/upstreams/other", upstream, fields: [("Authorization", "Bearer zzzzzzzzzzzzzzzzzzzz")])
    #expect(harness.api.current.actor == "token on line 3")
    // The health check needs no token.
    #expect(harness.send("GET", "/healthz").status == 200)
}

@Test func unknownPathsAndMethodsAreRefusedPlainly() {
    var harness = Harness()
    #expect(harness.send("GET", "/api/v1/listeners").status == 404)
    #expect(harness.send("GET", "/nothing").status == 404)
    let wrongMethod = harness.send("POST", "/api/v1/routes/x", route)
    #expect(wrongMethod.status == 405 && field(wrongMethod, "Allow") == "GET, HEAD, PUT, DELETE")
    #expect(harness.send("GET", "/api/v1/routes/%zz").status == 400)
    #expect(harness.send("GET", "/api/v1/routes/a%2Fb").status == 404)
    #expect(harness.send("GET", "/api/v1/versions/7").status == 404)
    #expect(harness.send("GET", "/api/v1/diff?from=0").status == 400)
}

@Test func namesAreRefusedUnlessPlain() {
    var harness = Harness()
    #expect(harness.send("PUT", "/api/v1/upstreams/a~b%2Fc", upstream).status == 404)
    #expect(harness.send("PUT", "/api/v1/upstreams/..", upstream).status == 404)
    let refused = harness.send("PUT", "/api/v1/snapshot", #"{"upstreams": {"a b": {"targets": ["127.0.0.1:1"]}}}"#)
    #expect(refused.status == 422)
    #expect(harness.api.current.number == 0)
}

@Test func aWholeSnapshotWithAMemberThatIsNotAKindIsRefusedNotTrimmed() {
    var harness = Harness()
    for body in [#"{"route": []}"#, #"{"listeners": [], "upstreams": {}}"#] {
        #expect(harness.send("PUT", "/api/v1/snapshot", body).status == 422)
    }
    #expect(harness.api.current.number == 0)
}

@Test func withoutTokensOnlyLoopbackHostsAreAnsweredAndBrowsersFromElsewhereCannotWrite() {
    var harness = Harness()
    // DNS rebinding: the attacker's name in Host.
    #expect(harness.send("GET", "/api/v1/snapshot", host: "evil.example:9400").status == 403)
    #expect(harness.send("GET", "/api/v1/snapshot", host: "localhost:9400").status == 200)
    #expect(harness.send("GET", "/api/v1/snapshot", host: "[::1]:9400").status == 200)
    // A page on another site posting through the operator's browser.
    #expect(harness.send("POST", "/api/v1/versions/0/rollback", fields: [("Origin", "https://evil.example")]).status
        == 403)
    #expect(harness.send("PUT", "/api/v1/upstreams/app", upstream, fields: [("Sec-Fetch-Site", "cross-site")]).status
        == 403)
    #expect(harness.api.current.number == 0)
    #expect(harness.send("POST", "/healthz").status == 405)
}

@Test func ifNoneMatchStarCreatesOnlyWhatIsAbsent() {
    var harness = Harness()
    #expect(harness.send("PUT", "/api/v1/upstreams/app", upstream, fields: [("If-None-Match", "*")]).status == 201)
    let again = harness.send("PUT", "/api/v1/upstreams/app", #"{"targets": ["127.0.0.1:1"]}"#,
        fields: [("If-None-Match", "*")])
    #expect(again.status == 412 && harness.api.current.number == 1)
    #expect(harness.send("GET", "/api/v1/audit?limit=5000").status == 400)
    #expect(harness.send("GET", "/api/v1/audit?limit=x").status == 400)
    #expect(harness.send("GET", "/api/v1/versions/+1").status == 404)
    #expect(harness.send("POST", "/api/v1/versions/9/rollback").status == 404)
    #expect(harness.audit.last?.outcome == .refused)  // a rollback to nothing is a refused write too
}

@Test func aRouteNamedInTheBodyMustBeTheOneInThePath() {
    var harness = Harness()
    harness.send("PUT", "/api/v1/upstreams/app", upstream)
    let refused = harness.send("PUT", "/api/v1/routes/api", #"{"name": "other", "path_prefix": "/", "upstream": "app"}"#)
    #expect(refused.status == 422)
}

@Test func storedVersionsReadBackAsTheyWereWritten() throws {
    var harness = Harness()
    harness.send("PUT", "/api/v1/upstreams/a.b_c-1", upstream)
    harness.send("PUT", "/api/v1/routes/api", #"{"path_prefix": "/", "upstream": "a.b_c-1", "x_note": "\u00e9\"\n"}"#)
    for version in harness.stored {
        let reread = try JSONTree.parse(version.tree.serialized())
        #expect(try SnapshotVersion.read(reread).get() == version)
    }
    var document = SnapshotDocument()
    document.put(.upstreams, "a~b/c", .object([:]))
    #expect(document.pointer(.upstreams, "a~b/c") == "/upstreams/a~0b~1c")
    for record in harness.audit {
        #expect(AuditRecord.read(try JSONTree.parse(record.tree.serialized())) == record)
    }
}
