// SPDX-License-Identifier: Apache-2.0
import Foundation
@testable import JesterConfig
import Testing

/// A control plane's snapshot laid over the bootstrap file (issue 25): which keys it may set, how they take
/// precedence, and errors that point at the field with a JSON pointer. The values are checked by the same
/// decoder as the file's (its own tests cover them); these hold the overlay to its rules.

private let bootstrap = """
    [[listeners]]
    name = "public"
    address = "127.0.0.1:8080"

    [upstreams.app]
    targets = ["127.0.0.1:9000"]

    [[routes]]
    name = "from-file"
    respond = { status = 200, body = "bootstrap" }
    """

private func load(_ json: String, environment: [String: String] = [:]) throws(ConfigError) -> Configuration {
    try ConfigLoader(environment: environment).load(
        text: bootstrap, file: "jester.toml", snapshot: ConfigSnapshot(version: "7", document: Array(json.utf8)))
}

private func diagnostics(_ json: String) -> [ConfigDiagnostic] {
    do {
        _ = try load(json)
        return []
    } catch {
        return error.diagnostics
    }
}

@Test func aSnapshotsKeysReplaceTheFilesAndTheRestStays() throws {
    let configuration = try load("""
        {"routes": [{"name": "api", "path_prefix": "/api/", "upstream": "api"}],
         "upstreams": {"api": {"targets": ["127.0.0.1:9100"]}}}
        """)
    // Routes replaced whole: the file's route is gone.
    #expect(configuration.routes.map(\.name) == ["api"])
    // Upstreams replaced whole too: the file's "app" is not merged in beside "api".
    #expect(configuration.upstreams.map(\.name) == ["api"])
    // The bootstrap file's own keys are untouched.
    #expect(configuration.listeners.map(\.name) == ["public"])
}

@Test func keysTheSnapshotLeavesOutKeepTheFilesValues() throws {
    let configuration = try load(#"{"routes": [{"name": "app", "upstream": "app"}]}"#)
    #expect(configuration.routes.map(\.name) == ["app"])
    #expect(configuration.upstreams.map(\.name) == ["app"])
}

@Test func anEmptySnapshotIsTheBootstrapFile() throws {
    let plain = try ConfigLoader(environment: [:]).load(text: bootstrap, file: "jester.toml")
    let overlaid = try load("{}")
    #expect(overlaid.hash == plain.hash)
}

@Test func bootstrapOnlyKeysAreRefusedWithTheReason() {
    let found = diagnostics(#"{"listeners": [], "server": {"workers": 2}}"#)
    #expect(found.map(\.location.pointer) == ["/listeners", "/server"])
    #expect(found.allSatisfy { $0.message.contains("the bootstrap file's to set, not a snapshot's") })
    #expect(found.first?.description.hasPrefix("snapshot 7#/listeners: error:") == true)
}

@Test func unknownKeysAreRefusedWithASuggestion() {
    let found = diagnostics(#"{"rutes": []}"#)
    #expect(found.map(\.message) == ["unknown key 'rutes' (did you mean 'routes'?)"])
}

@Test func errorsInValuesPointAtTheField() {
    let found = diagnostics("""
        {"routes": [{"name": "ok", "respond": {"status": 200}},
                    {"name": "api", "path_prefix": 5, "upstream": "missing"}]}
        """)
    let pointers = Set(found.compactMap(\.location.pointer))
    #expect(pointers.contains("/routes/1/path_prefix"))
    #expect(pointers.contains("/routes/1/upstream"))
    #expect(found.allSatisfy { $0.location.file == "snapshot 7" })
}

@Test func pointerTokensEscapeSlashAndTilde() {
    #expect(ConfigNode.escapedPointerToken("a/b~c") == "a~1b~0c")
    let found = diagnostics(#"{"upstreams": {"a/b~c": {"targets": "not-an-array"}}}"#)
    #expect(found.contains { $0.location.pointer == "/upstreams/a~1b~0c/targets" })
}

@Test func theDocumentMustBeAJSONObject() {
    #expect(diagnostics("[]").map(\.message)
        == ["a snapshot is a JSON object of routes, upstreams, filters and policies, not an array"])
    let broken = diagnostics(#"{"routes": ["#)
    #expect(broken.count == 1)
    #expect(broken.first?.message.hasPrefix("invalid JSON: ") == true)
    #expect(broken.first?.location.pointer == "")
    // A name given twice could be read two ways: refused by the parser.
    #expect(diagnostics(#"{"routes": [], "routes": []}"#).first?.message.hasPrefix("invalid JSON") == true)
}

@Test func nullAndOutOfRangeNumbersAreTypeErrors() {
    let found = diagnostics(#"{"upstreams": {"api": {"targets": null}}}"#)
    #expect(found.contains { $0.location.pointer == "/upstreams/api/targets" && $0.message.contains("null") })
    let huge = diagnostics(#"{"routes": [{"name": "x", "respond": {"status": 1e999999}}]}"#)
    #expect(!huge.isEmpty)
}

@Test func theEnvironmentIsNotExpandedInASnapshot() throws {
    let configuration = try load(
        #"{"routes": [{"name": "leak", "respond": {"status": 200, "body": "${SECRET}"}}]}"#,
        environment: ["SECRET": "hunter2"])
    guard case .respond(_, _, let body) = configuration.routes.first?.action else {
        Issue.record("expected a fixed answer")
        return
    }
    #expect(body == "${SECRET}")
}

@Test func theBootstrapFileIsStillExpandedBeneathASnapshot() throws {
    let text = #"[[listeners]]\#nname = "public"\#naddress = "${ADDRESS}"\#n"#
    let configuration = try ConfigLoader(environment: ["ADDRESS": "127.0.0.1:8181"]).load(
        text: text, file: "jester.toml",
        snapshot: ConfigSnapshot(version: "1", document: Array(#"{"routes": [{"name": "r", "respond": {"status": 204}}]}"#.utf8)))
    #expect(configuration.listeners.first?.address.port == 8181)
}

@Test func aSnapshotCannotNameFilesOnTheHost() {
    // The master runs as root: an error page would serve the file, an upstream's TLS key would be presented, a
    // policy module would be loaded. Each is refused at its field, and nothing is read.
    let found = diagnostics("""
        {"routes": [{"name": "leak", "respond": {"status": 200}, "error_pages": {"pages": {"404": "/etc/shadow"}}}],
         "upstreams": {"u": {"targets": ["127.0.0.1:9"], "tls": {"ca": "/etc/ssl/certs/ca-certificates.crt"}}},
         "policies": {"p": {"module": "/usr/lib/x.wasm"}}}
        """)
    let refused = found.filter { $0.message.hasPrefix("a snapshot cannot name files on the host") }
    #expect(Set(refused.compactMap(\.location.pointer))
        == ["/routes/0/error_pages/pages/404", "/upstreams/u/tls/ca", "/policies/p/module"])
    #expect(refused.first { $0.location.pointer == "/routes/0/error_pages/pages/404" }?.message.contains("/etc/shadow") == true)
}

@Test func aSnapshotNamesFilesOnlyInTheDirectoryTheBootstrapSetsAside() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("snapshot-files-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    try Data("<h1>gone</h1>\n".utf8).write(to: directory.appendingPathComponent("404.html"))
    let page = #"{"routes": [{"name": "r", "respond": {"status": 200}, "error_pages": {"pages": {"404": "404.html"}}}]}"#
    let missing = #"{"routes": [{"name": "r", "respond": {"status": 200}, "error_pages": {"pages": {"404": "x.html"}}}]}"#
    let escape = #"{"routes": [{"name": "r", "respond": {"status": 200}, "error_pages": {"pages": {"404": "a/../../x"}}}]}"#
    let withFiles = bootstrap + """

        [control_plane]
        address = "127.0.0.1:9401"
        state_file = "/tmp/unused.json"
        files = "\(directory.path)"
        """
    func problems(_ text: String, _ json: String, check: ConfigLoader.SnapshotFileCheck = .read) -> [String] {
        var loader = ConfigLoader(environment: [:])
        loader.snapshotFiles = check
        do {
            _ = try loader.load(text: text, file: "jester.toml", snapshot: ConfigSnapshot(version: "7", document: Array(json.utf8)))
            return []
        } catch {
            return error.diagnostics.map(\.message)
        }
    }
    // Read from the directory.
    let configuration = try ConfigLoader(environment: [:]).load(
        text: withFiles, file: "jester.toml", snapshot: ConfigSnapshot(version: "7", document: Array(page.utf8)))
    #expect(configuration.routes.first?.errorPages?.pages.first.map { String(decoding: $0.body, as: UTF8.self) }
        == "<h1>gone</h1>\n")
    // Missing there: the data plane refuses the version, naming the file.
    #expect(problems(withFiles, missing).contains { $0.contains("cannot read \(directory.path)/x.html") })
    // Without a directory, or climbing out of it: refused.
    #expect(problems(bootstrap, page).contains { $0.contains("sets no 'files' directory") })
    #expect(problems(withFiles, escape).contains { $0.hasPrefix("a snapshot cannot name files on the host") })
    // The control plane's check: the name's form only; over a real bootstrap, only where it sets a directory.
    #expect(problems(bootstrap, missing, check: .formOnly).isEmpty)
    #expect(problems(bootstrap, escape, check: .formOnly).contains { $0.hasPrefix("a snapshot cannot name files on the host") })
    #expect(problems(bootstrap, missing, check: .formOnlyWhereTheBootstrapSetsADirectory).contains {
        $0.contains("sets no 'files' directory")
    })
    #expect(problems(withFiles, missing, check: .formOnlyWhereTheBootstrapSetsADirectory).isEmpty)
}

private let bootstrapWithAListenerFilter = """
    [[listeners]]
    name = "public"
    address = "127.0.0.1:8080"
    filters = ["guard"]

    [filters.guard]
    kind = "ip_rules"
    allow = ["127.0.0.0/8"]
    """

@Test func namesTheFilesListenersUseStayTheFiles() throws {
    let snapshot = ConfigSnapshot(version: "3", document: Array("""
        {"filters": {"burst": {"kind": "ip_rules", "deny": ["192.0.2.0/24"]}},
         "routes": [{"name": "r", "filters": ["burst"], "respond": {"status": 204}}]}
        """.utf8))
    let configuration = try ConfigLoader(environment: [:]).load(
        text: bootstrapWithAListenerFilter, file: "jester.toml", snapshot: snapshot)
    // The snapshot's filters replaced the file's, except the one the file's listener uses, which stays.
    #expect(configuration.filters.map(\.name) == ["burst", "guard"])
}

@Test func aSnapshotCannotRedefineWhatTheFilesListenersUse() {
    let snapshot = ConfigSnapshot(version: "3", document: Array("""
        {"filters": {"guard": {"kind": "ip_rules", "allow": ["0.0.0.0/0"]}}}
        """.utf8))
    do {
        _ = try ConfigLoader(environment: [:]).load(
            text: bootstrapWithAListenerFilter, file: "jester.toml", snapshot: snapshot)
        Issue.record("a snapshot opened the file's listener filter")
    } catch {
        #expect(error.diagnostics.map(\.location.pointer) == ["/filters/guard"])
        #expect(error.diagnostics.first?.message
            == "filter 'guard' is the bootstrap file's (its listener 'public' uses it); a snapshot cannot redefine it")
    }
}

@Test func nullIsRefusedEvenWhereAnyValueGoes() {
    // A policy's config takes free-form values; null would have become the string "null".
    let found = diagnostics(#"{"routes": [{"name": "r", "respond": {"status": 204, "body": null}}]}"#)
    #expect(found.contains { $0.location.pointer == "/routes/0/respond/body" && $0.message.hasPrefix("null is not") })
}

@Test func controlCharactersInAVersionAreNotPrinted() {
    #expect(ConfigSnapshot(version: "7\nerror: forged", document: []).name == "snapshot 7?error: forged")
}
