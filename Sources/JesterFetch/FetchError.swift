// SPDX-License-Identifier: Apache-2.0

/// Why a fetch produced no response: a code to act on (a timeout is retried like a refused connection, but
/// logged differently), a message for the log, and the underlying error when there is one.
public struct FetchError: Error, Sendable, CustomStringConvertible {
    /// Where the fetch stopped.
    public enum Code: String, Sendable, Equatable {
        /// The URL is not one this client fetches.
        case badURL
        /// No connection: the name did not resolve, or the connection was refused or reset.
        case connect
        /// The TLS handshake failed (an untrusted certificate, a name mismatch, no common protocol).
        case tls
        /// No complete response within the time allowed.
        case timeout
        /// The server's answer is not valid HTTP/1.1.
        case badResponse
        /// The body is larger than the caller allows.
        case tooLarge
        /// The connection closed before the response was complete.
        case closedEarly
    }

    public var code: Code
    public var message: String
    /// What the layer below reported (a NIO or TLS error), for the log.
    public var cause: (any Error)?

    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        cause.map { "\(message): \($0)" } ?? message
    }
}
