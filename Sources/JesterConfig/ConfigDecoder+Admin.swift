// SPDX-License-Identifier: Apache-2.0
import Foundation

extension ConfigDecoder {
    /// `[admin]`: where the admin API listens and the file of its tokens, checked as the master will read it.
    ///
    /// A TCP address that is not loopback needs `tokens_file`: without tokens every client that reaches the API
    /// may reload and drain the instance, and off the host that is anyone on the network. The check is here, at
    /// validate time, so such a file never starts or reloads instead of serving an open door. (Client
    /// certificates would be the other way in; the master does not terminate TLS, see jester-admin(7).)
    mutating func decodeAdmin(_ node: ConfigNode) -> AdminSettings? {
        guard var table = TableReader(node, ConfigSchema.admin, decoder: &self) else { return nil }
        var settings = AdminSettings()
        let address = table.address("address", decoder: &self)
        let socket = table.string("socket", decoder: &self)
        if let address, socket != nil {
            report(table.location(of: "socket"), "[admin] takes 'address' or 'socket', not both (\(address))")
        } else if let socket {
            if !socket.hasPrefix("/") {
                report(table.location(of: "socket"), "'socket' must be an absolute path")
            }
            settings.endpoint = .unix(path: socket)
        } else if let address {
            settings.endpoint = .tcp(address)
        }
        if let path = table.string("tokens_file", decoder: &self) {
            let location = table.location(of: "tokens_file")
            let resolved = Self.resolve(path, at: location)
            settings.tokensFile = resolved
            for problem in AdminTokens.load(path: resolved).problems {
                if problem.line > 0 {
                    report(SourceLocation(file: resolved, line: problem.line, column: 1),
                        "\(problem.message) (tokens_file of [admin], \(location))")
                } else {
                    report(location, problem.message)
                }
            }
        }
        if case .tcp(let bound) = settings.endpoint, !bound.isLoopback, settings.tokensFile == nil {
            report(table.has("address") ? table.location(of: "address") : node.location,
                "the admin API on \(bound) (not loopback) needs 'tokens_file': without tokens anyone who can reach "
                    + "it may reload or drain this instance")
        }
        table.finish(decoder: &self)
        return settings
    }
}
