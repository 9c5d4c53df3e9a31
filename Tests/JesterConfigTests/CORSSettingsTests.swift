// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import Testing

/// `[filters.NAME]` with `kind = "cors"`: decoding, defaults, each error at its place (origins parsed by the
/// worker's own parser), `*` with credentials refused, the chain-order warning, the dump round trip, the schema and
/// the diag graph.

private let file = "/etc/jester/jester.toml"

private let head = """
    [[listeners]]
    name = "web"
    address = "127.0.0.1:8080"

    [upstreams.app]
    targets = ["127.0.0.1:9000"]

    [[routes]]
    path_prefix = "/api/"
    upstream = "app"
    filters = ["browsers"]

    """

private func load(_ text: String, file: String = file) throws -> Configuration {
    try ConfigLoader(environment: [:]).load(text: text, file: file)
}

/// The cors settings of the filter `browsers` in `text`.
private func settings(_ text: String) throws -> CORSSettings? {
    guard case .cors(let settings) = try load(text).filter(named: "browsers")?.kind else { return nil }
    return settings
}

/// Where `needle` first occurs in `text` (1-based line and column), as a diagnostic would say.
private func place(of needle: String, in text: String) -> JesterConfig.SourceLocation {
    let range = text.range(of: needle)!
    let before = text[..<range.lowerBound]
    let lineStart = before.lastIndex(of: "\n").map { text.index(after: $0) } ?? text.startIndex
    return JesterConfig.SourceLocation(file: file, line: before.filter { $0 == "\n" }.count + 1,
        column: text.distance(from: lineStart, to: range.lowerBound) + 1)
}

/// `filter` (the lines after `[filters.browsers]`) must be refused with `message` at `needle`.
private func expectError(
    _ filter: String, at needle: String, containing message: String,
    sourceLocation: Testing.SourceLocation = #_sourceLocation
) {
    let text = head + "[filters.browsers]\n" + filter
    do {
        _ = try load(text)
        Issue.record("accepted an invalid configuration", sourceLocation: sourceLocation)
    } catch let error as ConfigError {
        let expected = place(of: needle, in: text)
        #expect(
            error.diagnostics.contains { $0.location == expected && $0.message.contains(message) },
            "wanted \(expected): …\(message)…; got \(error.diagnostics.map(\.description))",
            sourceLocation: sourceLocation)
    } catch {
        Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
    }
}

@Test func decodesACORSFilter() throws {
    let decoded = try settings(head + """
        [filters.browsers]
        kind = "cors"
        allow_origins = ["https://app.example.com", "https://*.example.org", "http://localhost:3000"]
        allow_methods = ["GET", "POST", "PATCH"]
        allow_headers = ["Content-Type", "Authorization"]
        expose_headers = ["X-Total-Count"]
        allow_credentials = true
        max_age = "10m"
        allow_private_network = true
        """)
    #expect(decoded == CORSSettings(
        allowOrigins: .listed(["https://app.example.com", "https://*.example.org", "http://localhost:3000"]),
        allowMethods: .listed(["GET", "POST", "PATCH"]), allowHeaders: .listed(["Content-Type", "Authorization"]),
        exposeHeaders: .listed(["X-Total-Count"]), allowCredentials: true, maxAge: .seconds(600),
        allowPrivateNetwork: true))
}

@Test func aCORSFilterHasDefaultsAndStarsForAny() throws {
    let decoded = try #require(try settings(head + """
        [filters.browsers]
        kind = "cors"
        allow_origins = "*"
        """))
    #expect(decoded == CORSSettings(allowOrigins: .any))
    #expect(decoded.allowMethods == .listed(["GET", "HEAD", "POST"]) && decoded.allowHeaders == .listed([]))
    #expect(decoded.maxAge == nil && !decoded.allowCredentials && !decoded.allowPrivateNetwork)
    // `["*"]` is `"*"` too.
    let starred = try #require(try settings(head + """
        [filters.browsers]
        kind = "cors"
        allow_origins = ["*"]
        allow_methods = "*"
        allow_headers = ["*"]
        expose_headers = "*"
        """))
    #expect(starred == CORSSettings(allowOrigins: .any, allowMethods: .any, allowHeaders: .any, exposeHeaders: .any))
}

@Test func starOriginsWithCredentialsAreRefused() {
    expectError("kind = \"cors\"\nallow_origins = \"*\"\nallow_credentials = true\n", at: "allow_credentials",
        containing: "allow_credentials = true needs listed origins, not \"*\"")
    expectError("kind = \"cors\"\nallow_origins = [\"https://a.example.com\"]\nexpose_headers = \"*\"\n"
        + "allow_credentials = true\n", at: "expose_headers", containing: "expose_headers = \"*\" means the header")
}

@Test func corsOriginsAreCheckedWhereTheyAreWritten() {
    let base = "kind = \"cors\"\n"
    expectError(base + "allow_origins = [\"https://a.example.com\", \"https://b.example.com/\"]\n",
        at: "\"https://b.example.com/\"", containing: "'https://b.example.com/' does not have a valid host name")
    expectError(base + "allow_origins = [\"null\"]\n", at: "\"null\"", containing: "sandboxed frame")
    expectError(base + "allow_origins = [\"https://*.com\"]\n", at: "\"https://*.com\"",
        containing: "at least two labels")
    expectError(base + "allow_origins = [\"https://app.*.example.com\"]\n", at: "\"https://app.*",
        containing: "whole leftmost labels")
    expectError(base + "allow_origins = [\"app.example.com\"]\n", at: "\"app.example.com\"",
        containing: "is not an origin")
    expectError(base + "allow_origins = [\"*\", \"https://a.example.com\"]\n", at: "\"*\"",
        containing: "write allow_origins = \"*\" alone")
    expectError(base + "allow_origins = []\n", at: "allow_origins", containing: "needs at least one entry")
    expectError(base + "allow_origins = \"https://a.example.com\"\n", at: "allow_origins",
        containing: "'allow_origins' must be \"*\" or an array of strings")
    expectError(base + "allow_origins = [\"https://a.example.com\", \"https://a.example.com\"]\n",
        at: "\"https://a.example.com\"]", containing: "is already in 'allow_origins'")
    expectError(base + "allow_methods = [\"GET\"]\n", at: "[filters.browsers]", containing: "missing 'allow_origins'")
}

@Test func corsMethodsHeadersAndMaxAgeAreChecked() {
    let base = "kind = \"cors\"\nallow_origins = \"*\"\n"
    expectError(base + "allow_methods = [\"GET\", \"patch\"]\n", at: "\"patch\"",
        containing: "methods are case-sensitive: browsers send PATCH, not patch")
    expectError(base + "allow_methods = [\"GET POST\"]\n", at: "\"GET POST\"", containing: "is not a method")
    expectError(base + "allow_methods = []\n", at: "allow_methods", containing: "needs at least one entry")
    expectError(base + "allow_headers = [\"X Custom\"]\n", at: "\"X Custom\"", containing: "is not a header name")
    expectError(base + "allow_headers = [\"X-A\", \"x-a\"]\n", at: "\"x-a\"", containing: "already in 'allow_headers'")
    expectError(base + "expose_headers = [\"X:A\"]\n", at: "\"X:A\"", containing: "is not a header name")
    expectError(base + "expose_headers = [1]\n", at: "1]", containing: "elements of 'expose_headers' must be strings")
    expectError(base + "max_age = \"25h\"\n", at: "max_age", containing: "'max_age' must be between 0s and 24h")
    expectError(base + "allow_credentials = \"yes\"\n", at: "allow_credentials", containing: "true or false")
    // A key of another kind is named as such.
    expectError(base + "allow = [\"10.0.0.0/8\"]\n", at: "allow = ",
        containing: "'allow' is a key of ip_rules filters, not of cors ones")
}

@Test func aCORSFilterAfterAnAuthenticationIsWarnedAbout() throws {
    let htpasswd = FileManager.default.temporaryDirectory.appendingPathComponent("jester-cors-\(getpid()).htpasswd")
    try Data("alice:$2y$10$ru3z/x8UUm8gJ.ObWxDef.GMj2U95sLMlwBBh/xZKxbgUUaVPCbLS\n".utf8).write(to: htpasswd)
    defer { try? FileManager.default.removeItem(at: htpasswd) }
    let text = head.replacingOccurrences(of: "filters = [\"browsers\"]", with: "filters = [\"users\", \"browsers\"]")
        + """
        [filters.browsers]
        kind = "cors"
        allow_origins = "*"

        [filters.users]
        kind = "basic_auth"
        htpasswd = "\(htpasswd.path)"
        """
    let configuration = try load(text)
    #expect(configuration.warnings.contains {
        $0.message.contains("cors filter 'browsers' comes after 'users'") && $0.message.contains("preflights")
    }, "\(configuration.warnings)")
    // Before it, no warning.
    let before = try load(text.replacingOccurrences(of: "[\"users\", \"browsers\"]", with: "[\"browsers\", \"users\"]"))
    #expect(!before.warnings.contains { $0.message.contains("cors filter") })
}

@Test func aCORSFilterSurvivesADump() throws {
    let configuration = try load(head + """
        [filters.browsers]
        kind = "cors"
        allow_origins = ["https://app.example.com", "https://*.example.org"]
        allow_headers = "*"
        allow_credentials = true
        """)
    let dump = configuration.renderTOML()
    #expect(dump.contains("""
        [filters.browsers]
        kind = "cors"
        allow_origins = ["https://app.example.com", "https://*.example.org"]
        allow_methods = ["GET", "HEAD", "POST"]
        allow_headers = "*"
        expose_headers = []
        allow_credentials = true
        # max_age = none
        allow_private_network = false
        """), "\(dump)")
    let dumped = try load(dump, file: "/elsewhere/dump.toml")
    #expect(dumped.filters == configuration.filters && dumped.hash == configuration.hash)

    let withAge = try load(head + """
        [filters.browsers]
        kind = "cors"
        allow_origins = "*"
        max_age = "2h"
        """)
    #expect(withAge.renderTOML().contains("max_age = \"2h\""))
    #expect(try load(withAge.renderTOML()).filters == withAge.filters)
}

@Test func theSchemaTheManualAndTheGraphKnowCORS() throws {
    let schema = ConfigSchema.jsonSchema()
    for key in ["\"cors\"", "\"allow_origins\"", "\"expose_headers\"", "\"allow_private_network\""] {
        #expect(schema.contains(key), "JSON Schema lacks \(key)")
    }
    #expect(ConfigSchema.manualReference().contains(".SS [filters.NAME], kind = cors\n"))

    let configuration = try load(head + """
        [filters.browsers]
        kind = "cors"
        allow_origins = ["https://app.example.com"]
        allow_credentials = true
        max_age = "10m"
        """)
    #expect(configuration.redactingSecrets().filters == configuration.filters, "nothing of cors is secret")
    let graph = ConfigGraph(configuration)
    let filter = try #require(graph.filters.first { $0.name == "browsers" })
    #expect(filter.kind == .cors)
    #expect(filter.settings.map(\.key) == ["allow_origins", "allow_methods", "allow_credentials", "max_age"])
    #expect(graph.render(.text).contains(
        "browsers (cors): allow_origins https://app.example.com; allow_methods GET, HEAD, POST"),
        "\(graph.render(.text))")
}
