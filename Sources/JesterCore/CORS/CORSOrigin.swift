// SPDX-License-Identifier: Apache-2.0
/// A serialized origin as a browser writes it in `Origin`: `scheme "://" host [":" port]` (RFC 6454 §6.2, the
/// Fetch standard's "byte-serializing a request origin"), parsed strictly so that a CORS allow list compares
/// what the browser meant and nothing else.
///
/// Browsers send origins canonical: scheme and host lowercase, no default port, no path, no user info, hosts
/// in punycode. Anything else (a path, `@`, `%`, a blank, a trailing dot, an empty label) is not an origin a
/// browser sends, and is refused rather than normalised: a lenient parser is how `https://evil.com/.example.com`
/// or `https://example.com@evil.net` come to match an allow list. Upper case is the one liberty taken (folded),
/// since an operator may write `https://App.Example.com` in the configuration.
public struct CORSOrigin: Hashable, Sendable, CustomStringConvertible {
    /// The scheme, lowercase (`https`).
    public let scheme: String
    /// The host, lowercase: a DNS name, an IPv4 address, or an IPv6 address in brackets.
    public let host: String
    /// The port, or nil for the scheme's default (`https://a` and `https://a:443` are the same origin, and
    /// browsers write the former).
    public let port: Int?

    /// Why a text is not an origin, in words for a configuration message.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        /// What is wrong, naming the text.
        public let message: String

        public init(_ message: String) {
            self.message = message
        }

        public var description: String { message }
    }

    /// Parses `text` (an `Origin` field value or an allow-list entry).
    public init(parsing text: some StringProtocol) throws(ParseError) {
        let bytes = Array(text.utf8)
        guard let separator = Self.schemeSeparator(in: bytes) else {
            throw ParseError("'\(text)' is not an origin (scheme://host[:port])")
        }
        let scheme = Array(bytes[..<separator])
        guard Self.isScheme(scheme) else { throw ParseError("'\(text)' does not start with a scheme") }
        let (host, port) = try Self.hostAndPort(bytes[(separator + 3)...], in: text)
        guard Self.isHost(host) else { throw ParseError("'\(text)' does not have a valid host name") }
        self.scheme = String(decoding: scheme.map(ASCII.lowercased), as: UTF8.self)
        self.host = String(decoding: host.map(ASCII.lowercased), as: UTF8.self)
        self.port = port == Self.defaultPort(ofScheme: self.scheme) ? nil : port
    }

    /// An origin from its parts, already canonical (lowercase, nil for the default port).
    public init(scheme: String, host: String, port: Int? = nil) {
        self.scheme = scheme
        self.host = host
        self.port = port
    }

    /// The serialization browsers send (default port left out).
    public var description: String {
        port.map { "\(scheme)://\(host):\($0)" } ?? "\(scheme)://\(host)"
    }

    /// The port a scheme implies when none is written (those of "special" URL schemes with ports).
    static func defaultPort(ofScheme scheme: String) -> Int? {
        switch scheme {
        case "http", "ws": return 80
        case "https", "wss": return 443
        default: return nil
        }
    }

    /// Where `://` starts, if it does after at least one byte.
    private static func schemeSeparator(in bytes: [UInt8]) -> Int? {
        guard bytes.count > 3 else { return nil }
        for index in 1..<(bytes.count - 2) where bytes[index] == UInt8(ascii: ":") {
            return bytes[index + 1] == UInt8(ascii: "/") && bytes[index + 2] == UInt8(ascii: "/") ? index : nil
        }
        return nil
    }

    /// RFC 3986 §3.1: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
    private static func isScheme(_ bytes: [UInt8]) -> Bool {
        guard let first = bytes.first, isLetter(first) else { return false }
        return bytes.allSatisfy { isLetter($0) || isDigit($0) || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-")
            || $0 == UInt8(ascii: ".") }
    }

    /// Splits `host[:port]`; the port must be 1 to 65535 in plain decimal (browsers write no leading zeros).
    private static func hostAndPort(_ rest: ArraySlice<UInt8>, in text: some StringProtocol) throws(ParseError)
        -> (host: ArraySlice<UInt8>, port: Int?)
    {
        // An IPv6 literal has colons of its own; the port comes after its closing bracket.
        let searchFrom = rest.first == UInt8(ascii: "[") ? (rest.firstIndex(of: UInt8(ascii: "]")) ?? rest.endIndex)
            : rest.startIndex
        guard let colon = rest[searchFrom...].firstIndex(of: UInt8(ascii: ":")) else { return (rest, nil) }
        let digits = rest[(colon + 1)...]
        guard !digits.isEmpty, digits.count <= 5, digits.allSatisfy(isDigit), digits.first != UInt8(ascii: "0"),
            let port = Int(String(decoding: digits, as: UTF8.self)), port <= 65535
        else { throw ParseError("'\(text)' does not have a valid port (1 to 65535)") }
        return (rest[..<colon], port)
    }

    /// A DNS name of letters, digits, `-` and `_` in non-empty labels (no trailing dot: browsers never write one,
    /// and `a.example.com.` is another origin than `a.example.com`), or an IPv6 literal in brackets.
    private static func isHost(_ host: ArraySlice<UInt8>) -> Bool {
        guard !host.isEmpty, host.count <= 253 else { return false }
        if host.first == UInt8(ascii: "[") {
            let inside = host.dropFirst().dropLast()
            return host.last == UInt8(ascii: "]") && inside.count >= 2
                && inside.allSatisfy { ASCII.hexValue($0) != nil || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ".") }
        }
        let labels = host.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        return labels.allSatisfy { label in
            !label.isEmpty && label.count <= 63 && label.allSatisfy(isLabelByte)
        }
    }

    /// A letter, digit, `-` or `_` (underscores are not DNS-legal in host names, but appear in real ones).
    static func isLabelByte(_ byte: UInt8) -> Bool {
        isLetter(byte) || isDigit(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
    }

    static func isLetter(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20)
    }

    static func isDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }
}

/// One entry of a CORS allow list: an exact origin, or every subdomain of a domain (`https://*.example.com`),
/// with the scheme and the port always compared exactly.
///
/// A wildcard stands for one or more whole labels in front of the domain, and nothing else: it matches
/// `https://app.example.com` and `https://a.b.example.com`, never `https://example.com` itself (list it too),
/// `https://evil-example.com` (no dot before the domain) or `https://example.com.evil.net` (the domain must end
/// the host). It must cover at least two labels (`https://*.com` would allow every site under a top-level domain).
public enum CORSOriginPattern: Hashable, Sendable, CustomStringConvertible {
    /// This origin only.
    case exact(CORSOrigin)
    /// Any host ending in `.` + `domain`, with this scheme and port (nil: the scheme's default).
    case subdomains(scheme: String, domain: String, port: Int?)

    /// Parses an allow-list entry. `null` (the opaque origin of sandboxed frames and `file:` pages) is refused:
    /// every sandboxed document anywhere sends it, so allowing it would allow any site that frames itself.
    public init(parsing text: String) throws(CORSOrigin.ParseError) {
        if text == "null" {
            throw CORSOrigin.ParseError(
                "'null' is the origin of every sandboxed frame and file: page, so allowing it allows any site")
        }
        let bytes = Array(text.utf8)
        guard let star = bytes.firstIndex(of: UInt8(ascii: "*")) else {
            self = .exact(try CORSOrigin(parsing: text))
            return
        }
        // Only a whole leftmost label may be a wildcard: "https://*.example.com[:port]".
        guard star >= 4, bytes[(star - 3)..<star].elementsEqual("://".utf8), star + 1 < bytes.count,
            bytes[star + 1] == UInt8(ascii: "."), bytes.lazy.filter({ $0 == UInt8(ascii: "*") }).count == 1
        else {
            throw CORSOrigin.ParseError(
                "in '\(text)', '*' may only stand for whole leftmost labels (https://*.example.com)")
        }
        // Without its "*.", the entry is the origin of the bare domain, which checks scheme, labels and port.
        var bare = bytes
        bare.removeSubrange(star...(star + 1))
        let domain = try CORSOrigin(parsing: String(decoding: bare, as: UTF8.self))
        let labels = domain.host.split(separator: ".")
        guard !domain.host.hasPrefix("["), labels.count >= 2,
            !labels.allSatisfy({ $0.utf8.allSatisfy(CORSOrigin.isDigit) })
        else {
            throw CORSOrigin.ParseError("'\(text)' must name a domain of at least two labels after '*.'")
        }
        self = .subdomains(scheme: domain.scheme, domain: domain.host, port: domain.port)
    }

    /// Whether `origin` is allowed by this entry.
    public func matches(_ origin: CORSOrigin) -> Bool {
        switch self {
        case .exact(let allowed):
            return origin == allowed
        case .subdomains(let scheme, let domain, let port):
            // The host's labels were checked when it was parsed, so what precedes ".domain" is whole labels.
            let host = origin.host.utf8
            return origin.scheme == scheme && origin.port == port && host.count > domain.utf8.count + 1
                && host.dropLast(domain.utf8.count).last == UInt8(ascii: ".")
                && host.suffix(domain.utf8.count).elementsEqual(domain.utf8)
        }
    }

    /// As an allow list would write it.
    public var description: String {
        switch self {
        case .exact(let origin): return origin.description
        case .subdomains(let scheme, let domain, let port):
            return CORSOrigin(scheme: scheme, host: "*." + domain, port: port).description
        }
    }
}
