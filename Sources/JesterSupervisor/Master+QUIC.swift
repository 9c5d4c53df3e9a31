// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterControl
import JesterSystem
import Logging

/// HTTP/3's UDP side in the master: the sockets of each generation, the SK_REUSEPORT program that steers datagrams
/// by connection ID (`QUICSteering`), and, where the kernel does not steer, the list of workers' forwarding
/// inboxes every worker needs to pass a misdelivered datagram to its owner (`QUICPeer`).
extension Master {
    // MARK: Sockets and steering

    /// The UDP sockets of an HTTP/3 listener, one per worker slot, and the program that steers them.
    ///
    /// With steering (`QUICSteering`), every generation gets sockets of its own in the address's one reuseport
    /// group: the program sends an established connection's datagrams to its owner's socket, so a draining worker
    /// keeps its connections, and new ones only to the serving generation's sockets (`routeNewConnections`, at
    /// the first bind and at each commit). Without it (the kernel or the master's privileges refuse BPF), the
    /// sockets are reused across reloads, the draining worker and its successor reading the same one.
    func bindDatagramSockets(
        for listener: ListenerSettings, slots: Int, previous: BoundListener?, opened: inout [Int32]
    ) throws(SystemError) -> (sockets: [Int32], steering: QUICSteering?) {
        func bind() throws(SystemError) -> Int32 {
            let fd = try ListeningSocket.bindDatagram(host: listener.address.host, port: listener.address.port)
            opened.append(fd)
            return fd
        }
        var sockets: [Int32] = []
        if let previous, let steering = previous.steering {
            while sockets.count < slots { sockets.append(try bind()) }
            return (sockets, steering)
        }
        if let previous {
            sockets = Array(previous.datagramSockets.prefix(slots))
            while sockets.count < slots { sockets.append(try bind()) }
            return (sockets, nil)
        }
        while sockets.count < slots { sockets.append(try bind()) }
        do {
            let steering = try QUICSteering()
            try steering.attach(to: sockets[0])
            try steering.routeNewConnections(to: sockets)
            logger.info("HTTP/3 datagrams steered by connection ID", metadata: [
                "listener": "\(listener.name)", "address": "\(listener.address)",
            ])
            return (sockets, steering)
        } catch {
            logger.warning("""
                HTTP/3 without steering by connection ID (it needs CAP_BPF, CAP_NET_ADMIN and the bpf system \
                call): datagrams are spread by client address, so a client whose address changes, or a \
                connection during a reload, may lose packets (see jester(8), HTTP/3)
                """, metadata: ["listener": "\(listener.name)", "error": "\(error)"])
            return (sockets, nil)
        }
    }

    /// New QUIC connections go to the serving generation's sockets (called when a generation starts serving).
    func routeNewQUICConnections() {
        for (name, bound) in listeners {
            guard let steering = bound.steering else { continue }
            do {
                try steering.routeNewConnections(to: bound.datagramSockets)
            } catch {
                logger.error("cannot steer new HTTP/3 connections to the new generation", metadata: [
                    "listener": "\(name)", "error": "\(error)",
                ])
            }
        }
    }


    /// Datagrams whose connection IDs name `slot` of `generation` go to that worker's UDP socket of each listener
    /// in `names` (again after a respawn: the same socket, a new process). Whether every listener is steered.
    func steerQUIC(to slot: Int, of generation: Int, listeners: [String: BoundListener], names: [String]) -> Bool {
        var steered = true
        for name in names {
            guard let bound = listeners[name], let steering = bound.steering else {
                steered = false
                continue
            }
            do {
                try steering.route(owner: slot, generation: generation, to: bound.datagramSockets[slot])
            } catch {
                steered = false
                logger.error("cannot steer HTTP/3 datagrams to a worker", metadata: [
                    "listener": "\(name)", "slot": .stringConvertible(slot), "error": "\(error)",
                ])
            }
        }
        return steered
    }

    // MARK: Forwarding without steering

    /// A worker told where it takes forwarded datagrams: every worker learns.
    func quicInboxesReported(_ inboxes: [QUICInbox], by worker: WorkerProcess) {
        quicInboxes[worker.pid] = inboxes
        broadcastQUICPeers()
    }

    /// Every worker that forwards hears the current list of live workers' inboxes: after one reported, one
    /// exited, and when a generation starts serving (which changes who takes new connections).
    func broadcastQUICPeers() {
        guard !quicInboxes.isEmpty else { return }
        let peers = quicInboxes.flatMap { pid, inboxes -> [QUICPeer] in
            guard let worker = workers[pid] else { return [] }
            let serving = worker.generation == generation && state(of: worker) != .draining
            return inboxes.map {
                QUICPeer(address: $0.address, slot: worker.slot, generation: worker.generation, port: $0.port,
                    serving: serving)
            }
        }.sorted { ($0.address, $0.generation, $0.slot) < ($1.address, $1.generation, $1.slot) }
        for pid in quicInboxes.keys {
            if let channel = workers[pid]?.channel { send(.quicPeers(peers), to: channel) }
        }
    }

    /// `pid` exited: its inboxes leave the list.
    func quicWorkerExited(_ pid: Int32) {
        if quicInboxes.removeValue(forKey: pid) != nil { broadcastQUICPeers() }
    }
}
