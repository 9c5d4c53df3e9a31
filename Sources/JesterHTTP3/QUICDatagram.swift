// SPDX-License-Identifier: Apache-2.0

/// A point in time for the QUIC layer: nanoseconds on a monotonic clock the caller reads (CLOCK_MONOTONIC in the
/// worker, a counter in tests). The sessions never read a clock themselves, so timer behaviour is deterministic.
public struct QUICInstant: Comparable, Hashable, Sendable {
    /// Nanoseconds since an arbitrary origin, the same for every call on one connection.
    public var nanoseconds: UInt64

    /// The instant `nanoseconds` after the clock's origin.
    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    /// `milliseconds` later.
    public func adding(milliseconds: UInt64) -> QUICInstant {
        QUICInstant(nanoseconds: nanoseconds &+ milliseconds * 1_000_000)
    }

    /// Earlier than.
    public static func < (lhs: QUICInstant, rhs: QUICInstant) -> Bool { lhs.nanoseconds < rhs.nanoseconds }
}

/// One UDP payload to send, and where: the connection picks the path (a migrating client is answered on its new
/// address, a path probe on the probed one).
public struct QUICDatagram: Sendable, Equatable {
    /// The payload: one or more coalesced QUIC packets.
    public var bytes: [UInt8]
    /// The peer to send it to.
    public var peer: QUICSocketAddress
    /// The ECN codepoint for the IP header (RFC 9000 §13.4), 0 when none.
    public var ecn: UInt8

    /// A datagram of `bytes` for `peer`.
    public init(bytes: [UInt8], peer: QUICSocketAddress, ecn: UInt8 = 0) {
        self.bytes = bytes
        self.peer = peer
        self.ecn = ecn
    }
}
