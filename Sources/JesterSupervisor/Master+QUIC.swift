// SPDX-License-Identifier: Apache-2.0
import Glibc
import JesterConfig
import JesterControl
import JesterSystem
import Logging
import NIOCore

/// HTTP/3's UDP side in the master: the sockets of each generation, the SK_REUSEPORT program that steers datagrams
/// by connection ID (`QUICSteering`), and, where the kernel does not steer, the list of workers' forwarding
/// inboxes every worker needs to pass a misdelivered datagram to its owner (`QUICPeer`).
extension Master {
    // MARK: Sockets and steering

    /// The UDP sockets of an HTTP/3 listener, one per worker slot, and the program that steers them.
    ///
    /// Whether an address is steered is decided once, at its first bind, and kept for the master's life (its
    /// `QUICSteering` too, in `quicSteerings`): a generation still draining on the address must keep reaching its
    /// connections whatever later configurations do with it. Steered, every generation gets sockets of its own in
    /// the address's one reuseport group: the program sends an established connection's datagrams to its owner's
    /// socket, so a draining worker keeps its connections, and new ones only to the serving generation's sockets
    /// (`routeNewConnections`, at the first bind and at each commit). Unsteered (the kernel or the master's
    /// privileges refuse BPF), the sockets are reused across reloads, the draining worker and its successor
    /// sharing one (`QUICForwarding` in the workers delivers what lands on the wrong one).
    ///
    /// `previous`: sockets to start from (a reload's, or those a restarted master recovered from systemd's
    /// descriptor store). `activated`: a UDP socket systemd bound (`ListenDatagram=`), taken at the address's
    /// first bind as slot 0's socket. With `ReusePort=yes` Jester's own sockets join its group as usual; without,
    /// nothing can join it, so every slot shares that one socket, unsteered (the workers forward what reaches the
    /// wrong one). The activated socket stays open for the master's life (`closeUnusedSockets`); once its
    /// generation is gone the steering program never picks it.
    func bindDatagramSockets(
        for listener: ListenerSettings, slots: Int, capacity: Int, previous: BoundListener?, activated: Int32? = nil,
        opened: inout [Int32]
    ) throws(SystemError) -> (sockets: [Int32], steering: QUICSteering?) {
        guard slots <= QUICSteering.maximumSlots else {
            throw SystemError("http3", "\(slots) worker slots (connection IDs name at most 256)", errno: EINVAL)
        }
        func bind() throws(SystemError) -> Int32 {
            let fd = try ListeningSocket.bindDatagram(host: listener.address.host, port: listener.address.port)
            opened.append(fd)
            return fd
        }
        let address = listener.address.description
        var sockets: [Int32] = []
        if let steering = quicSteerings[address] {
            while sockets.count < slots { sockets.append(try bind()) }
            // (The same program again: the group may be new, if every earlier socket of the address closed.)
            try steering.attach(to: sockets[0])
            return (sockets, steering)
        }
        if quicUnsteeredAddresses.contains(address) {
            // systemd's socket without SO_REUSEPORT: no socket can join it, so any number of slots share it.
            if let shared = previous?.datagramSockets.first ?? activated,
                ListeningSocket.option(SO_REUSEPORT, of: shared) == 0
            {
                return (Array(repeating: shared, count: slots), nil)
            }
            if let previous { sockets = Array(previous.datagramSockets.prefix(slots)) }
            while sockets.count < slots { sockets.append(try bind()) }
            return (sockets, nil)
        }
        // The address's first bind. systemd's socket comes first: it stays bound in the group whatever happens, so
        // a worker must read it (after a restart the recovered sockets fill the other slots).
        if let activated {
            guard ListeningSocket.option(SO_REUSEPORT, of: activated) == 1 else {
                quicUnsteeredAddresses.insert(address)
                logger.notice("""
                    HTTP/3 on systemd's UDP socket without ReusePort=yes: every worker reads that one socket, \
                    unsteered (set ReusePort=yes in the socket unit to steer by connection ID)
                    """, metadata: ["listener": "\(listener.name)", "address": "\(listener.address)"])
                return (Array(repeating: activated, count: slots), nil)
            }
            sockets = Array(([activated] + (previous?.datagramSockets.filter { $0 != activated } ?? [])).prefix(slots))
        } else if let previous {
            sockets = Array(previous.datagramSockets.prefix(slots))
        }
        while sockets.count < slots { sockets.append(try bind()) }
        do {
            let steering = try QUICSteering(owners: capacity)
            do {
                try steering.attach(to: sockets[0])
                try steering.routeNewConnections(to: sockets)
            } catch {
                QUICSteering.detach(from: sockets[0])
                throw error
            }
            quicSteerings[address] = steering
            logger.info("HTTP/3 datagrams steered by connection ID", metadata: [
                "listener": "\(listener.name)", "address": "\(listener.address)",
            ])
            return (sockets, steering)
        } catch {
            quicUnsteeredAddresses.insert(address)
            // Recovered sockets, and systemd's, may still carry the program of a master before, over maps of its own
            // generations: without a program of ours, the kernel's plain spreading is better than stale choices.
            if previous != nil || activated != nil { QUICSteering.detach(from: sockets[0]) }
            logger.warning("""
                HTTP/3 without steering by connection ID (it needs CAP_BPF, CAP_NET_ADMIN and the bpf system \
                call): datagrams are spread by client address and forwarded by the workers to the one that owns \
                them, one more hop for those (see jester(8), HTTP/3)
                """, metadata: ["listener": "\(listener.name)", "error": "\(error)"])
            return (sockets, nil)
        }
    }

    /// How many workers the steering of an address makes room for: every slot of every generation that may be
    /// alive at once, twice over (a reload that raises either fails to register its workers, and says so).
    static func steeringCapacity(slots: Int, configuration: Configuration) -> Int {
        slots * (configuration.server.maxDrainingGenerations + 2) * 2
    }

    /// New QUIC connections go to the serving generation's sockets (at each commit, and when a slot is given up:
    /// its socket, which no worker reads any more, leaves the choice).
    func routeNewQUICConnections() {
        // During a transaction the serving generation's sockets are the previous ones (`listeners` holds the new).
        for (name, bound) in prepared?.previousListeners ?? listeners {
            guard let steering = bound.steering else { continue }
            let sockets = bound.datagramSockets.enumerated().filter { !quicSlotsGivenUp.contains($0.offset) }
            do {
                try steering.routeNewConnections(to: sockets.map(\.element))
            } catch {
                logger.error("cannot steer new HTTP/3 connections to the serving generation", metadata: [
                    "listener": "\(name)", "error": "\(error)",
                ])
            }
        }
    }

    /// Datagrams whose connection IDs name `slot` of `generation` go to that worker's UDP socket of each listener
    /// in `names` (again after a respawn: the same socket, a new process). Returns the listeners so steered;
    /// throws when registering fails (the map is full: the worker is not spawned, rather than reset clients).
    func steerQUIC(to slot: Int, of generation: Int, listeners: [String: BoundListener], names: [String])
        throws(SystemError) -> [String]
    {
        var steered: [String] = []
        for name in names {
            guard let bound = listeners[name], let steering = bound.steering else { continue }
            try steering.route(owner: slot, generation: generation, to: bound.datagramSockets[slot])
            steered.append(name)
        }
        return steered
    }

    // MARK: Forwarding without steering

    /// A worker told where it takes forwarded datagrams: every worker learns.
    func quicInboxesReported(_ inboxes: [QUICInbox], by worker: WorkerProcess) {
        guard workers[worker.pid] != nil else { return }  // reaped already
        quicInboxes[worker.pid] = inboxes
        broadcastQUICPeers()
    }

    /// Every worker that forwards hears the current list of live workers' inboxes: after one reported, one
    /// exited, and when a generation starts serving (which changes who takes new connections). Coalesced to one
    /// list per 20 ms, encoded once: a generation of N workers reporting would otherwise send N lists of N to N.
    func broadcastQUICPeers() {
        guard !quicInboxes.isEmpty, !quicPeersBroadcastPending else { return }
        quicPeersBroadcastPending = true
        eventLoop.scheduleTask(in: .milliseconds(20)) { self.sendQUICPeers() }
    }

    private func sendQUICPeers() {
        quicPeersBroadcastPending = false
        guard !quicInboxes.isEmpty else { return }
        let peers = quicInboxes.flatMap { pid, inboxes -> [QUICPeer] in
            guard let worker = workers[pid] else { return [] }
            let serving = worker.generation == generation && state(of: worker) != .draining
            return inboxes.map {
                QUICPeer(address: $0.address, slot: worker.slot, generation: worker.generation, port: $0.port,
                    serving: serving)
            }
        }.sorted { ($0.address, $0.generation, $0.slot) < ($1.address, $1.generation, $1.slot) }
        let frame = ControlFrameCodec.encode(.quicPeers(peers))
        for pid in quicInboxes.keys {
            workers[pid]?.channel?.writeAndFlush(ByteBuffer(bytes: frame), promise: nil)
        }
    }

    /// `pid` exited: its inboxes leave the list.
    func quicWorkerExited(_ pid: Int32) {
        if quicInboxes.removeValue(forKey: pid) != nil { broadcastQUICPeers() }
    }
}
