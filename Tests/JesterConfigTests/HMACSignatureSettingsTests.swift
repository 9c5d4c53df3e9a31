// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import Testing

/// `[filters.NAME]` with `kind = "hmac_signature"`: decoding, defaults, each error at its place, the dump round
/// trip, redaction and the diag graph.

/// A directory with the secrets the tests read, made once per test process.
private let directory: String = {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("jester-hmac-\(getpid())").path
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    let files = [
        "webhook.secret": "It's a Secret to Everybody\n",
        "crlf.secret": "s3cret\r\n",
        "empty.secret": "\n",
    ]
    for (name, content) in files {
        FileManager.default.createFile(atPath: path + "/" + name, contents: Data(content.utf8))
    }
    return path
}()

private let head = """
    [[listeners]]
    name = "web"
    address = "127.0.0.1:8080"

    [upstreams.app]
    targets = ["127.0.0.1:9000"]

    [[routes]]
    path_prefix = "/hooks/"
    upstream = "app"
    filters = ["github"]

    """

private func load(_ text: String, file: String = directory + "/jester.toml") throws -> Configuration {
    try ConfigLoader(environment: [:]).load(text: text, file: file)
}

/// The hmac_signature settings of the filter `github` in `text`.
private func settings(_ text: String) throws -> HMACSignatureSettings? {
    guard case .hmacSignature(let settings) = try load(text).filter(named: "github")?.kind else { return nil }
    return settings
}

/// Where `needle` first occurs in `text` (1-based line and column), as a diagnostic would say.
private func place(of needle: String, in text: String) -> JesterConfig.SourceLocation {
    let range = text.range(of: needle)!
    let before = text[..<range.lowerBound]
    let lineStart = before.lastIndex(of: "\n").map { text.index(after: $0) } ?? text.startIndex
    return JesterConfig.SourceLocation(file: directory + "/jester.toml", line: before.filter { $0 == "\n" }.count + 1,
        column: text.distance(from: lineStart, to: range.lowerBound) + 1)
}

/// `filter` (the lines after `[filters.github]`) must be refused with `message` at `needle`.
private func expectError(
    _ filter: String, at needle: String, containing message: String,
    sourceLocation: Testing.SourceLocation = #_sourceLocation
) {
    let text = head + "[filters.github]\n" + filter
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

@Test func decodesAnHMACSignatureFilter() throws {
    let decoded = try settings(head + """
        [filters.github]
        kind = "hmac_signature"
        header = "X-Hub-Signature-256"
        algorithm = "sha512"
        encoding = "base64"
        prefix = "sha512="
        secret_file = "webhook.secret"
        max_body = "2m"
        """)
    #expect(decoded == HMACSignatureSettings(
        header: "X-Hub-Signature-256", secretFile: directory + "/webhook.secret",
        secret: Data("It's a Secret to Everybody".utf8), algorithm: .sha512, encoding: .base64, prefix: "sha512=",
        maxBody: 2 << 20))
}

@Test func anHMACSignatureFilterHasDefaultsAndItsSecretLosesTheFinalLineEnd() throws {
    let decoded = try #require(try settings(head + """
        [filters.github]
        kind = "hmac_signature"
        header = "X-Signature"
        secret_file = "\(directory)/crlf.secret"
        """))
    #expect(decoded.algorithm == .sha256 && decoded.encoding == .hex && decoded.prefix == "")
    #expect(decoded.maxBody == 1 << 20)
    #expect(decoded.secret == Data("s3cret".utf8), "CR LF at the end is not part of the secret")
}

@Test func hmacSignatureRequiresHeaderAndSecretFile() {
    expectError("kind = \"hmac_signature\"\nsecret_file = \"webhook.secret\"\n", at: "[filters.github]",
        containing: "is missing 'header'")
    expectError("kind = \"hmac_signature\"\nheader = \"X-Sig\"\n", at: "[filters.github]",
        containing: "is missing 'secret_file'")
}

@Test func hmacSignatureValuesAreCheckedWhereTheyAreWritten() {
    let base = "kind = \"hmac_signature\"\nsecret_file = \"webhook.secret\"\n"
    expectError(base + "header = \"X-Sig\"\nalgorithm = \"sha1\"\n", at: "algorithm = ",
        containing: "'algorithm' must be one of \"sha256\", \"sha384\", \"sha512\"")
    expectError(base + "header = \"X-Sig\"\nencoding = \"base32\"\n", at: "encoding = ",
        containing: "'encoding' must be one of \"hex\", \"base64\"")
    expectError(base + "header = \"X Sig\"\n", at: "header = \"X Sig\"", containing: "'X Sig' is not a header name")
    expectError(base + "header = \"X-Sig\"\nprefix = \" sha256=\"\n", at: "prefix = \" sha",
        containing: "'prefix' must be printable ASCII")
    expectError(base + "header = \"X-Sig\"\nmax_body = \"17MiB\"\n", at: "max_body = ",
        containing: "'max_body' must be between 1 byte and 16MiB")
    expectError(base + "header = \"X-Sig\"\nmax_body = 0\n", at: "max_body = 0",
        containing: "'max_body' must be between 1 byte and 16MiB")
    // A key of another kind is named as such.
    expectError(base + "header = \"X-Sig\"\nalgorithms = [\"HS256\"]\n", at: "algorithms",
        containing: "'algorithms' is a key of jwt filters, not of hmac_signature ones")
}

@Test func anHMACSecretThatCannotBeReadOrIsEmptyIsAnErrorAtSecretFile() {
    let base = "kind = \"hmac_signature\"\nheader = \"X-Sig\"\n"
    expectError(base + "secret_file = \"missing.secret\"\n", at: "secret_file",
        containing: "cannot read \(directory)/missing.secret")
    expectError(base + "secret_file = \"empty.secret\"\n", at: "secret_file",
        containing: "the secret in \(directory)/empty.secret is empty")
}

@Test func anHMACSignatureFilterSurvivesADumpWithoutItsSecret() throws {
    let configuration = try load(head + """
        [filters.github]
        kind = "hmac_signature"
        header = "X-Hub-Signature-256"
        prefix = "sha256="
        secret_file = "webhook.secret"
        max_body = 65536
        """)
    let dump = configuration.renderTOML()
    #expect(dump.contains("""
        [filters.github]
        kind = "hmac_signature"
        header = "X-Hub-Signature-256"
        algorithm = "sha256"
        encoding = "hex"
        prefix = "sha256="
        secret_file = "\(directory)/webhook.secret"
        max_body = "64KiB"
        """))
    #expect(!dump.contains("Everybody"), "the dump names the secret's file, never the secret")
    // Loaded from another directory, the dump reads the same file (its path is absolute).
    let dumped = try load(dump, file: "/elsewhere/dump.toml")
    #expect(dumped.filters == configuration.filters && dumped.hash == configuration.hash)
}

@Test func theSchemaTheManualAndTheGraphKnowHMACSignatureButNotItsSecret() throws {
    let schema = ConfigSchema.jsonSchema()
    for key in ["\"hmac_signature\"", "\"max_body\"", "\"sha384\"", "\"base64\""] {
        #expect(schema.contains(key), "JSON Schema lacks \(key)")
    }
    #expect(ConfigSchema.manualReference().contains(".SS [filters.NAME], kind = hmac_signature\n"))

    let configuration = try load(head + """
        [filters.github]
        kind = "hmac_signature"
        header = "X-Hub-Signature-256"
        prefix = "sha256="
        secret_file = "webhook.secret"
        """)
    let redacted = configuration.redactingSecrets()
    guard case .hmacSignature(let settings) = redacted.filter(named: "github")?.kind else {
        Issue.record("not an hmac_signature filter")
        return
    }
    #expect(settings.secret == Data(ConfigRedaction.placeholder.utf8))
    #expect(settings.secretFile == directory + "/webhook.secret")

    let graph = ConfigGraph(configuration)
    let filter = try #require(graph.filters.first { $0.name == "github" })
    #expect(filter.kind == .hmacSignature)
    #expect(filter.settings.map(\.key) == ["header", "algorithm", "encoding", "prefix", "secret_file", "secret",
        "max_body"])
    #expect(filter.settings.first { $0.key == "secret" }?.value == ConfigRedaction.placeholder)
    #expect(filter.settings.first { $0.key == "max_body" }?.value == "1MiB")
    #expect(graph.listeners.first?.routes.first?.filters
        == [.init(name: "github", kind: .hmacSignature, from: .route)])
    for format in ConfigGraph.Format.allCases {
        #expect(!graph.render(format).contains("Everybody"), "the \(format) graph never shows the secret")
    }
    #expect(graph.render(.text).contains("github (hmac_signature): header X-Hub-Signature-256; algorithm sha256"))
}
