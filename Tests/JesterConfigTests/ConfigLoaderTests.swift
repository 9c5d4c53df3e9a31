// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import Testing

private func load(_ text: String, environment: [String: String] = [:]) -> Result<Configuration, ConfigError> {
    do {
        return .success(try ConfigLoader(environment: environment).load(text: text, file: "test.toml"))
    } catch {
        return .failure(error)
    }
}

private let minimal = """
    [[listeners]]
    name = "main"
    address = "127.0.0.1:8080"

    """

@Test func appliesDefaults() throws {
    let configuration = try load(minimal).get()
    #expect(configuration.http.maxBodySize == 10 * 1024 * 1024)
    #expect(configuration.server.drainTimeout == .seconds(30))
    #expect(configuration.listeners.first?.address == SocketAddressSpec(host: "127.0.0.1", port: 8080))
    #expect(configuration.hash.count == 16)
}

@Test func reportsEveryErrorWithLineAndColumn() {
    let text = minimal + """
        [server]
        wrokers = 2
        drain_timeout = "soon"

        [[routes]]
        path_prefix = "/"
        upstream = "missing"
        """
    guard case .failure(let error) = load(text) else {
        Issue.record("accepted an invalid configuration")
        return
    }
    let lines = error.diagnostics.map(\.description)
    #expect(lines.count == 3)
    #expect(lines.contains("test.toml:5:1: error: unknown key 'wrokers' in [server]; did you mean 'workers'?"))
    #expect(lines.contains { $0.hasPrefix("test.toml:6:1: error: 'drain_timeout'") })
    #expect(lines.contains { $0.hasPrefix("test.toml:10:1: error: route 'route-1' names upstream 'missing'") })
}

@Test func syntaxErrorsCarryTheirPosition() {
    guard case .failure(let error) = load("a = [\n") else {
        Issue.record("accepted invalid TOML")
        return
    }
    #expect(error.diagnostics.first?.location.line == 1)
}

@Test func interpolatesTheEnvironment() throws {
    let text = """
        [[listeners]]
        name = "main"
        address = "${HOST:-127.0.0.1}:${PORT}"

        [server]
        workers = "${WORKERS:-3}"
        """
    let configuration = try load(text, environment: ["PORT": "9000"]).get()
    #expect(configuration.listeners[0].address.port == 9000)
    #expect(configuration.server.workers == 3)
    guard case .failure(let error) = load(text) else {
        Issue.record("accepted an unset variable")
        return
    }
    #expect(error.diagnostics[0].message.contains("'PORT' is not set"))
    #expect(error.diagnostics[0].location.line == 3)
}

@Test func mergesIncludedFiles() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("jester-config-\(getpid())")
    try FileManager.default.createDirectory(at: directory.appendingPathComponent("conf.d"), withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let main = directory.appendingPathComponent("jester.toml")
    try ("include = [\"conf.d/*.toml\"]\n" + minimal).write(to: main, atomically: true, encoding: .utf8)
    try """
        [upstreams.api]
        targets = ["127.0.0.1:9000"]

        [[routes]]
        path_prefix = "/api"
        upstream = "api"
        """.write(to: directory.appendingPathComponent("conf.d/api.toml"), atomically: true, encoding: .utf8)
    let configuration = try ConfigLoader(environment: [:]).load(file: main.path)
    #expect(configuration.routes.count == 1)
    #expect(configuration.files.count == 2)
}

@Test func schemaDescribesEveryKeyAndTheShippedConfigIsValid() throws {
    let schema = ConfigSchema.jsonSchema()
    for key in ["max_body_size", "control_socket", "targets", "path_prefix", "keepalive_timeout"] {
        #expect(schema.contains("\"\(key)\""))
    }
    let shipped = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Config/jester.toml")
    let configuration = try ConfigLoader(environment: [:]).load(file: shipped.path)
    #expect(configuration.listeners.first?.address.description == "127.0.0.1:8080")
    // The dump is itself a valid configuration with the same meaning.
    let dumped = try ConfigLoader(environment: [:]).load(text: configuration.renderTOML(), file: "dump.toml")
    #expect(dumped.hash == configuration.hash)
}

/// Every example in Config/examples is valid, and its dump means the same (so the dump covers every key the
/// examples use: matchers, splits, rewrites, health checks, breakers, tcp listeners).
@Test func theExamplesAreValidAndSurviveADump() throws {
    let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Config/examples")
    let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".toml") }
    #expect(files.count >= 2)
    for file in files {
        let configuration = try ConfigLoader(environment: [:]).load(file: directory.appendingPathComponent(file).path)
        let dumped = try ConfigLoader(environment: [:]).load(text: configuration.renderTOML(), file: "dump.toml")
        #expect(dumped.hash == configuration.hash, "\(file)")
    }
}

/// Inputs the fuzzer (Tests/Fuzz) found to hang or crash the loader, replayed on every test run.
@Test func fuzzRegressionsLoadOrFailCleanly() throws {
    let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../Fuzz/regressions/config").standardized
    let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
    #expect(!files.isEmpty)
    for file in files {
        let data = try Data(contentsOf: directory.appendingPathComponent(file))
        let result = load(String(decoding: data, as: UTF8.self))
        if case .failure(let error) = result { #expect(!error.diagnostics.isEmpty) }
    }
}

@Test func anArrayHoldingACommentOrAStrayBraceStillFails() {
    guard case .failure = load("[server]\nworkers = [\"a\n# comment\n}\n") else {
        Issue.record("expected a located error")
        return
    }
}

@Test func nonASCIIOutsideStringsIsALocatedError() {
    guard case .failure(let error) = load("# café is fine here\nname = \"and café here\"\n[[r\u{FFFD}utes]]\n") else {
        Issue.record("expected an error")
        return
    }
    #expect(error.diagnostics.first?.location.line == 3)
    #expect(error.diagnostics.first?.location.column == 4)
}

@Test(arguments: ["[@erver]\n", "[[ ]]\n", "a = 1\n  [ !x]\n"])
func tableHeadersMustStartWithAKey(text: String) {
    guard case .failure(let error) = load(text) else {
        Issue.record("expected an error")
        return
    }
    #expect(error.diagnostics.first?.message.contains("table header") == true)
}

/// jester.toml(5) lists every key with its type and default: its KEYS section is what the schema renders
/// (regenerate with `jester config schema --manual`).
@Test func theManualListsEveryKeyOfTheSchema() throws {
    let manual = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Man/jester.toml.5").standardized
    let text = try String(contentsOf: manual, encoding: .utf8)
    #expect(text.contains(ConfigSchema.manualReference()))
}

@Test func nestedArraysOnTheirOwnLineAreNotTableHeaders() {
    let text = """
        [[listeners]]
        name = "main"
        address = "127.0.0.1:8080"

        [upstreams.app]
        targets = [
          "127.0.0.1:9000",
        ]

        [[routes]]
        path_prefix = "/"
        upstream = "app"
        hosts = [
          "a.example.com", # a comment with [brackets]
        ]
        """
    if case .failure(let error) = load(text) { Issue.record("unexpected: \(error)") }
    guard case .failure(let error) = load("x = [\n  [ ]\n]\n[@bad]\n") else {
        Issue.record("expected the bad header to be found after the nested array")
        return
    }
    #expect(error.diagnostics.first?.location.line == 4)
    #expect(error.diagnostics.first?.message.contains("table header") == true)
}

@Test func aFileThatIsNotUTF8IsALocatedError() throws {
    let path = NSTemporaryDirectory() + "jester-latin1-\(getpid()).toml"
    try Data("[server]\nworkers = 2\n# caf".utf8 + [0xE9] + Data("\n".utf8)).write(to: URL(fileURLWithPath: path))
    defer { try? FileManager.default.removeItem(atPath: path) }
    do {
        _ = try ConfigLoader(environment: [:]).load(file: path)
        Issue.record("expected an error")
    } catch {
        #expect(error.diagnostics.first?.location.line == 3)
        #expect(error.diagnostics.first?.location.column == 6)
        #expect(error.diagnostics.first?.message.contains("UTF-8") == true)
    }
}

@Test func upstreamTargetsTakeWeightsAndBackupsAndBalancingIsValidated() throws {
    let good = minimal + """
        [upstreams.app]
        targets = ["127.0.0.1:9001", { address = "127.0.0.1:9002", weight = 3 }, { address = "[::1]:9003", backup = true }]
        balance = "hash"
        hash_key = "cookie:session"
        slow_start = "30s"
        """
    let upstream = try #require(try load(good).get().upstream(named: "app"))
    #expect(upstream.targets.map(\.weight) == [1, 3, 1] && upstream.targets.map(\.backup) == [false, false, true])
    #expect(upstream.balance == "hash" && upstream.hashKey == "cookie:session" && upstream.slowStart == .seconds(30))
    // What `config dump` writes loads back to the same pool.
    let dumped = try load(try load(good).get().renderTOML()).get()
    #expect(dumped.upstream(named: "app") == upstream)

    let bad = minimal + """
        [upstreams.app]
        targets = [{ address = "127.0.0.1:9002", wieght = 3 }, 7, "nowhere"]
        balance = "fastest"
        hash_key = "user"
        """
    guard case .failure(let error) = load(bad) else {
        Issue.record("accepted invalid targets")
        return
    }
    let text = error.description
    #expect(text.contains("unknown key 'wieght' in a target; did you mean 'weight'?"), "\(text)")
    #expect(text.contains("elements of 'targets' must be addresses or { address, weight, backup } tables, not an integer"), "\(text)")
    #expect(text.contains("not \"nowhere\""), "\(text)")
    #expect(text.contains("'balance' must be one of"), "\(text)")
    #expect(text.contains("'hash_key' must be"), "\(text)")
    #expect(text.contains("test.toml:6:"), "\(text)")
}

@Test func splitsAndRewritesAreValidated() throws {
    let upstreams = minimal + """
        [upstreams.v1]
        targets = ["127.0.0.1:9001"]

        [upstreams.v2]
        targets = ["127.0.0.1:9002"]

        """
    let good = upstreams + """
        [[routes]]
        path_prefix = "/api"
        split = [{ upstream = "v1", weight = 95 }, { upstream = "v2", weight = 5 }]
        split_key = "header:X-User"
        replace_prefix = "/v2"
        upstream_host = "internal"
        request_headers = { set = { "X-Env" = "prod" }, remove = ["X-Debug"] }
        """
    let configuration = try load(good).get()
    let route = try #require(configuration.routes.first)
    #expect(route.action == .split(targets: [.init(upstream: "v1", weight: 95), .init(upstream: "v2", weight: 5)],
        key: "header:X-User"))
    #expect(route.rewrite.replacePrefix == "/v2" && route.rewrite.upstreamHost == "internal")
    #expect(try load(configuration.renderTOML()).get().routes.first == route)

    let bad = upstreams + """
        [[routes]]
        split = [{ upstream = "v3", weight = 1 }]
        split_key = "path"
        strip_prefix = true
        replace_prefix = "x"
        request_headers = { set = { "Content-Length" = "1" } }

        [[routes]]
        respond = { status = 200 }
        rewrite = { regex = "(", replacement = "/x" }
        """
    guard case .failure(let error) = load(bad) else {
        Issue.record("accepted invalid splits and rewrites")
        return
    }
    let text = error.description
    for expected in ["splits to upstream 'v3', which is not defined", "'split_key' must be", "use one of 'strip_prefix'",
        "replace_prefix must start with '/'", "request_headers may not change 'Content-Length'",
        "rewrites what it forwards, but it does not proxy", "invalid regular expression"]
    {
        #expect(text.contains(expected), "\(expected) in \(text)")
    }
}

@Test func instanceWideConnectionLimitsAreReadAndRangeChecked() throws {
    #expect(try load(minimal).get().server.maxConnections == nil)
    let set = try load("[server]\nmax_connections = 6\nmax_connections_per_client = 4\n" + minimal).get()
    #expect(set.server.maxConnections == 6 && set.server.maxConnectionsPerClient == 4)
    guard case .failure(let error) = load("[server]\nmax_connections_per_client = -1\n" + minimal) else {
        Issue.record("expected an error")
        return
    }
    #expect(error.diagnostics.first?.location.line == 2)
    #expect(error.diagnostics.first?.message.contains("max_connections_per_client") == true)
}
