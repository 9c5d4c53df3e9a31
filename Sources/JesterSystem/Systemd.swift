// SPDX-License-Identifier: Apache-2.0
import CJesterPosix
import Glibc

/// Talks to systemd when Jester runs under it (Type=notify); does nothing otherwise.
///
/// These are systemd's stable protocols (sd_notify(3), sd_listen_fds(3), sd_watchdog_enabled(3)), spoken here
/// without libsystemd, as systemd's own manual shows how to: a datagram to `$NOTIFY_SOCKET`, a few environment
/// variables. The library, with the libgcrypt, liblzma, liblz4, libcap and libgpg-error it loads, cost every idle
/// worker 0.1-0.2 MiB of PSS (bench/PERFORMANCE.md, Footprint) for messages only the master sends, and put six
/// more libraries in the address space of a process that parses hostile input.
public enum Systemd {
    /// Whether systemd asked for notifications (NOTIFY_SOCKET is set).
    public static var isNotifying: Bool { environment("NOTIFY_SOCKET") != nil }

    /// Why `$NOTIFY_SOCKET` cannot be written to, or nil when it is unset or usable: said in the log, since a
    /// Type=notify unit otherwise just times out.
    public static var notifySocketProblem: String? {
        guard let value = environment("NOTIFY_SOCKET") else { return nil }
        guard let address = NotifyAddress(value) else {
            return "NOTIFY_SOCKET=\(value) is neither a path nor an abstract socket name (@name)"
        }
        guard address.socketAddressBytes != nil else { return "NOTIFY_SOCKET=\(value) is too long for a socket address" }
        return "NOTIFY_SOCKET=\(value) does not accept datagrams (\(String(cString: strerror(errno))))"
    }

    /// Sends a state string such as `READY=1`, `RELOADING=1`, `STOPPING=1` or `STATUS=...`; false when there is
    /// no one to tell or the datagram could not be sent.
    @discardableResult
    public static func notify(_ state: String) -> Bool {
        send(state, descriptor: -1)
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
        watchdogInterval(microseconds: environment("WATCHDOG_USEC"), pid: environment("WATCHDOG_PID"), ourPID: getpid())
    }

    /// Hands a copy of `fd` to systemd's file descriptor store under `name` (`FileDescriptorStoreMax=` in the
    /// unit). systemd passes stored descriptors back as LISTEN_FDS when it starts the service again after a crash
    /// (and, with `FileDescriptorStorePreserve=yes` on systemd ≥ 254, after `systemctl restart`), so the listening
    /// sockets and the connections queued on them outlive the master.
    @discardableResult
    public static func storeDescriptor(_ fd: Int32, name: String) -> Bool {
        send("FDSTORE=1\nFDNAME=\(name)", descriptor: fd)
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
        guard let value = environment("FDSTORE") else { return true }
        return (Int(value) ?? 0) > 0
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
    /// that workers, which get their sockets from the master, never try to take them too. The sockets become
    /// close-on-exec, as sd_listen_fds(3) makes them: a worker gets only the ones the master passes on.
    public static func takeActivatedSockets() -> [ActivatedSocket] {
        let passed = activatedDescriptors(
            pid: environment("LISTEN_PID"), count: environment("LISTEN_FDS"), names: environment("LISTEN_FDNAMES"),
            ourPID: getpid())
        for variable in ["LISTEN_PID", "LISTEN_PIDFDID", "LISTEN_FDS", "LISTEN_FDNAMES"] { unsetenv(variable) }
        return adopt(passed)
    }

    /// The passed descriptors made close-on-exec and described. A number that is not open means the variables
    /// were not meant for this process (or are corrupt): none is taken, as libsystemd takes none, rather than
    /// adopting numbers a later socket of Jester's own may reuse.
    static func adopt(_ passed: [(fd: Int32, name: String)]) -> [ActivatedSocket] {
        guard passed.allSatisfy({ fcntl($0.fd, F_SETFD, FD_CLOEXEC) == 0 }) else { return [] }
        return passed.map { descriptor in
            ActivatedSocket(fd: descriptor.fd, name: descriptor.name, address: localAddress(of: descriptor.fd) ?? "")
        }
    }

    // MARK: - The protocols, as pure functions of the environment

    /// The first descriptor systemd passes (SD_LISTEN_FDS_START): after standard input, output and error.
    static let firstPassedDescriptor: Int32 = 3

    /// The descriptors and names LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES describe: none unless LISTEN_PID names
    /// this process (the variables may be inherited from a parent they were meant for). Without LISTEN_FDNAMES
    /// every name is "unknown"; with a name count that does not match, nothing is taken, as libsystemd refuses them.
    static func activatedDescriptors(pid: String?, count: String?, names: String?, ourPID: pid_t)
        -> [(fd: Int32, name: String)]
    {
        guard let pid, pid_t(pid) == ourPID, let count, let number = Int32(count), number > 0,
            number <= Int32.max - firstPassedDescriptor
        else { return [] }
        let labels: [String]
        if let names {
            labels = names.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard labels.count == Int(number) else { return [] }
        } else {
            labels = Array(repeating: "unknown", count: Int(number))
        }
        return labels.enumerated().map { (fd: firstPassedDescriptor + Int32($0.offset), name: $0.element) }
    }

    /// WATCHDOG_USEC as a duration, unless WATCHDOG_PID names another process (the variable was inherited).
    static func watchdogInterval(microseconds: String?, pid: String?, ourPID: pid_t) -> Duration? {
        guard let microseconds, let value = UInt64(microseconds), value > 0, value <= UInt64(Int64.max) else {
            return nil
        }
        if let pid, pid_t(pid) != ourPID { return nil }
        return .microseconds(Int64(value))
    }

    /// Where `$NOTIFY_SOCKET` points: a path, or a name in Linux's abstract namespace ("@name"). systemd may also
    /// give an AF_VSOCK address to a service in a virtual machine; Jester runs on the host and does not speak it.
    enum NotifyAddress: Equatable {
        case path(String)
        case abstract(String)

        init?(_ value: String) {
            if value.hasPrefix("/") {
                self = .path(value)
            } else if value.hasPrefix("@"), value.count > 1 {
                self = .abstract(String(value.dropFirst()))
            } else {
                return nil
            }
        }

        /// sun_path's bytes and the address length to pass: a path ends in a NUL, an abstract name starts with
        /// one and has no end marker (its length is the address length). Nil when it does not fit.
        var socketAddressBytes: [UInt8]? {
            let bytes: [UInt8]
            switch self {
            case .path(let path): bytes = Array(path.utf8) + [0]
            case .abstract(let name): bytes = [0] + Array(name.utf8)
            }
            return bytes.count <= MemoryLayout.size(ofValue: sockaddr_un().sun_path) ? bytes : nil
        }

        /// Calls `body` with the address as a `sockaddr` and its length (connect(2), bind(2)); nil when it does
        /// not fit.
        func withSocketAddress<Result>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> Result) -> Result? {
            guard let path = socketAddressBytes else { return nil }
            var socketAddress = sockaddr_un()
            socketAddress.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &socketAddress.sun_path) { $0.copyBytes(from: path) }
            let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + path.count)
            return withUnsafePointer(to: &socketAddress) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
            }
        }
    }

    /// One datagram to `$NOTIFY_SOCKET`, with `descriptor` attached when it is not -1.
    private static func send(_ state: String, descriptor: Int32) -> Bool {
        guard let value = environment("NOTIFY_SOCKET"), let address = NotifyAddress(value) else { return false }
        return send(state, descriptor: descriptor, to: address)
    }

    /// One datagram to `address`. systemd learns who sent it from the socket's credentials (SO_PASSCRED on its
    /// side), so nothing else is needed.
    static func send(_ state: String, descriptor: Int32, to address: NotifyAddress) -> Bool {
        guard address.socketAddressBytes != nil else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard address.withSocketAddress({ connect(fd, $0, $1) }) == 0 else { return false }
        let message = Array(state.utf8)
        let sent = message.withUnsafeBytes { cjester_send_with_fd(fd, $0.baseAddress, $0.count, descriptor) }
        return sent == message.count
    }

    private static func environment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
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
}
