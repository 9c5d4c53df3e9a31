// SPDX-License-Identifier: Apache-2.0

/// Connection IDs that name the worker owning the connection: byte 0 is the worker's slot, bytes 1-2 the
/// configuration generation (big-endian), the rest random. Packets are steered by this prefix, not by the 4-tuple,
/// so they reach their worker after the client's address changes and, across a reload, the old generation keeps
/// its connections while new ones go to the new generation: the SK_REUSEPORT program reads the prefix (issue 23,
/// part two), and without BPF a worker reads it to forward a misrouted datagram (Docs/http3-design.md).
public struct WorkerConnectionIDFactory: QUICConnectionIDFactory {
    /// The bytes that name the owner: slot and generation.
    public static let prefixLength = 3

    /// The worker slot (0-255) that owns the connections made with these IDs.
    public let slot: UInt8
    /// The configuration generation of that worker, 1-65,535 (the master maps its generation numbers onto that
    /// range; only live generations need to differ). 0 names no worker: Retry IDs carry it.
    public let generation: UInt16
    public let connectionIDLength: Int

    /// `length` is clamped to 8...20; 16 leaves 13 random bytes.
    public init(slot: UInt8, generation: UInt16, length: Int = 16) {
        self.slot = slot
        self.generation = generation
        connectionIDLength = min(max(length, 8), QUICConnectionID.maximumLength)
    }

    /// An ID with this worker's prefix and fresh random bytes from the system's generator.
    public func makeConnectionID() -> QUICConnectionID {
        var generator = SystemRandomNumberGenerator()
        let random = (Self.prefixLength..<connectionIDLength).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return QUICConnectionID([slot, UInt8(generation >> 8), UInt8(generation & 0xff)] + random)!
    }

    /// A Retry's ID names no worker (generation 0), so the client's next Initial is steered like a new
    /// connection's, to the serving generation: the worker that sent the Retry may have started draining since.
    public func makeRetryConnectionID() -> QUICConnectionID {
        WorkerConnectionIDFactory(slot: 0, generation: 0, length: connectionIDLength).makeConnectionID()
    }

    /// The owner an ID of this layout names; nil for an ID too short to carry one (a client's own, say).
    public static func owner(of id: QUICConnectionID) -> (slot: UInt8, generation: UInt16)? {
        guard id.bytes.count >= 8 else { return nil }
        return (id.bytes[0], UInt16(id.bytes[1]) << 8 | UInt16(id.bytes[2]))
    }
}
