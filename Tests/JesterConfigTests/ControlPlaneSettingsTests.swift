// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import Testing

/// `[control_plane]` `address`: one control plane, or its replicas (sharing one etcd) tried in turn.

private func load(_ text: String) -> Result<Configuration, ConfigError> {
    do {
        return .success(try ConfigLoader(environment: [:]).load(text: text, file: "/etc/jester/jester.toml"))
    } catch {
        return .failure(error)
    }
}

private func messages(_ text: String) -> [String] {
    guard case .failure(let error) = load(text) else { return [] }
    return error.diagnostics.map(\.description)
}

private func document(_ address: String) -> String {
    """
    [control_plane]
    address = \(address)
    state_file = "/tmp/snapshot.json"

    [[listeners]]
    name = "web"
    address = "127.0.0.1:8080"

    """
}

@Test func oneAddressOrTheReplicasInOrder() throws {
    let one = try load(document("\"127.0.0.1:9401\"")).get().controlPlane
    #expect(one?.addresses.map(\.description) == ["127.0.0.1:9401"])
    let replicas = try load(document("[\"127.0.0.1:9401\", \"[::1]:9411\"]")).get().controlPlane
    #expect(replicas?.addresses.map(\.description) == ["127.0.0.1:9401", "[::1]:9411"])
    #expect(replicas?.address.description == "127.0.0.1:9401")
}

@Test func theDumpWritesTheReplicasBack() throws {
    let configuration = try load(document("[\"127.0.0.1:9401\", \"127.0.0.2:9401\"]")).get()
    let dump = configuration.renderTOML()
    #expect(dump.contains("address = [\"127.0.0.1:9401\", \"127.0.0.2:9401\"]\n"))
    #expect(try load(dump).get().controlPlane == configuration.controlPlane)
}

@Test func wrongAddressesAreRefusedAtTheirElement() {
    #expect(messages(document("[]")).contains { $0.contains("2:") && $0.contains("or an array of them") })
    #expect(messages(document("9401")).contains { $0.contains("or an array of them") })
    #expect(messages(document("[\"127.0.0.1:9401\", \"cp.internal:9401\"]")).contains {
        $0.contains("it is not looked up") && $0.contains("cp.internal:9401")
    })
    #expect(messages(document("[\"127.0.0.1:9401\", 9401]")).contains { $0.contains("not looked up") })
    #expect(messages(document("[\"127.0.0.1:9401\", \"127.0.0.1:9401\"]")).contains { $0.contains("twice") })
    // Off this host only with mutual TLS, whichever replica it is.
    #expect(messages(document("[\"127.0.0.1:9401\", \"192.0.2.1:9401\"]")).contains {
        $0.contains("192.0.2.1:9401") && $0.contains("mutual TLS")
    })
}

@Test func anOlderReleasesSettingsAreReadInAnUpgrade() throws {
    // The hand-over of a binary upgrade carries the configuration as JSON; before replicas it had `address`.
    let old = #"{"address": {"host": "127.0.0.1", "port": 9401}, "stateFile": "/tmp/s.json"}"#
    let settings = try JSONDecoder().decode(ControlPlaneSettings.self, from: Data(old.utf8))
    #expect(settings.addresses.map(\.description) == ["127.0.0.1:9401"])
    let replicas = try load(document("[\"127.0.0.1:9401\", \"127.0.0.2:9401\"]")).get().controlPlane!
    let written = try JSONEncoder().encode(replicas)
    #expect(try JSONDecoder().decode(ControlPlaneSettings.self, from: written) == replicas)
    // And what an older release reads from a newer one: the first address.
    let object = try JSONSerialization.jsonObject(with: written) as? [String: Any]
    #expect((object?["address"] as? [String: Any])?["host"] as? String == "127.0.0.1")
}

@Test func anEmptyFilesDirectoryIsRefused() {
    let text = document("\"127.0.0.1:9401\"").replacingOccurrences(
        of: "state_file = \"/tmp/snapshot.json\"", with: "state_file = \"/tmp/snapshot.json\"\nfiles = \"\"")
    #expect(messages(text).contains { $0.contains("'files' of [control_plane] cannot be empty") })
}

@Test func theControlPlanesCheckDoesNotLookForTheDataPlanesFiles() throws {
    // A data plane's bootstrap, checked by the control plane (--bootstrap): its files are on the data planes.
    let text = document("\"127.0.0.1:9401\"").replacingOccurrences(
        of: "state_file = \"/tmp/snapshot.json\"",
        with: "state_file = \"/tmp/snapshot.json\"\nfiles = \"/nonexistent/snapshot-files\"\n"
            + "ca = \"/nonexistent/ca.pem\"\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/c.key\"")
    let snapshot = ConfigSnapshot(version: "1", document: Array(
        #"{"routes": [{"name": "r", "respond": {"status": 200}, "error_pages": {"pages": {"404": "404.html"}}}]}"#.utf8))
    var loader = ConfigLoader(environment: [:])
    loader.snapshotFiles = .formOnlyWhereTheBootstrapSetsADirectory
    let configuration = try loader.load(text: text, file: "/etc/jester/jester.toml", snapshot: snapshot)
    #expect(configuration.controlPlane?.files == "/nonexistent/snapshot-files")
    // On a data plane they are looked for.
    loader.snapshotFiles = .read
    do {
        _ = try loader.load(text: text, file: "/etc/jester/jester.toml", snapshot: snapshot)
        Issue.record("the missing directory and certificate were not reported")
    } catch {
        let found = error.diagnostics.map(\.message)
        #expect(found.contains { $0.contains("/nonexistent/snapshot-files is not a directory") })
        #expect(found.contains { $0.contains("cannot read /nonexistent/ca.pem") })
    }
}
