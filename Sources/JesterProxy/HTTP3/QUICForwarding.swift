// SPDX-License-Identifier: Apache-2.0
import JesterControl
import JesterHTTP3
import JesterSystem
import JesterTLS

/// Delivery of QUIC datagrams to their owner when the kernel does not steer them by connection ID (no BPF: the
/// master lacks the privilege, or the kernel is too old). The kernel then spreads datagrams over the slots'
/// sockets by the client's address, so a datagram can reach the wrong worker: after the client's address changed
/// (NAT rebinding, migration), or during a reload, when the draining worker and its successor share their slot's
/// socket. The worker that reads it passes it on, over loopback UDP, to the worker its connection ID names (the ID
/// begins with its slot and generation), which serves it as if it had read it itself. What it costs: one more
/// loopback datagram and an HMAC per misdelivered datagram, paid for the rest of a connection's life once its
/// client's address changed, and during a reload by connections of the draining generation (their successor
/// reads the shared socket and forwards them).
///
/// The decisions and the encapsulation, without sockets: `HTTP3Listener` asks where a datagram goes, and
/// `QUICForwardingInbox` carries it. Loop-confined.
struct QUICForwarding {
    /// A worker: its slot and generation, as its connection IDs name it.
    struct Owner: Hashable {
        var slot: UInt8
        var generation: UInt16
    }

    /// Where the datagram goes instead of being served here.
    enum Decision: Equatable {
        /// Served here (this worker owns it, no live worker does, or it was forwarded already).
        case serveHere
        /// Passed to the worker reading forwarded datagrams on this loopback port.
        case forward(port: Int)
    }

    let me: Owner
    /// Authenticates forwarded datagrams: only workers of this instance know it (derived from its QUIC secrets),
    /// so no other local process can inject a datagram claiming any client address.
    private let key: [UInt8]
    /// Every other live worker's inbox on this address.
    private(set) var peers: [Owner: Int] = [:]
    /// The serving generation's workers on this address, by slot.
    private(set) var servingBySlot: [UInt8: Int] = [:]
    /// Whether this worker belongs to the serving generation (unknown until the master first says).
    private(set) var serving: Bool?
    /// Every worker reads the one socket systemd bound without SO_REUSEPORT (`ListenDatagram=` without
    /// `ReusePort=yes`): which worker reads a datagram is chance, not the client's address.
    var sharesOneSocket = false

    static let magic: [UInt8] = Array("JQF1".utf8)
    static let tagLength = 16

    init(me: Owner, secret: [UInt8]) {
        self.me = me
        key = MessageDigest.sha256.authenticationCode(key: secret, message: Array("jester quic forwarding".utf8))
    }

    /// The master's list of live workers (all addresses; this one's `address` entries are used).
    mutating func update(_ list: [QUICPeer], address: String) {
        peers = [:]
        servingBySlot = [:]
        serving = nil
        for peer in list where peer.address == address {
            let owner = Owner(
                slot: UInt8(truncatingIfNeeded: peer.slot), generation: QUICSteering.connectionIDGeneration(peer.generation))
            if owner == me {
                serving = peer.serving
                continue
            }
            peers[owner] = peer.port
            if peer.serving { servingBySlot[owner.slot] = peer.port }
        }
    }

    /// Whether this worker should read its slot's socket: yes while it serves, and while no serving worker shares
    /// its slot (the socket is then its alone, or its successor is not there); a draining worker whose successor
    /// reads the socket gets its datagrams forwarded instead, so two processes never read one socket.
    var readsSharedSocket: Bool {
        serving == true || servingBySlot[me.slot] == nil
    }

    /// Where a datagram this worker has no connection for goes. `isLong`: a long header (an Initial or Handshake
    /// packet); `draining`: this worker accepts no new connection.
    func decide(id: QUICConnectionID, isLong: Bool, draining: Bool) -> Decision {
        var namesAWorker = false
        if let named = WorkerConnectionIDFactory.owner(of: id) {
            let owner = Owner(slot: named.slot, generation: named.generation)
            if owner != me, let port = peers[owner] { return .forward(port: port) }
            namesAWorker = owner == me
        }
        // One shared socket: a new connection's datagrams (Initials, which one ClientHello may span, and 0-RTT)
        // carry the ID the client chose, so it picks one serving worker for all of them, this one included.
        if sharesOneSocket, isLong, !namesAWorker, !draining, serving == true, !servingBySlot.isEmpty {
            var candidates = servingBySlot
            candidates[me.slot] = nil
            let slots = (Array(candidates.keys) + [me.slot]).sorted()
            let chosen = slots[Int(Self.spread(id) % UInt32(slots.count))]
            return chosen == me.slot ? .serveHere : .forward(port: candidates[chosen]!)
        }
        // A new connection reaching a worker that does not serve (draining, or of a generation still starting)
        // belongs to the serving generation: the worker sharing this slot's socket, or one chosen by the ID.
        if isLong, draining || serving == false, !servingBySlot.isEmpty {
            if let port = servingBySlot[me.slot] { return .forward(port: port) }
            let ports = servingBySlot.values.sorted()
            return .forward(port: ports[Int(Self.spread(id) % UInt32(ports.count))])
        }
        return .serveHere
    }

    /// FNV-1a of the ID, its low bits mixed: the client's retransmissions carry the same ID and reach the same
    /// worker.
    private static func spread(_ id: QUICConnectionID) -> UInt32 {
        var hash = id.bytes.reduce(UInt32(2_166_136_261)) { ($0 ^ UInt32($1)) &* 16_777_619 }
        hash ^= hash >> 16
        hash &*= 0x7feb_352d
        hash ^= hash >> 15
        return hash
    }

    /// Whether `owner` is a live worker (once the master's list arrived): a short-header datagram of a worker
    /// that is gone gets a stateless reset, one of a live worker's is not answered here.
    ///
    /// Sharing one socket, most datagrams reach a worker that is not their owner, so a worker not (yet) in the
    /// list, just started or respawned, must not have its clients reset by the others: unknown owners are unknown
    /// (their clients time out rather than learn of a lost connection at once).
    func isLive(_ owner: Owner) -> Bool? {
        if serving == nil && peers.isEmpty { return nil }
        if owner == me || peers[owner] != nil { return true }
        return sharesOneSocket ? nil : false
    }

    // MARK: Encapsulation

    /// `magic | address length | the client's sockaddr | datagram | tag (HMAC-SHA256, 16 bytes)`.
    func encapsulate(_ datagram: UnsafeRawBufferPointer, from peer: QUICSocketAddress) -> [UInt8] {
        var bytes = Self.magic
        bytes.reserveCapacity(Self.magic.count + 1 + peer.bytes.count + datagram.count + Self.tagLength)
        bytes.append(UInt8(peer.bytes.count))
        bytes += peer.bytes
        bytes += datagram
        bytes += MessageDigest.sha256.authenticationCode(key: key, message: bytes).prefix(Self.tagLength)
        return bytes
    }

    /// The client's address and the datagram of a forwarded message; nil when it is not one of this instance's
    /// (wrong magic, truncated, or a tag that does not match).
    func decapsulate(_ bytes: [UInt8]) -> (peer: QUICSocketAddress, datagram: ArraySlice<UInt8>)? {
        let header = Self.magic.count + 1
        guard bytes.count > header + Self.tagLength, Array(bytes.prefix(Self.magic.count)) == Self.magic else {
            return nil
        }
        let addressLength = Int(bytes[Self.magic.count])
        let body = bytes.count - Self.tagLength
        guard header + addressLength < body else { return nil }
        let tag = Array(bytes[body...])
        let expected = Array(MessageDigest.sha256.authenticationCode(key: key, message: Array(bytes[..<body]))
            .prefix(Self.tagLength))
        guard ConstantTime.equals(tag, expected) else { return nil }
        let address = bytes[header..<(header + addressLength)].withUnsafeBytes { QUICSocketAddress(sockaddrBytes: $0) }
        guard let address else { return nil }
        return (address, bytes[(header + addressLength)..<body])
    }
}
