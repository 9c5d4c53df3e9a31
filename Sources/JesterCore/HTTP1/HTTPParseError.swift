// SPDX-License-Identifier: Apache-2.0
/// Why a message head or body could not be accepted, and the status a client is answered with.
///
/// Upstream responses reuse the same cases; the proxy maps any of them to 502 for the client.
public enum HTTPParseError: Error, Sendable, Equatable {
    case badRequestLine
    case badStatusLine
    case badTarget
    case badField
    case obsoleteLineFolding
    case badHost
    case badContentLength
    case conflictingFraming
    case unsupportedTransferEncoding
    case unsupportedExpectation
    case versionNotSupported
    case methodNotAllowed
    case uriTooLong
    case headTooLarge
    case tooManyFields
    case badChunk
    /// A field name with "_" while `underscores_in_headers = "reject"`: a policy, not a syntax error.
    case underscoreInFieldName

    /// The status a client gets for a request with this error.
    public var status: Int {
        switch self {
        case .uriTooLong: return 414
        case .headTooLarge, .tooManyFields: return 431
        case .unsupportedTransferEncoding: return 501
        case .unsupportedExpectation: return 417
        case .versionNotSupported: return 505
        case .methodNotAllowed: return 405
        default: return 400
        }
    }

    /// A short, stable description for logs (never sent to clients, which get only the status).
    public var reason: String {
        switch self {
        case .badRequestLine: return "malformed request line"
        case .badStatusLine: return "malformed status line"
        case .badTarget: return "invalid request target"
        case .badField: return "malformed header field"
        case .obsoleteLineFolding: return "obsolete line folding"
        case .badHost: return "missing, repeated or invalid Host"
        case .badContentLength: return "invalid Content-Length"
        case .conflictingFraming: return "Content-Length with Transfer-Encoding"
        case .unsupportedTransferEncoding: return "unsupported Transfer-Encoding"
        case .unsupportedExpectation: return "unsupported Expect"
        case .versionNotSupported: return "unsupported HTTP version"
        case .methodNotAllowed: return "CONNECT is not supported"
        case .uriTooLong: return "request target too long"
        case .headTooLarge: return "request head too large"
        case .tooManyFields: return "too many header fields"
        case .badChunk: return "malformed chunked body"
        case .underscoreInFieldName: return "underscore in a header field name"
        }
    }
}
