// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterCore

/// `[control_plane]`: the control plane this instance takes its routes, upstreams, filters and policies from
/// (issue 25; Docs/control-plane-design.md). Only the master talks to it; a version it pushes is applied through
/// the reload transaction, and the last one applied is kept in `state_file` for starts while it is unreachable.
public struct ControlPlaneSettings: Sendable, Equatable, Codable {
    /// The control plane's stream (`jester control-plane --grpc-listen`), or the streams of its replicas (which
    /// share one etcd and push the same versions): the master uses one at a time, the first first, and the next
    /// whenever a stream is lost or cannot be opened.
    public var addresses: [SocketAddressSpec]
    /// The first of them.
    public var address: SocketAddressSpec { addresses[0] }
    /// This instance's name there (nil: the host name).
    public var node: String?
    /// The last good snapshot, written after each version is applied.
    public var stateFile: String
    /// The directory the files a snapshot names are read from (nil: a snapshot may name none).
    public var files: String?
    /// Mutual TLS (PEM files): the CA the control plane's certificate must chain to, and this instance's client
    /// certificate and key. Nil: plaintext (a loopback address only).
    public var tls: TLSFiles?

    public struct TLSFiles: Sendable, Equatable, Codable {
        public var ca: String
        public var cert: String
        public var key: String
    }

    public static let defaultStateFile = "/var/lib/jester/control-plane-snapshot.json"

    // By hand, for the binary upgrade's hand-over between releases: one before replicas knew `address` only.
    private enum CodingKeys: String, CodingKey {
        case addresses, address, node, stateFile, tls, files
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        if let addresses = try container.decodeIfPresent([SocketAddressSpec].self, forKey: .addresses),
            !addresses.isEmpty
        {
            self.addresses = addresses
        } else {
            addresses = [try container.decode(SocketAddressSpec.self, forKey: .address)]
        }
        node = try container.decodeIfPresent(String.self, forKey: .node)
        stateFile = try container.decode(String.self, forKey: .stateFile)
        tls = try container.decodeIfPresent(TLSFiles.self, forKey: .tls)
        files = try container.decodeIfPresent(String.self, forKey: .files)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(addresses, forKey: .addresses)
        try container.encode(address, forKey: .address)  // what an older release reads
        try container.encodeIfPresent(node, forKey: .node)
        try container.encode(stateFile, forKey: .stateFile)
        try container.encodeIfPresent(tls, forKey: .tls)
        try container.encodeIfPresent(files, forKey: .files)
    }

    public init(address: SocketAddressSpec, node: String? = nil, stateFile: String = Self.defaultStateFile) {
        self.init(addresses: [address], node: node, stateFile: stateFile)
    }

    public init(addresses: [SocketAddressSpec], node: String? = nil, stateFile: String = Self.defaultStateFile) {
        precondition(!addresses.isEmpty, "a control plane has an address")
        self.addresses = addresses
        self.node = node
        self.stateFile = stateFile
    }
}

extension ConfigDecoder {
    mutating func decodeControlPlane(_ node: ConfigNode) -> ControlPlaneSettings? {
        guard var table = TableReader(node, ConfigSchema.controlPlane, decoder: &self) else { return nil }
        let addresses = decodeControlPlaneAddresses(&table)
        let name = table.string("node", decoder: &self)
        if let name, name.isEmpty {
            report(table.location(of: "node"), "'node' of [control_plane] cannot be empty")
        }
        var stateFile = ControlPlaneSettings.defaultStateFile
        if let path = table.string("state_file", decoder: &self) {
            stateFile = Self.resolve(path, at: table.location(of: "state_file"))
        }
        var snapshotFiles: String?
        if let path = table.string("files", decoder: &self) {
            let location = table.location(of: "files")
            if path.isEmpty { report(location, "'files' of [control_plane] cannot be empty: name a directory") }
            let resolved = Self.resolve(path, at: location)
            var isDirectory: ObjCBool = false
            if checksControlPlaneFiles,
                !FileManager.default.fileExists(atPath: resolved, isDirectory: &isDirectory) || !isDirectory.boolValue
            {
                report(location, "'files' of [control_plane]: \(resolved) is not a directory")
            }
            snapshotFiles = resolved
        }
        var files: [String: String] = [:]
        for key in ["ca", "cert", "key"] {
            guard let path = table.string(key, decoder: &self) else { continue }
            let location = table.location(of: key)
            let resolved = Self.resolve(path, at: location)
            if checksControlPlaneFiles, !FileManager.default.isReadableFile(atPath: resolved) {
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
        if let addresses, tls == nil, let address = addresses.first(where: { !$0.isLoopback }) {
            report(table.location(of: "address"),
                "a control plane at \(address) (not loopback) needs 'ca', 'cert' and 'key': the stream carries every "
                    + "route, so off this host it runs over mutual TLS only")
        }
        table.finish(decoder: &self)
        guard let addresses else { return nil }
        var settings = ControlPlaneSettings(addresses: addresses, node: name, stateFile: stateFile)
        settings.tls = tls
        settings.files = snapshotFiles
        return settings
    }

    /// `address = "127.0.0.1:9401"`, or the replicas' `address = ["10.0.0.1:9401", "10.0.0.2:9401"]`: IP
    /// addresses and ports, at least one, none twice. Nil when missing or wrong (reported).
    private mutating func decodeControlPlaneAddresses(_ table: inout TableReader) -> [SocketAddressSpec]? {
        guard let node = table.take("address", decoder: &self) else { return nil }
        let elements: [ConfigNode]
        switch node.value {
        case .string: elements = [node]
        case .array(let nodes) where !nodes.isEmpty: elements = nodes
        default:
            report(node.location, "'address' of [control_plane] must be an IP address and port such as "
                + "\"127.0.0.1:9401\", or an array of them (replicas), not \(node.describedValue)")
            return nil
        }
        var addresses: [SocketAddressSpec] = []
        for element in elements {
            guard case .string(let text) = element.value, let address = SocketAddressSpec(parsing: text),
                IPAddressBytes(address.host) != nil
            else {
                report(element.location, "'address' of [control_plane]: expected an IP address and port such as "
                    + "\"127.0.0.1:9401\" or \"[::1]:9401\" (it is not looked up), not \(element.describedValue)")
                return nil
            }
            guard !addresses.contains(address) else {
                report(element.location, "'address' of [control_plane] lists \(address) twice")
                return nil
            }
            addresses.append(address)
        }
        return addresses
    }
}
