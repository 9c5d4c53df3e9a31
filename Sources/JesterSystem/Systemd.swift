// SPDX-License-Identifier: Apache-2.0
private import CJesterSystemd
import Glibc

/// Talks to systemd when Jester runs under it (Type=notify); does nothing otherwise.
public enum Systemd {
    /// Whether systemd asked for notifications (NOTIFY_SOCKET is set).
    public static var isNotifying: Bool { getenv("NOTIFY_SOCKET") != nil }

    /// Sends a state string such as `READY=1`, `RELOADING=1`, `STOPPING=1` or `STATUS=...`.
    @discardableResult
    public static func notify(_ state: String) -> Bool {
        sd_notify(0, state) > 0
    }

    /// `RELOADING=1` with the `MONOTONIC_USEC` systemd ≥ 253 needs to time the reload (Type=notify-reload).
    @discardableResult
    public static func notifyReloading() -> Bool {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let microseconds = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
        return notify("RELOADING=1\nMONOTONIC_USEC=\(microseconds)")
    }

    /// The watchdog interval systemd expects pings within (`WatchdogSec=`), or nil when it is off. Pings go out at
    /// half of it, as sd_watchdog_enabled(3) advises.
    public static var watchdogInterval: Duration? {
        var microseconds: UInt64 = 0
        guard sd_watchdog_enabled(0, &microseconds) > 0, microseconds > 0 else { return nil }
        return .microseconds(Int64(microseconds))
    }

    /// Hands a copy of `fd` to systemd's file descriptor store under `name` (`FileDescriptorStoreMax=` in the
    /// unit). systemd passes stored descriptors back as LISTEN_FDS when it starts the service again after a crash
    /// (and, with `FileDescriptorStorePreserve=yes` on systemd ≥ 254, after `systemctl restart`), so the listening
    /// sockets and the connections queued on them outlive the master.
    @discardableResult
    public static func storeDescriptor(_ fd: Int32, name: String) -> Bool {
        var descriptor = fd
        return sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME=\(name)", &descriptor, 1) > 0
    }

    /// Asks systemd to close its stored copies named `name`: a listening socket left in the store would keep
    /// accepting connections into a queue nobody serves.
    @discardableResult
    public static func removeStoredDescriptor(name: String) -> Bool {
        notify("FDSTOREREMOVE=1\nFDNAME=\(name)")
    }

    /// Whether the unit allows a descriptor store: systemd ≥ 254 says so in $FDSTORE; older ones do not say, so
    /// the store is tried whenever systemd listens (it logs and drops descriptors it cannot keep).
    public static var descriptorStoreAvailable: Bool {
        guard isNotifying else { return false }
        guard let value = getenv("FDSTORE") else { return true }
        return (Int(String(cString: value)) ?? 0) > 0
    }

    /// A listening socket systemd passed in (socket activation, `jester.socket`).
    public struct ActivatedSocket: Sendable, Equatable, Codable {
        public var fd: Int32
        /// `FileDescriptorName=` of the socket unit (systemd's default is the unit name).
        public var name: String
        /// The bound address as "ip:port" ("[v6]:port"), to match listeners that have no matching name.
        public var address: String

        /// A UDP socket (`ListenDatagram=`; HTTP/3's), not a TCP one (`ListenStream=`). Asked of the socket, so
        /// a record handed over by an older binary answers too.
        public var isDatagram: Bool { ListeningSocket.option(SO_TYPE, of: fd) == Int32(SOCK_DGRAM.rawValue) }
        /// The socket was bound with SO_REUSEPORT (`ReusePort=yes`): sockets of Jester's own may join its group.
        public var reusesPort: Bool { ListeningSocket.option(SO_REUSEPORT, of: fd) == 1 }
    }

    /// Takes the sockets systemd passed (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES) and clears those variables, so
    /// that workers, which get their sockets from the master, never try to take them too.
    public static func takeActivatedSockets() -> [ActivatedSocket] {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = sd_listen_fds_with_names(1, &names)
        guard count > 0 else { return [] }
        defer {
            if let names {
                for index in 0..<Int(count) { free(names[index]) }
                free(names)
            }
        }
        return (0..<count).map { index in
            let fd = SD_LISTEN_FDS_START + index
            let name = names?[Int(index)].map { String(cString: $0) } ?? ""
            return ActivatedSocket(fd: fd, name: name, address: localAddress(of: fd) ?? "")
        }
    }

    private static func localAddress(of fd: Int32) -> String? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard result == 0 else { return nil }
        var host = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address in
                    var ip = address.pointee.sin_addr
                    inet_ntop(AF_INET, &ip, &host, socklen_t(host.count))
                    return "\(String(cString: host)):\(UInt16(bigEndian: address.pointee.sin_port))"
                }
            }
        case AF_INET6:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { address in
                    var ip = address.pointee.sin6_addr
                    inet_ntop(AF_INET6, &ip, &host, socklen_t(host.count))
                    return "[\(String(cString: host))]:\(UInt16(bigEndian: address.pointee.sin6_port))"
                }
            }
        default:
            return nil
        }
    }

    /// The version of libsystemd's sd-daemon protocol support, proving the library is linked: sd_booted answers
    /// whether the system runs systemd (>0), not (0), or failed (<0).
    public static var bootedWithSystemd: Bool { sd_booted() > 0 }
}
