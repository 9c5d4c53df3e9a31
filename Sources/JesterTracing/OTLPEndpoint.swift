// SPDX-License-Identifier: Apache-2.0
/// Where spans go: an OTLP/HTTP traces endpoint, `http://host[:port][/path]`.
///
/// Parsed here, without I/O, so configuration validation reports a bad `[tracing] endpoint` at its line before
/// any worker starts. Plain HTTP only: collectors run beside the proxy (a sidecar or a local agent), and TLS to
/// a remote collector is the agent's job; an `https` endpoint is refused by name rather than sent in clear.
public struct OTLPEndpoint: Sendable, Hashable, CustomStringConvertible {
    /// A host name or an IP address (an IPv6 one without its brackets).
    public var host: String
    public var port: Int
    /// The request target, `/v1/traces` unless the URL gives a path.
    public var path: String

    /// OTLP/HTTP's default port (OTLP specification, "OTLP/HTTP Default Port").
    public static let defaultPort = 4318
    /// The path the OTLP specification gives trace exports.
    public static let defaultPath = "/v1/traces"

    public init(host: String, port: Int = defaultPort, path: String = defaultPath) {
        self.host = host
        self.port = port
        self.path = path
    }

    /// Why an endpoint URL was refused (the message names the part, for configuration diagnostics).
    public struct ParseError: Error, Hashable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// Parses `http://host[:port][/path]`.
    public init(parsing url: String) throws(ParseError) {
        guard let schemeEnd = url.firstRange(of: "://") else {
            throw ParseError(message: "endpoint '\(url)' is not a URL: write http://host:port/v1/traces")
        }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "http" else {
            throw ParseError(
                message: scheme == "https"
                    ? "endpoint '\(url)': https is not supported; send to a local collector over http"
                    : "endpoint '\(url)': the scheme must be http")
        }
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        let path = rest[authorityEnd...]
        var host = Substring(authority)
        var port = Self.defaultPort
        if authority.hasPrefix("[") {
            // An IPv6 literal (RFC 3986 §3.2.2).
            guard let close = authority.firstIndex(of: "]") else {
                throw ParseError(message: "endpoint '\(url)': unclosed '[' in the host")
            }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let number = Int(after.dropFirst()) else {
                    throw ParseError(message: "endpoint '\(url)': expected ':port' after the address")
                }
                port = number
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            guard let number = Int(authority[authority.index(after: colon)...]) else {
                throw ParseError(message: "endpoint '\(url)': the port is not a number")
            }
            port = number
        }
        guard !host.isEmpty, !host.contains(where: { $0 == "@" || $0 == " " }) else {
            throw ParseError(message: "endpoint '\(url)': no host")
        }
        guard (1...65535).contains(port) else {
            throw ParseError(message: "endpoint '\(url)': port \(port) is out of range")
        }
        guard !path.contains(where: { $0 == " " || $0 == "\r" || $0 == "\n" }) else {
            throw ParseError(message: "endpoint '\(url)': the path has a space or line break")
        }
        self.init(host: String(host), port: port, path: path.isEmpty ? Self.defaultPath : String(path))
    }

    /// The `Host` field value (brackets around an IPv6 address).
    public var hostField: String {
        let name = host.contains(":") ? "[\(host)]" : host
        return port == 80 ? name : "\(name):\(port)"
    }

    public var description: String { "http://\(hostField)\(path)" }
}
