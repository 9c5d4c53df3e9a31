// SPDX-License-Identifier: Apache-2.0

/// An `http` or `https` URL split into what a GET needs: where to connect, what to verify and what to ask for.
///
/// Deliberately narrow (no user info, no fragments sent, no relative forms): the URLs it reads are written by
/// operators in the configuration (`jwks_url`), which the loader has already checked, and a parser that
/// accepts less has fewer ways to connect somewhere the operator did not mean.
public struct FetchURL: Sendable, Hashable, CustomStringConvertible {
    /// The transport the scheme asks for.
    public enum Scheme: String, Sendable {
        case http
        case https
    }

    public let scheme: Scheme
    /// The host as written, without the brackets of an IPv6 literal: what is connected to, and for https what
    /// the certificate must name.
    public let host: String
    public let port: Int
    /// The path and query sent in the request line (at least "/").
    public let target: String

    /// Reads `text`; nil when it is not an absolute http(s) URL with a host.
    public init?(_ text: String) {
        guard let schemeEnd = text.range(of: "://") else { return nil }
        guard let scheme = Scheme(rawValue: text[..<schemeEnd.lowerBound].lowercased()) else { return nil }
        var rest = text[schemeEnd.upperBound...]
        if let fragment = rest.firstIndex(of: "#") { rest = rest[..<fragment] }
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        let target = rest[authorityEnd...]
        guard !authority.isEmpty, !authority.contains("@") else { return nil }
        var host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            // An IPv6 literal (RFC 3986 §3.2.2): the port, if any, follows the closing bracket.
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return nil }
                portText = after.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        guard !host.isEmpty, host.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else { return nil }
        let port: Int
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else { return nil }
            port = value
        } else {
            port = scheme == .https ? 443 : 80
        }
        guard target.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else { return nil }
        self.scheme = scheme
        self.host = String(host)
        self.port = port
        self.target = target.isEmpty ? "/" : target.hasPrefix("?") ? "/" + target : String(target)
    }

    /// The `Host` field's value (RFC 9110 §7.2): the port only when it is not the scheme's default.
    public var authority: String {
        let name = host.contains(":") ? "[\(host)]" : host
        let defaultPort = scheme == .https ? 443 : 80
        return port == defaultPort ? name : "\(name):\(port)"
    }

    public var description: String { "\(scheme.rawValue)://\(authority)\(target)" }
}
