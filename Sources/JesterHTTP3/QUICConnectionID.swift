// SPDX-License-Identifier: Apache-2.0

/// A QUIC connection ID (RFC 9000 §5.1): up to 20 opaque bytes that name a connection independently of its
/// addresses, so a packet finds its connection (and its worker) after the client's address changes.
public struct QUICConnectionID: Hashable, Sendable, CustomStringConvertible {
    /// The longest connection ID QUIC version 1 allows (RFC 9000 §17.2).
    public static let maximumLength = 20

    /// The ID's bytes, at most `maximumLength` of them.
    public let bytes: [UInt8]

    /// Wraps bytes as an ID; nil when there are more than QUIC allows.
    public init?(_ bytes: some Sequence<UInt8>) {
        let bytes = Array(bytes)
        guard bytes.count <= Self.maximumLength else { return nil }
        self.bytes = bytes
    }

    /// Lowercase hex, for logs and test failures.
    public var description: String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}

/// Makes the server's connection IDs. The caller supplies it so the IDs can carry routing facts later (the owning
/// worker's slot and generation, read by the SK_REUSEPORT eBPF program; see Docs/http3-design.md): the QUIC
/// layer only asks for IDs of one fixed length, because a short-header packet does not say how long its
/// destination ID is and the receiver must know.
public protocol QUICConnectionIDFactory: Sendable {
    /// The length of every ID this factory makes (8 to 20 bytes: RFC 9000 §7.2 wants at least 8 from a client's
    /// first Initial, and Jester's own IDs keep that length so they are as hard to guess).
    var connectionIDLength: Int { get }

    /// A new, unpredictable ID of `connectionIDLength` bytes.
    func makeConnectionID() -> QUICConnectionID

    /// The ID a Retry packet gives the client for its next Initial (by default like any other). Any worker may
    /// accept that Initial: the Retry token is checked with the instance's shared secret.
    func makeRetryConnectionID() -> QUICConnectionID
}

extension QUICConnectionIDFactory {
    public func makeRetryConnectionID() -> QUICConnectionID { makeConnectionID() }
}

/// IDs made of random bytes only: for tests and for a single worker, where no packet needs steering.
public struct RandomConnectionIDFactory: QUICConnectionIDFactory {
    /// The length of every ID made (8 to 20).
    public let connectionIDLength: Int

    /// `length` is clamped to 8...20.
    public init(length: Int = 18) {
        connectionIDLength = min(max(length, 8), QUICConnectionID.maximumLength)
    }

    /// A fresh ID of random bytes from the system's generator.
    public func makeConnectionID() -> QUICConnectionID {
        var generator = SystemRandomNumberGenerator()
        return QUICConnectionID((0..<connectionIDLength).map { _ in UInt8.random(in: 0...255, using: &generator) })!
    }
}
