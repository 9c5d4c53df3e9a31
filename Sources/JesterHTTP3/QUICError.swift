// SPDX-License-Identifier: Apache-2.0

/// A QUIC or HTTP/3 failure with where it came from, in the shape of the other areas' errors: a code a program
/// can switch on, a message for people, the library's own error text and the source location that raised it.
public struct QUICError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, coarsely.
    public enum Code: Sendable, Equatable {
        /// The certificate or key PEM could not be loaded, or TLS could not be set up.
        case tlsConfiguration
        /// A library refused to create or configure an object (out of memory, a bad argument).
        case library
        /// The connection failed; it is closing or closed.
        case connection
        /// A call that the connection's state does not allow (for example a response on an unknown stream).
        case invalidState
    }

    /// What went wrong, coarsely.
    public var code: Code
    /// What went wrong, for people.
    public var message: String
    /// The library's description of its error (ngtcp2_strerror, nghttp3_strerror, gnutls_strerror), when any.
    public var cause: String?
    /// The source file that raised the error.
    public var file: String
    /// The line that raised the error.
    public var line: Int

    /// An error raised here (the source location defaults to the caller's).
    public init(_ code: Code, _ message: String, cause: String? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.cause = cause
        self.file = file
        self.line = line
    }

    /// "message: cause (file:line)".
    public var description: String {
        "\(message)\(cause.map { ": \($0)" } ?? "") (\(file):\(line))"
    }
}
