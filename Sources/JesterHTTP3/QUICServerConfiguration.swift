// SPDX-License-Identifier: Apache-2.0

/// Secrets shared by every worker and kept across reloads and upgrades, like the TLS ticket keys: the master
/// makes them once and hands them down, so a stateless reset or an address-validation token made by one worker
/// (or by the previous generation) is understood by any other.
public struct QUICKeys: Sendable, Equatable {
    /// Derives the stateless-reset token of each connection ID (RFC 9000 §10.3.2): a worker that lost a
    /// connection can still end it for the client, because the token follows from the ID alone.
    public var statelessResetSecret: [UInt8]
    /// Encrypts Retry and NEW_TOKEN tokens (RFC 9000 §8.1), which prove a client's address.
    public var tokenSecret: [UInt8]

    /// Keys from the master (each secret 32 random bytes, or more).
    public init(statelessResetSecret: [UInt8], tokenSecret: [UInt8]) {
        self.statelessResetSecret = statelessResetSecret
        self.tokenSecret = tokenSecret
    }

    /// 32 fresh random bytes for each secret.
    public static func random() -> QUICKeys {
        var generator = SystemRandomNumberGenerator()
        func secret() -> [UInt8] { (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) } }
        return QUICKeys(statelessResetSecret: secret(), tokenSecret: secret())
    }
}

/// A QUIC endpoint's transport limits (RFC 9000 §18.2 transport parameters) and timeouts. Windows are what the
/// peer may send before this side consumes: with the HTTP/3 session's manual consumption they are the
/// backpressure between a client and a slow upstream.
public struct QUICTransportSettings: Sendable, Equatable {
    /// Milliseconds without a packet before the connection is dropped silently.
    public var idleTimeoutMilliseconds: UInt64 = 30_000
    /// Milliseconds a handshake may take before the connection is dropped.
    public var handshakeTimeoutMilliseconds: UInt64 = 10_000
    /// Bytes the peer may send on the whole connection before this side consumes some.
    public var maxData: UInt64 = 1 << 20
    /// Bytes the peer may send on one bidirectional stream (a request body) before this side consumes some.
    public var maxStreamData: UInt64 = 256 * 1024
    /// Bytes the peer may send on one unidirectional stream (HTTP/3 control and QPACK streams).
    public var maxUnidirectionalStreamData: UInt64 = 64 * 1024
    /// Bidirectional streams (requests) the peer may have open at once; more are refused by flow control.
    public var maxBidirectionalStreams: UInt64 = 100
    /// Unidirectional streams the peer may open in all: HTTP/3 needs three (control, QPACK encoder and decoder);
    /// the rest leave room for reserved (GREASE) stream types a client may open first (RFC 9114 §6.2.3).
    public var maxUnidirectionalStreams: UInt64 = 8
    /// Connection IDs the peer may hand this side (RFC 9000 §5.1.1): bounds the churn of IDs it can cause.
    public var activeConnectionIDLimit: UInt64 = 4
    /// Milliseconds a Retry token stays valid: one round trip is enough, a longer life only helps replays.
    public var retryTokenLifetimeMilliseconds: UInt64 = 10_000
    /// Milliseconds a NEW_TOKEN token (sent after a handshake, for the client's next connection) stays valid.
    public var newTokenLifetimeMilliseconds: UInt64 = 3_600_000

    /// The defaults above.
    public init() {}
}
