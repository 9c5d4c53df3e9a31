// SPDX-License-Identifier: Apache-2.0
import JesterHTTPAPI
import Foundation
import JesterConfig
import JesterControl
import NIOCore
import NIOEmbedded
import Testing

@testable import JesterSupervisor

/// The admin API's pure parts: reading requests, the route table, authorization, tokens, answers, and the
/// `[admin]` table's checks. The live tier (Tests/Live/test_admin_api.py) holds the whole to its OpenAPI document.

// MARK: Reading requests

@Test func aRequestIsReadWholeWithItsBodyAndPipelinedOnesWaitTheirTurn() {
    var reader = APIRequestReader()
    reader.append(Array("POST /api/v1/reload HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{".utf8))
    #expect(reader.next() == .needMoreBytes)
    reader.append(Array("}GET /api/v1/status HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".utf8))
    guard case .request(let first) = reader.next() else {
        Issue.record("no first request")
        return
    }
    #expect(first.method == "POST" && first.path == "/api/v1/reload" && first.body == Array("{}".utf8))
    #expect(first.keepAlive && first.field("host") == "a")
    guard case .request(let second) = reader.next() else {
        Issue.record("no second request")
        return
    }
    #expect(second.method == "GET" && !second.keepAlive && second.body.isEmpty)
    #expect(reader.next() == .needMoreBytes && reader.bufferedBytes == 0)
}

@Test func theQueryIsNotPartOfThePath() {
    var reader = APIRequestReader()
    reader.append(Array("GET /api/v1/status?x=1 HTTP/1.1\r\nHost: a\r\n\r\n".utf8))
    guard case .request(let request) = reader.next() else {
        Issue.record("no request")
        return
    }
    #expect(request.path == "/api/v1/status" && request.query == "x=1")
}

@Test(arguments: [
    ("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n", 413),
    ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
    ("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    ("GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\n\r\n", 400),
    ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
])
func malformedOrOversizedRequestsAreRefused(request: String, status: Int) {
    var reader = APIRequestReader()
    reader.append(Array(request.utf8))
    guard case .refuse(let refused, _) = reader.next() else {
        Issue.record("\(request.debugDescription) was not refused")
        return
    }
    #expect(refused == status)
}

@Test func aHeadLargerThanTheLimitIsRefusedBeforeItEnds() {
    var reader = APIRequestReader()
    reader.append(Array("GET / HTTP/1.1\r\nHost: a\r\nX: ".utf8) + Array(repeating: UInt8(ascii: "a"), count: 20_000))
    guard case .refuse(let status, _) = reader.next() else {
        Issue.record("not refused")
        return
    }
    #expect(status == 431)
}

// MARK: Routes

@Test(arguments: [
    ("GET", "/api/v1/status", AdminRoutes.Resolution.endpoint(.status)),
    ("GET", "/api/v1/config", .endpoint(.config)),
    ("GET", "/api/v1/routes/", .endpoint(.routes)),
    ("GET", "/api/v1/upstreams", .endpoint(.upstreams)),
    ("POST", "/api/v1/reload", .endpoint(.reload)),
    ("POST", "/api/v1/drain", .endpoint(.drain)),
    ("GET", "/metrics", .endpoint(.metrics)),
    ("POST", "/api/v1/upstreams/app/targets/10.0.0.1:80/drain",
        .endpoint(.setTargetAdmin(pool: "app", target: "10.0.0.1:80", action: .drain))),
    ("POST", "/api/v1/upstreams/app/targets/10.0.0.1%3A80/enable",
        .endpoint(.setTargetAdmin(pool: "app", target: "10.0.0.1:80", action: .enable))),
    ("POST", "/api/v1/targets/%5B::1%5D:80/disable",
        .endpoint(.setTargetAdmin(pool: nil, target: "[::1]:80", action: .disable))),
    ("GET", "/api/v1/reload", .methodNotAllowed(allowed: "POST")),
    ("POST", "/api/v1/status", .methodNotAllowed(allowed: "GET")),
    ("DELETE", "/api/v1/targets/a:1/drain", .methodNotAllowed(allowed: "POST")),
    ("POST", "/api/v1/targets/a:1/restart", .notFound),
    ("POST", "/api/v1/upstreams/app/targets//drain", .notFound),
    ("GET", "/api/v2/status", .notFound),
    ("GET", "/api/v1", .notFound),
    ("GET", "/", .endpoint(.dashboard(.page))),
    ("GET", "", .notFound),
    ("GET", "/api/v1/targets/%zz/drain", .notFound),
    ("GET", "/api/v1/targets/%ff/drain", .notFound),
    ("GET", "/api/v1/cache", .endpoint(.cacheStatus)),
    ("GET", "/api/v1/cache/", .endpoint(.cacheStatus)),
    ("POST", "/api/v1/cache/purge", .endpoint(.cachePurge)),
    ("POST", "/api/v1/cache", .methodNotAllowed(allowed: "GET")),
    ("GET", "/api/v1/cache/purge", .methodNotAllowed(allowed: "POST")),
    ("DELETE", "/api/v1/cache/purge", .methodNotAllowed(allowed: "POST")),
    ("POST", "/api/v1/cache/purges", .notFound),
    ("POST", "/api/v1/cache/purge/x", .notFound),
])
func methodsAndPathsResolve(method: String, path: String, expected: AdminRoutes.Resolution) {
    #expect(AdminRoutes.resolve(method: method, path: path) == expected)
}

@Test func readingNeedsReadAndActingNeedsWrite() {
    #expect(AdminEndpoint.status.requiredRole == .read)
    #expect(AdminEndpoint.metrics.requiredRole == .read)
    #expect(AdminEndpoint.reload.requiredRole == .write)
    #expect(AdminEndpoint.drain.requiredRole == .write)
    #expect(AdminEndpoint.setTargetAdmin(pool: nil, target: "a:1", action: .enable).requiredRole == .write)
    #expect(AdminEndpoint.cacheStatus.requiredRole == .read)
    #expect(AdminEndpoint.cachePurge.requiredRole == .write)
}

// MARK: Tokens and authorization

let writeToken = "w-0123456789abcdef"
let readToken = "r-0123456789abcdef"

@Test func tokensParseWithRolesCommentsAndBlankLines() {
    let (tokens, problems) = AdminTokens.parse("# operators\n\nwrite \(writeToken)\n  read\t\(readToken)  \r\n")
    #expect(problems.isEmpty)
    #expect(tokens.role(for: Array(writeToken.utf8)) == .write)
    #expect(tokens.role(for: Array(readToken.utf8)) == .read)
    #expect(tokens.role(for: Array((writeToken + "x").utf8)) == nil)
    #expect(tokens.role(for: Array(writeToken.dropLast().utf8)) == nil)
    #expect(tokens.role(for: []) == nil)
}

@Test func badTokenLinesAreReportedByLineWithoutEchoingThem() {
    let text = "admin \(writeToken)\nwrite\nwrite short\nread a b\nwrite \(writeToken)\nread \(writeToken)\n"
    let (tokens, problems) = AdminTokens.parse(text)
    #expect(problems.map(\.line) == [1, 2, 3, 4, 6])
    #expect(problems.allSatisfy { !$0.message.contains(writeToken) })
    #expect(problems[4].message.contains("line 5"))
    #expect(tokens.entries.count == 1)
}

@Test func aTokensFileOthersCanReadIsRefused() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("admin-tokens-\(getpid())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let path = directory.appendingPathComponent("tokens").path
    try "write \(writeToken)\n".write(toFile: path, atomically: false, encoding: .utf8)
    chmod(path, 0o644)
    #expect(AdminTokens.load(path: path).problems.first?.message.contains("chmod o-rw") == true)
    chmod(path, 0o602)
    #expect(AdminTokens.load(path: path).problems.count == 1)
    chmod(path, 0o640)
    #expect(AdminTokens.load(path: path).problems.isEmpty)
    try "# nothing\n".write(toFile: path, atomically: false, encoding: .utf8)
    #expect(AdminTokens.load(path: path).problems.first?.message.contains("has no tokens") == true)
    #expect(AdminTokens.load(path: path + ".missing").problems.first?.message.contains("cannot read") == true)
}

@Test func authorizationAsksForABearerTokenOfTheRightRole() {
    let tokens = AdminTokens.parse("write \(writeToken)\nread \(readToken)\n").tokens
    let authorization = AdminAuthorization(tokens: tokens)
    #expect(authorization.decide(authorization: nil, required: .read) == .unauthorized("a bearer token is needed"))
    guard case .unauthorized = authorization.decide(authorization: "Basic YTpi", required: .read) else {
        Issue.record("Basic accepted")
        return
    }
    guard case .unauthorized = authorization.decide(authorization: "Bearer nope-0123456789abcdef", required: .read)
    else {
        Issue.record("a wrong token accepted")
        return
    }
    #expect(authorization.decide(authorization: "Bearer \(readToken)", required: .read) == .allowed)
    #expect(authorization.decide(authorization: "bearer \(writeToken)", required: .write) == .allowed)
    guard case .forbidden = authorization.decide(authorization: "Bearer \(readToken)", required: .write) else {
        Issue.record("a read token acted")
        return
    }
    // No tokens file: every client may act (loopback or a Unix socket only, which the loader enforces).
    #expect(AdminAuthorization(tokens: nil).decide(authorization: nil, required: .write) == .allowed)
    // A tokens file that could not be read at reload: nobody gets in.
    guard case .unauthorized = AdminAuthorization(tokens: AdminTokens()).decide(
        authorization: "Bearer \(writeToken)", required: .read)
    else {
        Issue.record("an empty token set let a request in")
        return
    }
}

@Test func comparisonIsOverEveryByteWhateverTheLengths() {
    #expect(AdminTokens.constantTimeEquals(Array("abc".utf8), Array("abc".utf8)))
    #expect(!AdminTokens.constantTimeEquals(Array("abc".utf8), Array("abd".utf8)))
    #expect(!AdminTokens.constantTimeEquals(Array("abc".utf8), Array("abc\0".utf8)))
    #expect(!AdminTokens.constantTimeEquals([], Array("a".utf8)))
    #expect(AdminTokens.constantTimeEquals([], []))
}

// MARK: Answers

@Test func answersCarryTheirLengthAndCloseWhenAsked() {
    let error = APIResponse.error(404, "no /x")
    let text = String(decoding: error.serialized(keepAlive: true), as: UTF8.self)
    #expect(text.hasPrefix("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"))
    #expect(text.hasSuffix("\r\n\r\n{\"error\":\"Not Found\",\"message\":\"no /x\",\"status\":404}"))
    #expect(text.contains("Content-Length: 52\r\n") && !text.contains("Connection: close"))
    #expect(String(decoding: error.serialized(keepAlive: false), as: UTF8.self).contains("Connection: close\r\n"))
    let notModified = String(decoding: APIResponse(status: 304, body: [1]).serialized(keepAlive: true), as: UTF8.self)
    #expect(!notModified.contains("Content-Length") && notModified.hasSuffix("\r\n\r\n"))
}

@Test func upstreamsAreGroupedByPoolInConfigurationOrder() {
    func report(_ pool: String, _ target: String, failOpen: Bool = false) -> TargetReport {
        TargetReport(state: TargetState(upstream: pool, target: target, health: "healthy", admin: "enabled"),
            active: 1, requests: 2, failures: 0, ejectedBy: 0, latencyMilliseconds: 1.5, failOpen: failOpen)
    }
    let body = AdminBodies.Upstreams([report("b", "h:2", failOpen: true), report("a", "h:1"), report("b", "h:3")],
        poolNames: ["a", "b", "empty"])
    #expect(body.pools.map(\.name) == ["a", "b", "empty"])
    #expect(body.pools.map(\.failOpen) == [false, true, false])
    #expect(body.pools[1].targets.map(\.address) == ["h:2", "h:3"])
    let json = String(decoding: APIResponse.json(200, body).body, as: UTF8.self)
    #expect(json.contains("\"ejected_by\":0") && json.contains("\"latency_milliseconds\":1.5"))
}

@Test func aCollectorSettlesOnceOnTheFirstAnswerThatIsNotProgress() throws {
    let channel = EmbeddedChannel()
    try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    var settled: [ControlMessage] = []
    let collector = AdminReplyCollector(id: 3, channel: channel) { settled.append($0) }
    #expect(collector.isOpen)
    collector.send(.progress(ProgressReport(phase: "validated", connections: 0, workers: 0)))
    collector.send(.done(success: true, message: "one"))
    collector.send(.done(success: true, message: "two"))
    #expect(settled == [.done(success: true, message: "one")])
    #expect(!collector.isOpen)
}

// MARK: [admin]

private func loadAdmin(_ table: String, directory: String = "/tmp") throws(ConfigError) -> Configuration {
    try ConfigLoader().load(text: """
        \(table)

        [[listeners]]
        name = "main"
        address = "127.0.0.1:8080"
        """, file: directory + "/jester.toml")
}

@Test func theAdminAPIIsOffWithoutItsTableAndOnLoopbackWithIt() throws {
    #expect(try loadAdmin("").admin == nil)
    #expect(try loadAdmin("[admin]").admin == AdminSettings(endpoint: .tcp(AdminSettings.defaultAddress)))
    #expect(try loadAdmin("[admin]\naddress = \"[::1]:9000\"").admin?.endpoint
        == .tcp(SocketAddressSpec(host: "::1", port: 9000)))
    #expect(try loadAdmin("[admin]\nsocket = \"/run/jester/admin.sock\"").admin?.endpoint
        == .unix(path: "/run/jester/admin.sock"))
}

@Test(arguments: [
    ("[admin]\naddress = \"0.0.0.0:9901\"", "not loopback) needs 'tokens_file'"),
    ("[admin]\naddress = \"10.1.2.3:9901\"", "not loopback) needs 'tokens_file'"),
    ("[admin]\naddress = \"127.0.0.1:1\"\nsocket = \"/a\"", "not both"),
    ("[admin]\nsocket = \"admin.sock\"", "absolute path"),
    ("[admin]\ntokens_file = \"/nonexistent/tokens\"", "cannot read"),
    ("[admin]\nadress = \"127.0.0.1:1\"", "adress"),
])
func badAdminTablesAreRefusedAtValidateTime(table: String, message: String) {
    do {
        _ = try loadAdmin(table)
        Issue.record("\(table) was accepted")
    } catch {
        #expect(error.diagnostics.contains { $0.message.contains(message) }, "\(error.diagnostics)")
    }
}

@Test func aNonLoopbackAddressWithTokensIsAcceptedAndTokenProblemsPointAtTheirLine() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("admin-config-\(getpid())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let path = directory.appendingPathComponent("tokens").path
    try "write \(writeToken)\n".write(toFile: path, atomically: false, encoding: .utf8)
    chmod(path, 0o600)
    let loaded = try loadAdmin("[admin]\naddress = \"0.0.0.0:9901\"\ntokens_file = \"tokens\"", directory: directory.path)
    #expect(loaded.admin?.tokensFile == path)
    #expect(loaded.renderTOML().contains("[admin]\naddress = \"0.0.0.0:9901\"\ntokens_file = \"\(path)\""))
    try "write \(writeToken)\nwrite short\n".write(toFile: path, atomically: false, encoding: .utf8)
    do {
        _ = try loadAdmin("[admin]\ntokens_file = \"tokens\"", directory: directory.path)
        Issue.record("a short token was accepted")
    } catch {
        #expect(error.diagnostics.map(\.location.line) == [2])
        #expect(error.diagnostics.first?.location.file == path)
    }
}
