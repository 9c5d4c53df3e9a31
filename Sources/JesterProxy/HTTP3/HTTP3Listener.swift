// SPDX-License-Identifier: Apache-2.0
import Glibc
import JesterControl
import JesterHTTP3
import JesterMetrics
import NIOCore

/// One worker's UDP socket of a listener with `http3 = true`: every datagram that reaches it is routed by its
/// destination connection ID to the `HTTP3Connection` that owns it, or, when it opens a connection, accepted (with
/// Retry, Version Negotiation and stateless resets as `QUICServerEndpoint` decides). The master binds one such
/// socket per worker slot (per generation, when it steers) with SO_REUSEPORT; each connection's IDs carry the
/// worker's slot and generation (`WorkerConnectionIDFactory`), by which the master's SK_REUSEPORT program
/// (`QUICSteering`) delivers its datagrams here whatever the client's address, and new clients reach only the
/// serving generation. Without that program the kernel spreads datagrams by address, and a datagram that reaches
/// the wrong worker is forwarded to its owner (`QUICForwarding`, through a `QUICForwardingInbox`).
///
/// A NIO datagram channel for now; issue 24's socket layer (recvmmsg/sendmmsg, GSO) replaces it beneath the
/// sessions, which know nothing of sockets. Loop-confined.
final class HTTP3Listener: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    let runtime: WorkerRuntime
    let listenerName: String
    let endpoint: QUICServerEndpoint
    /// Where the socket is bound (its address in every path the connections validate).
    private(set) var localAddress: QUICSocketAddress
    /// Every connection ID in use, the client's original one included, to its connection.
    private var connections: [QUICConnectionID: HTTP3Connection] = [:]
    private var context: ChannelHandlerContext?
    /// One datagram's worth of room that each outgoing packet is written into before it is copied to a buffer.
    private let packet = UnsafeMutableRawBufferPointer.allocate(byteCount: 1500, alignment: 8)
    private var unflushed = false
    /// Connections that received datagrams in the current read batch (`channelReadComplete` finishes them).
    private var touched: [HTTP3Connection] = []
    /// A read batch is under way: its end flushes what was written meanwhile.
    private var reading = false
    /// The worker is draining: no new connection is accepted here.
    private(set) var isDraining = false
    /// Connections accepted whose handshake has not completed: a client's address is unproven until then, so
    /// past `retryThreshold` of them new clients must first answer a Retry (RFC 9000 §8.1.2), and a flood of
    /// Initials from spoofed addresses costs a stateless packet each instead of a handshake and a connection slot.
    private var handshaking = 0
    static let retryThreshold = 64

    /// This worker's slot and generation, which its connection IDs carry.
    let slot: UInt8
    let generation: UInt16
    /// `http3_retry = "always"`: every new client answers a Retry first.
    let alwaysRetries: Bool
    /// The master steers datagrams by connection ID: one for an ID this worker does not know has no live owner.
    let steered: Bool
    /// Unsteered: where misdelivered datagrams go, and the loopback socket that carries them.
    private var forwarding: QUICForwarding?
    private var inbox: QUICForwardingInbox?
    /// The listener's configured address, which names its set of peers.
    private var addressKey = ""
    /// The master's list of peers has arrived.
    private var toldPeers = false
    /// The listener's metric series (nil without metrics).
    private lazy var metricsIDs = runtime.metrics?.ids.listeners[listenerName]

    init(
        runtime: WorkerRuntime, listenerName: String, endpoint: QUICServerEndpoint, localAddress: QUICSocketAddress,
        slot: UInt8, generation: UInt16, alwaysRetries: Bool = false, steered: Bool = false
    ) {
        self.steered = steered
        self.alwaysRetries = alwaysRetries
        self.slot = slot
        self.generation = generation
        self.runtime = runtime
        self.listenerName = listenerName
        self.endpoint = endpoint
        self.localAddress = localAddress
    }

    deinit {
        packet.deallocate()
    }

    /// The sessions' clock: monotonic nanoseconds, the loop's clock.
    static func now() -> QUICInstant {
        QUICInstant(nanoseconds: NIODeadline.now().uptimeNanoseconds)
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if let bound = context.channel.localAddress.flatMap(QUICSocketAddress.init(nio:)) { localAddress = bound }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        reading = true
        guard let peer = QUICSocketAddress(nio: envelope.remoteAddress) else { return }
        runtime.counters.bytesIn &+= envelope.data.readableBytes
        count(.received)
        envelope.data.withUnsafeReadableBytes { received($0, from: peer, now: Self.now(), forwarded: false) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        finishReadBatch()
    }

    /// The end of a batch of datagrams (read here or forwarded): the connections that received some finish
    /// their turn, and everything written meanwhile goes out.
    func finishReadBatch() {
        let batch = touched
        touched.removeAll(keepingCapacity: true)
        for connection in batch { connection.readComplete() }
        reading = false
        flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A datagram socket's errors (an ICMP unreachable reported on a later read) concern one peer; serve on.
        runtime.logWarning("HTTP/3 socket error", metadata: ["listener": "\(listenerName)", "error": "\(error)"])
    }

    // MARK: Datagrams

    /// `forwarded`: another worker read it and passed it here; it is served here whatever it is.
    private func received(
        _ datagram: UnsafeRawBufferPointer, from peer: QUICSocketAddress, now: QUICInstant, forwarded: Bool
    ) {
        switch endpoint.route(datagram: datagram, peer: peer) {
        case .connection(let id, let isLong):
            if let connection = connections[id] {
                if !connection.isTouched {
                    connection.isTouched = true
                    touched.append(connection)
                }
                connection.received(datagram, from: peer, now: now)
            } else if !forwarded, let forwarding, let inbox,
                case .forward(let port) = forwarding.decide(id: id, isLong: isLong, draining: isDraining)
            {
                if !isLong { countUnknown(id) }
                count(.forwarded)
                inbox.send(forwarding.encapsulate(datagram, from: peer), toPort: port)
            } else if isLong {
                accept(datagram, id: id, from: peer, now: now)
            } else {
                countUnknown(id)
                if !ownedElsewhere(id), let reset = endpoint.statelessReset(datagram: datagram, peer: peer) {
                    // A short-header packet of a connection no live worker knows (lost in a crash): the client
                    // learns at once instead of timing out.
                    send(reset)
                }
            }
        case .versionNegotiation(let answer):
            send(answer)
        case .invalid:
            break
        }
    }

    /// Counts a datagram's `disposition`, in the worker's report and in the metrics.
    private func count(_ disposition: QUICDatagramDisposition) {
        switch disposition {
        case .received: runtime.counters.quic.datagrams &+= 1
        case .unknownConnection: runtime.counters.quic.unknownConnection &+= 1
        case .otherWorker: runtime.counters.quic.otherWorker &+= 1
        case .forwarded: runtime.counters.quic.forwarded &+= 1
        case .forwardedIn: runtime.counters.quic.forwardedIn &+= 1
        case .forwardingRefused: runtime.counters.quic.forwardingRefused &+= 1
        }
        if let metricsIDs { runtime.metrics?.quicDatagram(listener: metricsIDs, disposition) }
    }

    /// A short-header datagram for a connection this worker does not know, counted (and whether its ID names
    /// another worker: misdelivered, unless that worker is gone).
    private func countUnknown(_ id: QUICConnectionID) {
        count(.unknownConnection)
        if let owner = WorkerConnectionIDFactory.owner(of: id), owner != (slot, generation) { count(.otherWorker) }
    }

    // MARK: Forwarding (without steering)

    /// Passes misdelivered datagrams to their owners through `inbox`, once the master lists them.
    func enableForwarding(_ forwarding: QUICForwarding, inbox: QUICForwardingInbox, address: String) {
        self.forwarding = forwarding
        self.inbox = inbox
        addressKey = address
        inbox.listener = self
    }

    /// The master's list of live workers' inboxes: where datagrams go from now on, and whether this worker still
    /// reads its slot's socket (a draining worker whose successor reads it stops, so two processes never read
    /// one socket; its connections' datagrams then arrive forwarded).
    func updatePeers(_ peers: [QUICPeer]) {
        guard forwarding != nil else { return }
        toldPeers = true
        forwarding!.update(peers, address: addressKey)
        let reads = forwarding!.readsSharedSocket
        context?.channel.setOption(ChannelOptions.autoRead, value: reads).whenFailure { _ in }
    }

    /// The master has not listed the peers a second after start (it always does at once): read the socket anyway
    /// rather than serve nothing.
    func readUnlessToldOtherwise() {
        guard !toldPeers else { return }
        runtime.logWarning("HTTP/3: no list of peers from the master; reading the socket", metadata: [
            "listener": "\(listenerName)",
        ])
        context?.channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
    }

    /// A message another worker forwarded: checked, then served like a datagram read here.
    func receivedForwarded(_ message: [UInt8]) {
        guard let forwarding, let (peer, datagram) = forwarding.decapsulate(message) else {
            count(.forwardingRefused)
            return
        }
        reading = true
        count(.forwardedIn)
        datagram.withUnsafeBytes { received($0, from: peer, now: Self.now(), forwarded: true) }
    }

    /// A long-header packet for no connection: a client's first Initial (or its Retry answer), accepted unless
    /// the worker drains; `id` is the destination ID the client chose.
    private func accept(
        _ datagram: UnsafeRawBufferPointer, id: QUICConnectionID, from peer: QUICSocketAddress, now: QUICInstant
    ) {
        // A draining worker takes no new connection. Steered, none reaches it (new clients go to the serving
        // generation's sockets); otherwise the client's Initial goes unanswered here and its retry lands where the
        // kernel sends it (this socket is the new generation's too).
        guard !isDraining else { return }
        // Far over the threshold even with Retry (clients that proved their address but never finish): drop.
        guard handshaking < 4 * Self.retryThreshold else { return }
        switch endpoint.accept(
            datagram: datagram, local: localAddress, peer: peer,
            requireAddressValidation: alwaysRetries || handshaking >= Self.retryThreshold, now: now)
        {
        case .accepted(let quic):
            let session: HTTP3Session
            do {
                var settings = HTTP3Session.Settings()
                settings.maxFieldSectionSize = UInt64(runtime.configuration.http.maxRequestHeadSize)
                session = try HTTP3Session(connection: quic, settings: settings, now: now)
            } catch {
                runtime.logWarning("HTTP/3 session refused", metadata: ["client": "\(peer)", "error": "\(error)"])
                quic.close(applicationError: HTTP3ErrorCode.internalError, now: now)
                send(from: quic, now: now)
                return
            }
            let connection = HTTP3Connection(session: session, listener: self, runtime: runtime, listenerName: listenerName)
            guard runtime.register(connection, clientAddress: connection.clientAddress) else {
                // Over a connection limit: closed at once, nothing of it processed.
                connection.abandon()
                quic.close(applicationError: HTTP3ErrorCode.requestRejected, now: now)
                send(from: quic, now: now)
                return
            }
            handshaking += 1
            runtime.counters.quic.accepted &+= 1
            if let metricsIDs { runtime.metrics?.quicConnection(listener: metricsIDs, retry: false) }
            // The client's first ID, and the one this packet carried (after a Retry, the ID the Retry gave it):
            // the rest of its Initials and Handshake packets use it until it learns this side's own.
            adopt(quic.originalDestinationConnectionID, for: connection)
            adopt(id, for: connection)
            connection.service(now: now)
        case .retry(let answer):
            runtime.counters.quic.retries &+= 1
            if let metricsIDs { runtime.metrics?.quicConnection(listener: metricsIDs, retry: true) }
            send(answer)
        case .refuse(let answer):
            send(answer)
        case .ignore:
            break
        }
    }

    /// Writes every datagram `connection` has to send now.
    func send(from connection: QUICConnection, now: QUICInstant) {
        guard let context else { return }

        while let written = connection.writeDatagram(into: packet, now: now),
            let address = written.peer.nioAddress
        {
            var buffer = context.channel.allocator.buffer(capacity: written.count)
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: packet[..<written.count]))
            runtime.counters.bytesOut &+= written.count

            context.write(wrapOutboundOut(AddressedEnvelope(remoteAddress: address, data: buffer)), promise: nil)
            unflushed = true
        }
    }

    private func send(_ datagram: QUICDatagram) {
        guard let context, let address = datagram.peer.nioAddress else { return }
        let buffer = context.channel.allocator.buffer(bytes: datagram.bytes)
        context.write(wrapOutboundOut(AddressedEnvelope(remoteAddress: address, data: buffer)), promise: nil)
        unflushed = true
    }

    /// Sends what a connection wrote outside a read batch (a timer, an upstream's answer) at once; within one,
    /// the batch's end sends everything together. (Datagrams left unflushed would wait for the client's next
    /// packet, which waits for them.)
    func flushUnlessReading() {
        if !reading { flush() }
    }

    /// Sends what was written since the last flush.
    func flush() {
        guard unflushed, let context else { return }
        unflushed = false
        context.flush()
    }

    /// Whether `id` may name another live worker (another slot, or another generation of this slot: unsteered,
    /// the draining worker and its successor read the same socket). Such a packet reached the wrong worker and is
    /// dropped, not answered with a stateless reset that would kill a connection its owner still serves; QUIC
    /// sends it again. Steered by ID, a datagram reaches another owner's socket only once that owner is gone.
    private func ownedElsewhere(_ id: QUICConnectionID) -> Bool {
        guard !steered, let owner = WorkerConnectionIDFactory.owner(of: id) else { return false }
        // Forwarding, the master's list says whether that worker still lives.
        if toldPeers, let forwarding,
            let live = forwarding.isLive(.init(slot: owner.slot, generation: owner.generation))
        {
            return live && (owner.slot != slot || owner.generation != generation)
        }
        return owner.slot != slot || owner.generation != generation
    }

    // MARK: Connections

    /// Packets carrying `id` go to `connection` from now on (it issued the ID, or the client chose it).
    func adopt(_ id: QUICConnectionID, for connection: HTTP3Connection) {
        connections[id] = connection
        connection.connectionIDs.insert(id)
    }

    /// `connection` retired `id`.
    func forget(_ id: QUICConnectionID, of connection: HTTP3Connection) {
        if connections[id] === connection { connections[id] = nil }
        connection.connectionIDs.remove(id)
    }

    /// A connection's handshake completed: it no longer counts as unproven.
    func handshakeCompleted() {
        handshaking = max(handshaking - 1, 0)
    }

    /// A connection's handshake completed: counted, with whether it resumed a session and took 0-RTT data.
    func handshakeCompleted(resumed: Bool, earlyData: Bool) {
        handshakeCompleted()
        if resumed { runtime.counters.quic.resumed = (runtime.counters.quic.resumed ?? 0) &+ 1 }
        if earlyData { runtime.counters.quic.earlyData = (runtime.counters.quic.earlyData ?? 0) &+ 1 }
    }

    /// `connection` is over: its IDs are forgotten, and the worker stops counting it.
    func remove(_ connection: HTTP3Connection) {
        for id in connection.connectionIDs where connections[id] === connection { connections[id] = nil }
        connection.connectionIDs = []
        if !connection.isEstablished { handshakeCompleted() }
        runtime.unregister(connection, clientAddress: connection.clientAddress)
        flush()
    }

    /// The worker drains: no new connection is accepted; the connections themselves drain through the worker's
    /// list of connections (`WorkerRuntime.drainConnections`).
    func stopAccepting() {
        isDraining = true
    }

    /// Whether any connection is still open here.
    var hasConnections: Bool { !connections.isEmpty }
}

extension QUICSocketAddress {
    /// The address of a NIO socket address (IPv4 or IPv6).
    init?(nio address: SocketAddress) {
        guard let converted = address.withSockAddr({ pointer, size in
            QUICSocketAddress(sockaddrBytes: UnsafeRawBufferPointer(start: pointer, count: size))
        }) else { return nil }
        self = converted
    }

    /// The address as NIO's, for a datagram's destination.
    var nioAddress: SocketAddress? {
        bytes.withUnsafeBytes { raw -> SocketAddress? in
            if isIPv6 {
                guard raw.count >= MemoryLayout<sockaddr_in6>.size else { return nil }
                return SocketAddress(raw.loadUnaligned(as: sockaddr_in6.self))
            }
            guard raw.count >= MemoryLayout<sockaddr_in>.size else { return nil }
            return SocketAddress(raw.loadUnaligned(as: sockaddr_in.self))
        }
    }
}
