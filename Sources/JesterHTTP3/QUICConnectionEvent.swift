// SPDX-License-Identifier: Apache-2.0

/// Where a QUIC connection is in its life (RFC 9000 §10).
public enum QUICConnectionState: Sendable, Equatable {
    /// TLS has not finished: no application data flows yet.
    case handshaking
    /// Keys are confirmed; streams flow.
    case established
    /// This side sent CONNECTION_CLOSE and repeats it to whatever still arrives, until `nextDeadline` (§10.2.1).
    case closing
    /// The peer closed; nothing more is sent, and the connection's IDs stay reserved until `nextDeadline`
    /// (§10.2.2), so late packets are not answered with a stateless reset.
    case draining
    /// Finished: the owner forgets the connection and its IDs.
    case closed
}

/// Why a connection closed, as sent or received in CONNECTION_CLOSE (RFC 9000 §19.19).
public struct QUICCloseError: Sendable, Equatable {
    /// An application (HTTP/3) error code rather than a transport one.
    public var isApplicationError: Bool
    /// The code: a transport error (§20.1), an HTTP/3 error (RFC 9114 §8.1), or 0.
    public var code: UInt64
    /// The reason phrase, for logs.
    public var reason: String

    /// A close error; `reason` is for people, at most 1024 bytes of it are sent.
    public init(isApplicationError: Bool, code: UInt64, reason: String = "") {
        self.isApplicationError = isApplicationError
        self.code = code
        self.reason = reason
    }
}

/// What a connection reports to its owner, in order (streams are the application session's).
public enum QUICConnectionEvent: Sendable, Equatable {
    /// The handshake finished (server: the client's Finished was received).
    case handshakeCompleted
    /// A new ID names this connection from now on: the owner routes packets carrying it here.
    case connectionIDIssued(QUICConnectionID)
    /// An ID no longer names this connection: the owner forgets it.
    case connectionIDRetired(QUICConnectionID)
    /// The peer closed the connection; it is draining.
    case peerClosed(QUICCloseError)
    /// The connection is finished (closed, drained, timed out or dropped); its IDs can be forgotten.
    case closed
}
