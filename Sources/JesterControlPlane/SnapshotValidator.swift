// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterControl

/// Checks a document with the configuration loader the data planes use, so the API refuses what a data plane
/// would refuse and says so at the field.
///
/// A snapshot is only ever loaded over a bootstrap file. The control plane checks it over a representative one:
/// by default a single plain listener that names nothing, so a document is checked on its own (its routes must
/// name its own upstreams, filters and policies); `--bootstrap FILE` checks over a fleet's real file instead,
/// whose upstreams routes may then name and whose listeners' own names a document may not redefine. What only a
/// data plane can know is still its to refuse, as a NACK: the files a document names (checked here in form only:
/// relative, without `..`; over `--bootstrap`, refused unless it sets `[control_plane] files`) are read from each
/// data plane's `files` directory.
public struct SnapshotValidator: Sendable {
    /// The bootstrap text documents are laid over, and the name its diagnostics carry.
    public var bootstrapText: String
    public var bootstrapFile: String

    /// One listener, no names: a document that checks over it stands on its own.
    public static let standaloneBootstrap = """
        [[listeners]]
        name = "control-plane-check"
        address = "127.0.0.1:1"

        """

    /// What diagnostics call the standalone bootstrap.
    public static let standaloneFile = "(standalone check)"

    /// Whether documents are checked on their own (no `--bootstrap`).
    public var isStandalone: Bool { bootstrapText == Self.standaloneBootstrap && bootstrapFile == Self.standaloneFile }

    public init(bootstrapText: String = Self.standaloneBootstrap, bootstrapFile: String = Self.standaloneFile) {
        self.bootstrapText = bootstrapText
        self.bootstrapFile = bootstrapFile
    }

    /// The document's problems (none: a data plane with this bootstrap would load it). Problems in the
    /// bootstrap file itself (there should be none; it was checked at start) carry an empty pointer.
    public func problems(_ document: [UInt8]) -> [FieldProblem] {
        // The control plane's environment fills in the bootstrap's `${VAR}`s; a snapshot's strings are never
        // interpolated.
        var loader = ConfigLoader()
        loader.snapshotFiles = isStandalone ? .formOnly : .formOnlyWhereTheBootstrapSetsADirectory
        do {
            _ = try loader.load(
                text: bootstrapText, file: bootstrapFile, snapshot: ConfigSnapshot(version: "check", document: document))
            return []
        } catch {
            return error.diagnostics.filter { $0.severity == .error }.map {
                FieldProblem(pointer: $0.location.pointer ?? "", message: $0.message)
            }
        }
    }
}
