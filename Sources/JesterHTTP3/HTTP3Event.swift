// SPDX-License-Identifier: Apache-2.0
import NIOCore

/// A field of an HTTP/3 message (names are lowercase on the wire, RFC 9114 §4.2).
public struct HTTP3Field: Sendable, Equatable {
    /// The field name, lowercase.
    public var name: String
    /// The field value.
    public var value: String
    /// Sent as a never-indexed literal (RFC 9204 §4.5.4): for values unique to one message or secret (a
    /// credential), which QPACK's dynamic table would only churn through or expose.
    public var neverIndexed: Bool

    /// A field; `neverIndexed` keeps it out of QPACK's dynamic table.
    public init(_ name: String, _ value: String, neverIndexed: Bool = false) {
        self.name = name
        self.value = value
        self.neverIndexed = neverIndexed
    }
}

/// What an HTTP/3 session received, in order; shaped like `HTTP2Event` so the worker's stream adapters match.
public enum HTTP3Event: Sendable, Equatable {
    /// The first field section of a stream: a request (server) or a response (client). `endStream`: no body.
    case headers(stream: Int64, fields: [HTTP3Field], endStream: Bool)
    /// Body bytes; acknowledge them with `HTTP3Session.consumed` once passed on (flow control).
    case data(stream: Int64, ByteBuffer)
    /// The body ended without trailers.
    case endStream(stream: Int64)
    /// A trailer section; it ends the stream.
    case trailers(stream: Int64, fields: [HTTP3Field])
    /// The peer abandoned the stream (RESET_STREAM or STOP_SENDING), or the session refused it (a header section
    /// over the limit, a malformed message): nothing more arrives on it.
    case streamReset(stream: Int64, errorCode: UInt64)
    /// The stream is gone both ways; `errorCode` is H3_NO_ERROR (0x100) when it finished normally.
    case streamClosed(stream: Int64, errorCode: UInt64)
    /// The peer sent GOAWAY: (client) requests on streams from `id` on will not be served; (server) the client
    /// is leaving.
    case goAway(id: Int64)
}

/// HTTP/3 error codes (RFC 9114 §8.1) used by the session and its callers.
public enum HTTP3ErrorCode {
    /// A clean close or end.
    public static let noError: UInt64 = 0x100
    /// A general protocol error.
    public static let generalProtocolError: UInt64 = 0x101
    /// Something went wrong on this side.
    public static let internalError: UInt64 = 0x102
    /// The peer is generating excessive load (a header section over the limit).
    public static let excessiveLoad: UInt64 = 0x107
    /// The request was not processed at all: the client may retry it elsewhere.
    public static let requestRejected: UInt64 = 0x10b
    /// The request or response was cancelled.
    public static let requestCancelled: UInt64 = 0x10c
    /// The request stream ended before a complete request.
    public static let requestIncomplete: UInt64 = 0x10d
    /// A malformed message (RFC 9114 §4.1.2): bad pseudo-header fields, uppercase names, a wrong content-length.
    public static let messageError: UInt64 = 0x10e
}
