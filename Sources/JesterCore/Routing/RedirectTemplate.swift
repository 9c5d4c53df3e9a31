// SPDX-License-Identifier: Apache-2.0
/// A redirect's `Location`, written with request placeholders: `"https://{hostname}:8443{target}"`.
///
/// Braces rather than `$name` or `${name}`, because the config loader already reads `${NAME}` as an environment
/// variable: `{host}` can never be taken for one. Parsed once when the configuration loads (an unknown placeholder
/// is a config error with its location), rendered per request from the request's own parts, so an HTTP→HTTPS or
/// `www.` redirect keeps the path and query the client asked for.
public struct RedirectTemplate: Sendable, Equatable, CustomStringConvertible {
    /// A piece of the template.
    public enum Part: Sendable, Equatable {
        case literal(String)
        /// `{scheme}`: "http" or "https", as the client reached Jester.
        case scheme
        /// `{host}`: the Host field (or HTTP/2 `:authority`) as sent, port included.
        case host
        /// `{hostname}`: the host without its port (an IPv6 literal keeps its brackets).
        case hostname
        /// `{port}`: the port the client named, or the scheme's default.
        case port
        /// `{path}`: the request target's path, without the query.
        case path
        /// `{query}`: the query without its `?` (empty when there is none).
        case query
        /// `{target}`: path and query as the client sent them (nginx's `$request_uri`).
        case target
    }

    /// Why a template does not parse, with the offset (in characters) where the problem starts.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public let offset: Int
        public let message: String

        public var description: String { "\(message) (at character \(offset + 1))" }
    }

    public let parts: [Part]

    /// The placeholders, by the name written between braces.
    static let placeholders: [String: Part] = [
        "scheme": .scheme, "host": .host, "hostname": .hostname, "port": .port, "path": .path, "query": .query,
        "target": .target,
    ]

    /// Parses `text`; `{{` and `}}` stand for literal braces.
    public init(parsing text: String) throws(ParseError) {
        var parts: [Part] = []
        var literal = ""
        let characters = Array(text)
        var index = 0
        while index < characters.count {
            let character = characters[index]
            let next = index + 1 < characters.count ? characters[index + 1] : nil
            if character == "{", next == "{" {
                literal.append("{")
                index += 2
            } else if character == "}", next == "}" {
                literal.append("}")
                index += 2
            } else if character == "}" {
                throw ParseError(offset: index, message: "a lone '}' (write '}}' for a literal brace)")
            } else if character == "{" {
                guard let close = characters[index...].firstIndex(of: "}") else {
                    throw ParseError(
                        offset: index, message: "'{' without its closing '}' (write '{{' for a literal brace)")
                }
                let name = String(characters[(index + 1)..<close])
                guard let part = Self.placeholders[name] else {
                    let known = Self.placeholders.keys.sorted().map { "{\($0)}" }.joined(separator: ", ")
                    throw ParseError(
                        offset: index, message: "unknown placeholder {\(name)}; the placeholders are \(known)")
                }
                if !literal.isEmpty { parts.append(.literal(literal)) }
                literal = ""
                parts.append(part)
                index = close + 1
            } else {
                literal.append(character)
                index += 1
            }
        }
        if !literal.isEmpty { parts.append(.literal(literal)) }
        self.parts = parts
    }

    /// The template as written (placeholders in braces, literal braces doubled).
    public var description: String {
        parts.map { part in
            switch part {
            case .literal(let text):
                return text.replacingOccurrences(of: "{", with: "{{").replacingOccurrences(of: "}", with: "}}")
            default:
                return "{" + Self.placeholders.first { $0.value == part }!.key + "}"
            }
        }.joined()
    }

    /// The location when the template has no placeholder: such a redirect is rendered once per configuration.
    public var fixedText: String? {
        if parts.isEmpty { return "" }
        guard parts.count == 1, case .literal(let text) = parts[0] else { return nil }
        return text
    }

    /// The location for one request. `host`: the Host field or `:authority` (empty when the request had none:
    /// then `{host}` and `{hostname}` are empty too); `target`: the request target as sent (origin form, or
    /// absolute form, whose scheme and authority are skipped).
    public func render(scheme: String, host: Substring, target: Substring) -> String {
        let target = Self.originForm(target)
        let query = target.firstIndex(of: "?")
        var location = ""
        for part in parts {
            switch part {
            case .literal(let text): location += text
            case .scheme: location += scheme
            case .host: location += host
            case .hostname: location += Self.split(host).name
            case .port: location += Self.split(host).port ?? (scheme == "https" ? "443" : "80")
            case .path: location += target[..<(query ?? target.endIndex)]
            case .query: if let query { location += target[target.index(after: query)...] }
            case .target: location += target
            }
        }
        return location
    }

    /// The path-and-query part of a request target (`http://a.example/x?y` → `/x?y`).
    static func originForm(_ target: Substring) -> Substring {
        guard !target.hasPrefix("/"), let scheme = target.range(of: "://") else { return target }
        let rest = target[scheme.upperBound...]
        guard let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) else { return "/" }
        return rest[slash] == "?" ? Substring("/" + rest[slash...]) : rest[slash...]
    }

    /// A host field split into name and port: `example.com:8080`, `[::1]:8443`, `[::1]`, `example.com`.
    static func split(_ host: Substring) -> (name: Substring, port: Substring?) {
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return (host, nil) }
            let after = host.index(after: close)
            let name = host[...close]
            guard after < host.endIndex, host[after] == ":" else { return (name, nil) }
            return (name, host[host.index(after: after)...])
        }
        guard let colon = host.lastIndex(of: ":") else { return (host, nil) }
        return (host[..<colon], host[host.index(after: colon)...])
    }
}
