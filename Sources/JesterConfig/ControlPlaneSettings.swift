// SPDX-License-Identifier: Apache-2.0

/// `[control_plane]`: the control plane this instance takes its routes, upstreams, filters and policies from
/// (issue 25; Docs/control-plane-design.md). Only the master talks to it; a version it pushes is applied through
/// the reload transaction, and the last one applied is kept in `state_file` for starts while it is unreachable.
public struct ControlPlaneSettings: Sendable, Equatable, Codable {
    /// The control plane's stream (`jester control-plane --grpc-listen`).
    public var address: SocketAddressSpec
    /// This instance's name there (nil: the host name).
    public var node: String?
    /// The last good snapshot, written after each version is applied.
    public var stateFile: String

    public static let defaultStateFile = "/var/lib/jester/control-plane-snapshot.json"

    public init(address: SocketAddressSpec, node: String? = nil, stateFile: String = Self.defaultStateFile) {
        self.address = address
        self.node = node
        self.stateFile = stateFile
    }
}

extension ConfigDecoder {
    mutating func decodeControlPlane(_ node: ConfigNode) -> ControlPlaneSettings? {
        guard var table = TableReader(node, ConfigSchema.controlPlane, decoder: &self) else { return nil }
        let address = table.address("address", decoder: &self)
        let name = table.string("node", decoder: &self)
        if let name, name.isEmpty {
            report(table.location(of: "node"), "'node' of [control_plane] cannot be empty")
        }
        var stateFile = ControlPlaneSettings.defaultStateFile
        if let path = table.string("state_file", decoder: &self) {
            stateFile = Self.resolve(path, at: table.location(of: "state_file"))
        }
        table.finish(decoder: &self)
        guard let address else { return nil }
        return ControlPlaneSettings(address: address, node: name, stateFile: stateFile)
    }
}
