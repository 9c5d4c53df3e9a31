// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import Testing

/// One grammar for the loader, the schema and the dump (issue 19), and the checks `config validate` must share
/// with start: listener addresses, includes, routes that can never match, redirect placeholders.

private func load(_ text: String, environment: [String: String] = [:], file: String = "test.toml")
    -> Result<Configuration, ConfigError>
{
    do {
        return .success(try ConfigLoader(environment: environment).load(text: text, file: file))
    } catch {
        return .failure(error)
    }
}

private func messages(_ text: String, environment: [String: String] = [:]) -> [String] {
    guard case .failure(let error) = load(text, environment: environment) else { return [] }
    return error.diagnostics.map(\.description)
}

private let listener = "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:8080\"\n"

@Test(arguments: [
    ("\"1h30m\"", "must be a duration: a number and one unit such as \"90m\", \"10s\", \"500ms\" (ms, s, m, h, d); not \"1h30m\""),
    ("75", "must be a duration with a unit: write \"75s\""),
    ("\"75\"", "must be a duration with a unit: write \"75s\""),
    ("\" 10s\"", "must be a duration: a number and one unit"),
    ("true", "must be a duration: a number and one unit such as \"90m\", \"10s\", \"500ms\" (ms, s, m, h, d), not a boolean"),
])
func durationsMustHaveOneUnit(value: String, expected: String) {
    let found = messages(listener + "[http]\nkeepalive_timeout = \(value)\n")
    #expect(found.count == 1 && found[0].hasPrefix("test.toml:5:1: error: 'keepalive_timeout' in [http] ")
        && found[0].contains(expected), "\(found)")
}

@Test(arguments: [("\"500ms\"", Duration.milliseconds(500)), ("\"10s\"", .seconds(10)), ("\"2m\"", .seconds(120)),
    ("\"1h\"", .seconds(3600)), ("\"7d\"", .seconds(7 * 86400)), ("\"0s\"", .zero)])
func durationsInEveryUnit(value: String, expected: Duration) throws {
    let configuration = try load(listener + "[http]\nkeepalive_timeout = \(value)\n").get()
    #expect(configuration.http.keepaliveTimeout == expected)
}

@Test func integersAreWrittenWithoutQuotesUnlessTheyComeFromTheEnvironment() throws {
    let found = messages(listener + "[server]\nworkers = \"2\"\n")
    #expect(found == ["test.toml:5:1: error: 'workers' in [server] must be an integer: write 2 without quotes"])
    let substituted = try load(listener + "[server]\nworkers = \"${WORKERS:-3}\"\n").get()
    #expect(substituted.server.workers == 3)
    let fromVariable = try load(listener + "[server]\nworkers = \"${WORKERS}\"\n", environment: ["WORKERS": "5"]).get()
    #expect(fromVariable.server.workers == 5)
    let notANumber = messages(listener + "[server]\nworkers = \"${WORKERS}\"\n", environment: ["WORKERS": "many"])
    #expect(notANumber.first?.contains("must be an integer from 1 to 1024, not \"many\"") == true, "\(notANumber)")
}

@Test func sizesAreBytesOrANumberAndAUnit() throws {
    let configuration = try load(listener + "[http]\nmax_body_size = \"16k\"\nmax_request_head_size = 4096\n").get()
    #expect(configuration.http.maxBodySize == 16 * 1024 && configuration.http.maxRequestHeadSize == 4096)
    #expect(messages(listener + "[http]\nmax_body_size = \"4096\"\n").first?
        .contains("must be a size: write 4096 without quotes (bytes) or with a unit, \"4096KiB\"") == true)
    #expect(messages(listener + "[http]\nmax_body_size = \"10 megs\"\n").first?
        .contains("must be a size: a number and a unit such as \"16KiB\"") == true)
    let fromVariable = try load(listener + "[http]\nmax_body_size = \"${LIMIT}\"\n", environment: ["LIMIT": "2048"]).get()
    #expect(fromVariable.http.maxBodySize == 2048)
}

@Test func unitsAreWrittenBackAsTheyAreRead() {
    #expect(Units.formatSize(16 * 1024) == "\"16KiB\"" && Units.formatSize(10_000_000) == "\"10MB\"")
    #expect(Units.formatSize(1000 + 1) == "1001" && Units.formatSize(0) == "0")
    for bytes: Int64 in [1, 1024, 1 << 30, 3_000, 12_345] {
        let written = Units.formatSize(bytes)
        let parsed = written.hasPrefix("\"") ? Units.size(String(written.dropFirst().dropLast())) : Int64(written)
        #expect(parsed == bytes, "\(written)")
    }
    for duration: Duration in [.milliseconds(250), .seconds(59), .seconds(3600), .seconds(86400 * 365)] {
        #expect(Units.duration(Units.format(duration)) == duration)
    }
}

@Test func listenersBindIPAddressesNotHostNames() {
    let found = messages("[[listeners]]\nname = \"web\"\naddress = \"localhost:19703\"\n")
    #expect(found == [
        "test.toml:3:1: error: 'address' in [[listeners]] must be an IP address and port, not the host name "
            + "\"localhost\": listeners bind IP addresses: use \"127.0.0.1:19703\" or \"[::1]:19703\""
    ])
    // Upstream targets keep host names: the master resolves them.
    let targets = load(listener + "[upstreams.app]\ntargets = [\"app.internal:9000\", { address = \"db:5432\" }]\n")
    #expect((try? targets.get())?.upstreams.first?.targets.count == 2)
}

@Test func includesAreLoadedOnceAndALiteralMissingFileIsAnError() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("jester-grammar-\(UUID())")
    try FileManager.default.createDirectory(at: directory.appendingPathComponent("conf.d"), withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    try "[[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nrespond = { status = 200 }\n"
        .write(to: directory.appendingPathComponent("conf.d/api.toml"), atomically: true, encoding: .utf8)
    let main = directory.appendingPathComponent("jester.toml").path
    // Two patterns match api.toml: it is read once (no duplicate route, no "already set" at itself).
    try ("include = [\"conf.d/*.toml\", \"conf.d/api.toml\", \"./conf.d/api.toml\", \"empty.d/*.toml\"]\n" + listener)
        .write(toFile: main, atomically: true, encoding: .utf8)
    let configuration = try ConfigLoader(environment: [:]).load(file: main)
    #expect(configuration.routes.map(\.name) == ["api"])
    #expect(configuration.files.count == 2)
    try ("include = [\"conf.d/*.toml\", \"sites.toml\"]\n" + listener).write(toFile: main, atomically: true, encoding: .utf8)
    do {
        _ = try ConfigLoader(environment: [:]).load(file: main)
        Issue.record("a missing literal include was accepted")
    } catch {
        #expect(error.diagnostics.map(\.description) == [
            "\(main):1:29: error: included file \(directory.path)/sites.toml does not exist"
        ])
    }
}

@Test func aRouteThatCanNeverMatchIsAWarningNamingBoth() throws {
    let configuration = try load(listener + """
        [[routes]]
        name = "first"
        path_prefix = "/app"
        respond = { status = 200 }
        [[routes]]
        name = "copy"
        path_prefix = "/app"
        respond = { status = 201 }
        [[routes]]
        name = "posts"
        path_prefix = "/app"
        methods = ["POST"]
        respond = { status = 202 }
        [[routes]]
        name = "other-host"
        hosts = ["example.com"]
        path_prefix = "/app"
        respond = { status = 203 }
        """).get()
    #expect(configuration.warnings.map(\.description) == [
        "test.toml:8:1: warning: route 'copy' can never match: route 'first' at test.toml:4:1 has the same "
            + "listeners, hosts and path and no other condition, and is tried first"
    ])
}

@Test func redirectPlaceholdersAreCheckedAtTheirKey() throws {
    let good = try load(listener + "[[routes]]\nredirect = { status = 308, location = \"https://{hostname}{target}\" }\n").get()
    #expect(good.routes.first?.action == .redirect(status: 308, location: "https://{hostname}{target}"))
    let found = messages(listener + "[[routes]]\nredirect = { status = 308, location = \"https://{hots}{target}\" }\n")
    #expect(found.count == 1 && found[0].hasPrefix("test.toml:5:") && found[0].contains("redirect location"), "\(found)")
}

@Test func theSchemaAllowsSubstitutionsAndTheLoadersUnits() throws {
    let schema = try #require(try JSONSerialization.jsonObject(with: Data(ConfigSchema.jsonSchema().utf8)) as? [String: Any])
    #expect(schema["$schema"] as? String == "https://json-schema.org/draft/2020-12/schema")
    let text = ConfigSchema.jsonSchema()
    #expect(text.contains(Units.durationPattern.replacingOccurrences(of: "\\", with: "\\\\")))
    #expect(text.contains("(ms|s|m|h|d)"))
    let fragment = try #require(
        try JSONSerialization.jsonObject(with: Data(ConfigSchema.jsonSchema(.fragment).utf8)) as? [String: Any])
    let properties = try #require(fragment["properties"] as? [String: Any])
    #expect(properties["include"] == nil && properties["routes"] != nil && properties["server"] != nil)
}

/// The dump names every key that has a default (set, or commented with its default), in every table that
/// appears in it.
@Test func theDumpIsCompleteAndLoadsBackEqual() throws {
    let configuration = try load(listener + """
        [upstreams.app]
        targets = ["127.0.0.1:9000"]
        [filters.limit]
        kind = "rate_limit"
        rate = 10
        [filters.token]
        kind = "jwt"
        algorithms = ["RS256"]
        jwks_url = "https://keys.example.com/jwks.json"
        [[routes]]
        upstream = "app"
        filters = ["limit"]
        """).get()
    let dump = configuration.renderTOML()
    let written = Set(dump.split(separator: "\n").compactMap { line -> String? in
        let text = line.hasPrefix("# ") ? line.dropFirst(2) : line[...]
        guard let equals = text.range(of: " = ") else { return nil }
        return String(text[..<equals.lowerBound])
    })
    let tables: [ConfigSchema.Table] = [ConfigSchema.server, ConfigSchema.log, ConfigSchema.http, ConfigSchema.listener,
        ConfigSchema.upstream, ConfigSchema.route, ConfigSchema.rateLimitFilter, ConfigSchema.jwtFilter]
    for table in tables {
        for field in table.fields where field.defaultValue != nil {
            #expect(written.contains(field.name), "\(table.title) '\(field.name)' is missing from the dump")
        }
    }
    #expect(dump.contains("max_body_size = \"10MiB\"") && dump.contains("max_request_head_size = \"16KiB\""))
    #expect(dump.contains("http2_max_concurrent_streams") && dump.contains("connection_request_rate"))
    var dumped = try ConfigLoader(environment: [:]).load(text: dump, file: "dump.toml")
    dumped.files = configuration.files
    dumped.warnings = configuration.warnings  // the same warning, at the dump's line
    #expect(dumped == configuration)
}
