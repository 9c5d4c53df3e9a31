// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterControl

/// The last snapshot a control plane pushed that this instance applied, kept in `[control_plane] state_file` so
/// that a master started while the control plane is unreachable serves what it served before, not only its
/// bootstrap file: `{"version": 7, "document": {...}}`, written whole, flushed and renamed into place.
enum LastGoodSnapshot {
    struct Unreadable: Error, CustomStringConvertible {
        var description: String
    }

    /// The snapshot in `path`; nil when there is none; throws when the file is there but unreadable.
    static func read(_ path: String) throws(Unreadable) -> AppliedSnapshot? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Unreadable(description: "cannot read \(path)")
        }
        let tree: JSONTree
        do {
            tree = try JSONTree.parse(Array(data))
        } catch {
            throw Unreadable(description: "\(path) is not JSON: \(error)")
        }
        guard let version = tree[member: "version"]?.integerValue, let document = tree[member: "document"] else {
            throw Unreadable(description: "\(path) has no version and document")
        }
        return AppliedSnapshot(
            version: version, document: document.serialized(), store: tree[member: "store"]?.stringValue)
    }

    static func write(_ applied: AppliedSnapshot, to path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var bytes = Array(#"{"version":"#.utf8) + Array(String(applied.version).utf8)
        if let store = applied.store { bytes += Array(#","store":"#.utf8) + JSONTree.string(store).serialized() }
        bytes += Array(#","document":"#.utf8)
        bytes += applied.snapshot.document
        bytes += Array("}\n".utf8)
        let temporary = path + ".new"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw Unreadable(description: "cannot create \(temporary): \(errno)") }
        defer { close(descriptor) }
        let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
        guard written == bytes.count, fsync(descriptor) == 0, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw Unreadable(description: "cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Loads `path` as the master starts: the file with the last good snapshot over it when there is one and it
    /// still loads (the file may have changed since), else the file alone, saying why.
    static func load(
        _ path: String, with loader: ConfigLoader, load: (String, ConfigSnapshot?) -> Result<Configuration, ConfigError>
    ) -> (configuration: Result<Configuration, ConfigError>, snapshot: AppliedSnapshot?, warning: String?) {
        let alone = load(path, nil)
        guard case .success(let configuration) = alone, let settings = configuration.controlPlane else {
            return (alone, nil, nil)
        }
        let applied: AppliedSnapshot?
        do {
            applied = try read(settings.stateFile)
        } catch {
            return (alone, nil, "the last good snapshot is unusable (\(error)); serving the file alone until the "
                + "control plane pushes a version")
        }
        guard let applied else { return (alone, nil, nil) }
        switch load(path, applied.snapshot) {
        case .success(let withSnapshot):
            return (.success(withSnapshot), applied, nil)
        case .failure(let error):
            return (alone, nil, "the last good snapshot (version \(applied.version)) no longer loads over the file: "
                + error.diagnostics.map(\.description).joined(separator: "; "))
        }
    }
}
