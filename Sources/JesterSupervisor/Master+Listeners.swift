// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterControl
import JesterLogging
import JesterSystem
import Logging
import NIOCore
import NIOPosix

/// Listening sockets: binding one per worker slot, reusing them across reloads, systemd's descriptor store.
extension Master {
    /// Raises the soft open-file limit to the hard one (workers inherit it): Debian and systemd start services
    /// with a soft limit of 1024, far below what `http.max_connections` (10,000 per worker by default) needs.
    func raiseOpenFileLimit() {
        var limit = rlimit()
        guard getrlimit(RLIMIT_NOFILE_VALUE, &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        let previous = limit.rlim_cur
        limit.rlim_cur = limit.rlim_max
        if setrlimit(RLIMIT_NOFILE_VALUE, &limit) == 0 {
            logger.info("raised the open-file limit", metadata: [
                "from": .stringConvertible(Int(previous)), "to": .stringConvertible(Int(limit.rlim_max)),
            ])
        }
    }

    func resolveControlGroup(_ configuration: Configuration) throws -> UInt32? {
        guard let name = configuration.server.controlGroup else { return nil }
        guard let gid = Privileges.lookupGroup(name) else {
            throw SystemError("getgrnam", "control_group '\(name)'", errno: ENOENT)
        }
        return gid
    }

    // MARK: Listeners

    /// Binds every listener of `configuration` with one socket per worker slot, reusing the sockets of listeners
    /// whose address and backlog did not change (the same fds, so their accept queues survive a reload). A socket
    /// that cannot be bound throws `ListenerBindError`, naming the listener and where its table is written.
    func bindListeners(
        for configuration: Configuration, reusing existing: [String: BoundListener]
    ) throws -> [String: BoundListener] {
        let slots = configuration.server.workers ?? ProcessSpawner.availableCPUs()
        var bound: [String: BoundListener] = [:]
        var opened: [Int32] = []
        do {
            for listener in configuration.listeners {
                var sockets: [Int32] = []
                var datagramSockets: [Int32] = []
                var steering: QUICSteering?
                if listener.servesHTTP3 {
                    let previous = existing.values.first {
                        $0.settings.address == listener.address && !$0.datagramSockets.isEmpty
                    }
                    // (By address: a socket named for the listener but bound elsewhere would make a group of its own.)
                    let activated = activatedSockets.first {
                        $0.isDatagram && $0.address == listener.address.description
                    }
                    do {
                        (datagramSockets, steering) = try bindDatagramSockets(
                            for: listener, slots: slots,
                            capacity: Self.steeringCapacity(slots: slots, configuration: configuration),
                            previous: previous, activated: activated?.fd, opened: &opened)
                    } catch {
                        throw ListenerBindError(
                            listener: listener.name, address: listener.address.description + " (UDP, http3)",
                            location: configuration.listenerLocations()[listener.name], cause: error)
                    }
                }
                if let activated = activatedSockets.first(where: {
                    !$0.isDatagram && ($0.name == listener.name || $0.address == listener.address.description)
                }) {
                    // (A TCP socket from systemd is shared by every slot; UDP ones are bindDatagramSockets'.)
                    bound[listener.name] = BoundListener(
                        settings: listener, sockets: Array(repeating: activated.fd, count: slots),
                        datagramSockets: datagramSockets, steering: steering)
                    continue
                }
                if let previous = existing.values.first(where: {
                    $0.settings.address == listener.address && $0.settings.backlog == listener.backlog
                }) {
                    sockets = Array(previous.sockets.prefix(slots))
                }
                while sockets.count < slots {
                    let fd: Int32
                    do {
                        fd = try ListeningSocket.bind(
                            host: listener.address.host, port: listener.address.port, backlog: listener.backlog)
                    } catch {
                        throw ListenerBindError(
                            listener: listener.name, address: listener.address.description,
                            location: configuration.listenerLocations()[listener.name], cause: error)
                    }
                    opened.append(fd)
                    sockets.append(fd)
                }
                bound[listener.name] = BoundListener(
                    settings: listener, sockets: sockets, datagramSockets: datagramSockets, steering: steering)
            }
        } catch {
            for fd in opened { close(fd) }
            throw error
        }
        return bound
    }

    /// Closes the sockets of `old` that `current` no longer uses.
    func closeUnusedSockets(_ old: [String: BoundListener], keeping current: [String: BoundListener]) {
        let inUse = Set(current.values.flatMap { $0.sockets + $0.datagramSockets }).union(activatedSockets.map(\.fd))
        for fd in Set(old.values.flatMap { $0.sockets + $0.datagramSockets }) where !inUse.contains(fd) {
            // systemd's copy first: left in the store, the socket would keep queueing connections nobody serves.
            if let name = storedDescriptorNames.removeValue(forKey: fd) { Systemd.removeStoredDescriptor(name: name) }
            close(fd)
        }
    }

    // MARK: systemd's descriptor store

    /// Store names of the listening sockets this master stores with systemd: "jester-store-<serial>", unique
    /// within the store (FDSTOREREMOVE removes every descriptor of a name).
    enum StoredDescriptor {
        static let prefix = "jester-store-"
        static func name(serial: Int) -> String { prefix + String(serial) }
        static func serial(of name: String) -> Int? {
            name.hasPrefix(prefix) ? Int(name.dropFirst(prefix.count)) : nil
        }
    }

    /// Gives systemd a copy of every listening socket not yet in its store (see `Systemd.storeDescriptor`):
    /// TCP, and HTTP/3's UDP ones, so that a master restarted by systemd serves on the very sockets (clients'
    /// datagrams queue there meanwhile, instead of meeting a closed port).
    func storeNewSockets() {
        guard Systemd.descriptorStoreAvailable else { return }
        let unitSockets = Set(activatedSockets.map(\.fd))
        for fd in Set(listeners.values.flatMap { $0.sockets + $0.datagramSockets }).sorted()
        where storedDescriptorNames[fd] == nil && !unitSockets.contains(fd) {
            let name = StoredDescriptor.name(serial: nextStoreSerial)
            nextStoreSerial += 1
            if Systemd.storeDescriptor(fd, name: name) { storedDescriptorNames[fd] = name }
        }
    }

    /// Listening sockets a previous master stored with systemd, grouped into listeners by address (in the order
    /// they were stored, which is slot order; UDP apart from TCP); reused by `bindListeners` exactly as a reload
    /// reuses its own, so connections queued while no master ran are served. Sockets no listener wants any more
    /// are closed and removed from the store.
    func recoverStoredSockets(_ sockets: [Systemd.ActivatedSocket]) -> [String: BoundListener] {
        var recovered: [String: BoundListener] = [:]
        for socket in sockets.sorted(by: { StoredDescriptor.serial(of: $0.name)! < StoredDescriptor.serial(of: $1.name)! }) {
            nextStoreSerial = max(nextStoreSerial, StoredDescriptor.serial(of: socket.name)! + 1)
            storedDescriptorNames[socket.fd] = socket.name
            guard let listener = configuration.listeners.first(where: { $0.address.description == socket.address }) else {
                logger.notice("closing a stored socket no listener uses", metadata: [
                    "address": .string(socket.address),
                ])
                Systemd.removeStoredDescriptor(name: socket.name)
                storedDescriptorNames[socket.fd] = nil
                close(socket.fd)
                continue
            }
            if socket.isDatagram {
                guard listener.servesHTTP3 else {
                    Systemd.removeStoredDescriptor(name: socket.name)
                    storedDescriptorNames[socket.fd] = nil
                    close(socket.fd)
                    continue
                }
                recovered[listener.name, default: BoundListener(settings: listener, sockets: [])]
                    .datagramSockets.append(socket.fd)
            } else {
                recovered[listener.name, default: BoundListener(settings: listener, sockets: [])].sockets.append(socket.fd)
            }
        }
        if !recovered.isEmpty {
            logger.notice("recovered listening sockets from systemd's descriptor store", metadata: [
                "listeners": .array(recovered.keys.sorted().map { .string($0) }),
                "sockets": .stringConvertible(recovered.values.reduce(0) { $0 + $1.sockets.count }),
                "udp_sockets": .stringConvertible(recovered.values.reduce(0) { $0 + $1.datagramSockets.count }),
            ])
        }
        return recovered
    }
}

/// RLIMIT_NOFILE as getrlimit/setrlimit take it on glibc (the constant imports as an enum case).
private let RLIMIT_NOFILE_VALUE = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
