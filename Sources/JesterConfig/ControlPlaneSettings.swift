// SPDX-License-Identifier: Apache-2.0
import Foundation

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
    /// Mutual TLS (PEM files): the CA the control plane's certificate must chain to, and this instance's client
    /// certificate and key. Nil: plaintext (a loopback address only).
    public var tls: TLSFiles?

    public struct TLSFiles: Sendable, Equatable, Codable {
        public var ca: String
        public var cert: String
        public var key: String
    }

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
        var files: [String: String] = [:]
        for key in ["ca", "cert", "key"] {
            guard let path = table.string(key, decoder: &self) else { continue }
            let location = table.location(of: key)
            let resolved = Self.resolve(path, at: location)
            if !FileManager.default.isReadableFile(atPath: resolved) {
                report(location, "'\(key)' of [control_plane]: cannot read \(resolved)")
            }
            files[key] = resolved
        }
        var tls: ControlPlaneSettings.TLSFiles?
        if let ca = files["ca"], let cert = files["cert"], let key = files["key"] {
            tls = ControlPlaneSettings.TLSFiles(ca: ca, cert: cert, key: key)
        } else if !files.isEmpty {
            report(node.location, "[control_plane] takes 'ca', 'cert' and 'key' together (mutual TLS), or none")
        }
        if let address, tls == nil, !address.isLoopback {
            report(table.location(of: "address"),
                "a control plane at \(address) (not loopback) needs 'ca', 'cert' and 'key': the stream carries every "
                    + "route, so off this host it runs over mutual TLS only")
        }
        table.finish(decoder: &self)
        guard let address else { return nil }
        var settings = ControlPlaneSettings(address: address, node: name, stateFile: stateFile)
        settings.tls = tls
        return settings
    }
}
