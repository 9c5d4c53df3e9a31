// SPDX-License-Identifier: Apache-2.0
import Foundation

/// `[admin]`: the master's HTTP admin API (jester-admin(7)). Off when the table is absent, because an API that can
/// reload and drain the instance must be asked for; on, it listens on loopback unless told otherwise.
///
/// The bearer tokens are not part of the configuration: only their file's path is. The configuration travels to
/// every worker (which runs as an unprivileged user and has no use for them) and into the hash `jesterctl status`
/// shows; the master reads the file itself as root, at start and on every reload (`AdminTokens.load`).
public struct AdminSettings: Sendable, Codable, Equatable {
    /// Where the admin API accepts connections.
    public enum Endpoint: Sendable, Codable, Hashable, CustomStringConvertible {
        /// A TCP address (`address`).
        case tcp(SocketAddressSpec)
        /// A Unix socket path (`socket`), mode 0660 and the control group, like the control socket.
        case unix(path: String)

        public var description: String {
            switch self {
            case .tcp(let address): return address.description
            case .unix(let path): return "unix:" + path
            }
        }
    }

    /// Where the API listens when `[admin]` names neither `address` nor `socket` (Envoy's admin port).
    public static let defaultAddress = SocketAddressSpec(host: "127.0.0.1", port: 9901)

    public var endpoint: Endpoint
    /// The bearer-token file (absolute: resolved against the configuration file's directory); nil: no tokens,
    /// every client that reaches the endpoint has the `write` role (allowed on loopback and Unix sockets only).
    public var tokensFile: String?

    public init(endpoint: Endpoint = .tcp(AdminSettings.defaultAddress), tokensFile: String? = nil) {
        self.endpoint = endpoint
        self.tokensFile = tokensFile
    }
}

extension SocketAddressSpec {
    /// Whether the address is a loopback one (127.0.0.0/8, ::1, or the name localhost), which only this host's
    /// processes can reach: the one place the admin API may run without tokens over TCP.
    public var isLoopback: Bool {
        if host == "localhost" || host == "::1" || host == "0:0:0:0:0:0:0:1" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }
}
