// SPDX-License-Identifier: Apache-2.0
/// A parsed HTTP/1 message head, as offsets into the bytes it was parsed from.
///
/// The proxy never turns a head into per-header strings: it keeps the received bytes, records where each part is,
/// and forwards the head by copying the lines it keeps and appending the few it adds. Every range here is relative
/// to the first byte of the head.
public struct HTTPHead: Sendable {
    /// Where a request line's or status line's parts are.
    public var method: Range<Int> = 0..<0
    /// The request target as received (origin-form, absolute-form, authority-form or asterisk-form).
    public var target: Range<Int> = 0..<0
    /// The path part of an origin-form or absolute-form target, without the query.
    public var path: Range<Int> = 0..<0
    /// The authority of an absolute-form target (`http://host:port/...`), empty otherwise.
    public var absoluteAuthority: Range<Int> = 0..<0
    /// The protocol version of the message.
    public var version: HTTPVersion = .http1_1
    /// A response's status code; 0 for requests.
    public var status: Int = 0
    /// The header fields in order of arrival.
    public var fields: [HTTPField] = []
    /// The length of the whole head including the empty line that ends it.
    public var length: Int = 0

    /// Framing and semantics the parser derived from the fields while it walked them.
    public var contentLength: Int64?
    /// `Transfer-Encoding: chunked` was present (the only transfer coding Jester accepts).
    public var isChunked = false
    /// Index into `fields` of the single Host field, if present.
    public var hostField: Int?
    /// The `Connection` field listed `close`.
    public var connectionClose = false
    /// The `Connection` field listed `keep-alive` (meaningful for HTTP/1.0).
    public var connectionKeepAlive = false
    /// The `Connection` field listed `upgrade`.
    public var connectionUpgrade = false
    /// The `Upgrade` field asked for WebSocket (RFC 6455 §4.1), and nothing else.
    public var upgradeWebSocket = false
    /// `Expect: 100-continue` was present.
    public var expectsContinue = false
    /// Index into `fields` of the `X-Request-Id` field, if present.
    public var requestIDField: Int?

    public init() {}

    /// Resets the head for reuse, keeping the capacity of `fields` so a keep-alive connection parses without
    /// allocating.
    public mutating func reset() {
        let reusedFields = fields
        self = HTTPHead()
        fields = reusedFields
        fields.removeAll(keepingCapacity: true)
    }

    /// Whether the connection may carry another message after this one (RFC 9112 §9.3).
    /// The first field named `name` (lowercase ASCII), compared without regard to case.
    @inlinable
    public func field(named name: [UInt8], in bytes: UnsafeRawBufferPointer) -> HTTPField? {
        fieldIndex(named: name, in: bytes).map { fields[$0] }
    }

    /// Where in `fields` the first field named `name` (lowercase ASCII) is, compared without regard to case.
    @inlinable
    public func fieldIndex(named name: [UInt8], in bytes: UnsafeRawBufferPointer) -> Int? {
        name.withUnsafeBytes { name in
            fields.firstIndex { ASCII.equalsIgnoringCase(bytes, $0.name, name, 0..<name.count) }
        }
    }

    /// The one Content-Length value a proxy passes on with this response, whatever list or repetition the
    /// upstream sent (the parser accepted those only when every value agreed): none on a 204, where RFC 9110
    /// §8.6 forbids it, nor on a chunked response, where Transfer-Encoding overrides it (RFC 9112 §6.3).
    public var forwardedContentLength: Int64? {
        guard status != 204, !isChunked else { return nil }
        return contentLength
    }

    public var isPersistent: Bool {
        if connectionClose { return false }
        return version == .http1_1 || connectionKeepAlive
    }
}

/// The two HTTP/1 versions Jester speaks; anything else is rejected by the parser (505).
public enum HTTPVersion: Sendable, Equatable {
    case http1_0
    case http1_1
}

/// One header field of an `HTTPHead`, as offsets into the head.
public struct HTTPField: Sendable, Equatable {
    /// The whole line, from the first byte of the name to the CRLF (exclusive), for forwarding it unchanged.
    public var line: Range<Int>
    /// The field name.
    public var name: Range<Int>
    /// The field value with leading and trailing whitespace removed (RFC 9110 §5.5).
    public var value: Range<Int>
    /// What the proxy knows about this field.
    public var kind: HTTPFieldKind
    /// Hop-by-hop: either always (RFC 9110 §7.6.1) or because the `Connection` field named it. Never forwarded.
    public var isHopByHop: Bool
    /// The name contains "_": legal in a token, but a smuggling vector (see `underscores_in_headers`).
    public var hasUnderscore: Bool

    public init(
        line: Range<Int>, name: Range<Int>, value: Range<Int>, kind: HTTPFieldKind, isHopByHop: Bool,
        hasUnderscore: Bool = false
    ) {
        self.line = line
        self.name = name
        self.value = value
        self.kind = kind
        self.isHopByHop = isHopByHop
        self.hasUnderscore = hasUnderscore
    }
}

/// Header fields whose meaning the proxy acts on. Everything else is `.other` and passes through untouched.
public enum HTTPFieldKind: UInt8, Sendable {
    case other
    case host
    case contentLength
    case transferEncoding
    case connection
    case keepAlive
    case proxyConnection
    case te
    case trailer
    case upgrade
    case expect
    case xForwardedFor
    case xForwardedProto
    case xForwardedHost
    case forwarded
    case xRequestID

    /// Classifies a field name by length first, then a case-insensitive comparison, so the common case (an
    /// unknown name) costs one switch.
    @inlinable
    static func classify(_ bytes: UnsafeRawBufferPointer, _ name: Range<Int>) -> HTTPFieldKind {
        @inline(__always) func matches(_ lowercase: StaticString) -> Bool {
            ASCII.equalsIgnoringCase(bytes, name, lowercase)
        }
        switch name.count {
        case 2: return matches("te") ? .te : .other
        case 4: return matches("host") ? .host : .other
        case 6: return matches("expect") ? .expect : .other
        case 7:
            if matches("upgrade") { return .upgrade }
            if matches("trailer") { return .trailer }
            return .other
        case 9: return matches("forwarded") ? .forwarded : .other
        case 10:
            if matches("connection") { return .connection }
            if matches("keep-alive") { return .keepAlive }
            return .other
        case 12: return matches("x-request-id") ? .xRequestID : .other
        case 14: return matches("content-length") ? .contentLength : .other
        case 15: return matches("x-forwarded-for") ? .xForwardedFor : .other
        case 16:
            if matches("x-forwarded-host") { return .xForwardedHost }
            if matches("proxy-connection") { return .proxyConnection }
            return .other
        case 17:
            if matches("transfer-encoding") { return .transferEncoding }
            if matches("x-forwarded-proto") { return .xForwardedProto }
            return .other
        default: return .other
        }
    }

    /// Fields that describe a single connection and never cross the proxy (RFC 9110 §7.6.1, plus the
    /// non-standard `Proxy-Connection`). `Transfer-Encoding` is re-framed by the proxy, so it counts here too.
    @inlinable
    var isAlwaysHopByHop: Bool {
        switch self {
        case .connection, .keepAlive, .proxyConnection, .te, .trailer, .upgrade, .transferEncoding: return true
        default: return false
        }
    }
}
