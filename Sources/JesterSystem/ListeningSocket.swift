// SPDX-License-Identifier: Apache-2.0
import Glibc

/// Binds listening TCP sockets in the master.
///
/// The master binds one socket per worker slot per listener, each with SO_REUSEPORT, so the kernel spreads new
/// connections across workers with no shared accept lock. The master keeps every fd: a worker that dies does not
/// take its socket, and the connections queued on it, with it.
public enum ListeningSocket {
    /// Creates, binds and listens on `host:port`. The fd is close-on-exec; spawning hands it to a worker explicitly.
    public static func bind(host: String, port: Int, backlog: Int, reusePort: Bool = true) throws(SystemError) -> Int32 {
        let fd = try bound(host: host, port: port, type: SOCK_STREAM, reusePort: reusePort)
        guard listen(fd, Int32(backlog)) == 0 else {
            let error = SystemError("listen", host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)")
            close(fd)
            throw error
        }
        return fd
    }

    /// An integer socket option at SOL_SOCKET (nil if it cannot be read).
    public static func option(_ name: Int32, of fd: Int32) -> Int32? {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd, SOL_SOCKET, name, &value, &length) == 0 ? value : nil
    }

    /// Creates and binds a UDP socket on `host:port` with SO_REUSEPORT, for a listener's HTTP/3 (QUIC): one per
    /// worker slot, like the TCP sockets, so the kernel spreads clients over workers by their address. The
    /// receive buffer is raised to 4 MiB, since a burst of datagrams queues there.
    public static func bindDatagram(host: String, port: Int) throws(SystemError) -> Int32 {
        let fd = try bound(host: host, port: port, type: SOCK_DGRAM, reusePort: true)
        var size: Int32 = 4 << 20
        // SO_RCVBUFFORCE passes net.core.rmem_max (a root master may); SO_RCVBUF is capped by it.
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        return fd
    }

    private static func bound(host: String, port: Int, type: __socket_type, reusePort: Bool) throws(SystemError) -> Int32 {
        let isIPv6 = host.contains(":")
        let fd = socket(isIPv6 ? AF_INET6 : AF_INET, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if reusePort { setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size)) }
        let subject = isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)"
        var result: Int32
        if isIPv6 {
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = in_port_t(UInt16(port).bigEndian)
            guard inet_pton(AF_INET6, host, &address.sin6_addr) == 1 else {
                close(fd)
                throw SystemError("inet_pton", host, errno: EINVAL)
            }
            result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
                close(fd)
                throw SystemError("inet_pton", host, errno: EINVAL)
            }
            result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        guard result == 0 else {
            let error = SystemError("bind", subject)
            close(fd)
            throw error
        }
        return fd
    }

    /// Creates a listening Unix stream socket at `path` (replacing a stale socket file) and returns its fd,
    /// close-on-exec. The master binds its control socket this way rather than through NIO so that it holds the
    /// fd itself and can hand it across a binary upgrade: jesterctl connections made meanwhile wait in the queue.
    ///
    /// With `group`, the socket file is created with that group (the effective group while binding), so the
    /// master needs CAP_SETGID, which it has for its workers anyway, and not CAP_CHOWN.
    public static func bindUnix(path: String, group: UInt32? = nil, backlog: Int32 = 64) throws(SystemError) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw SystemError("bind", path, errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket") }
        unlink(path)
        let previousGroup = getegid()
        if let group, group != previousGroup, setegid(group) != 0 {
            let error = SystemError("setegid", "group \(group) for \(path)")
            close(fd)
            throw error
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if let group, group != previousGroup { _ = setegid(previousGroup) }
        guard result == 0, listen(fd, backlog) == 0 else {
            let error = SystemError(result == 0 ? "listen" : "bind", path)
            close(fd)
            throw error
        }
        return fd
    }

    /// Whether the kernel migrates queued connections when a SO_REUSEPORT socket closes
    /// (`net.ipv4.tcp_migrate_req`); nil when the kernel has no such setting.
    public static func kernelMigratesRequests() -> Bool? {
        guard let text = FileContents.read("/proc/sys/net/ipv4/tcp_migrate_req") else { return nil }
        return text.hasPrefix("1")
    }
}

/// Reads small files under /proc and /sys without Foundation.
public enum FileContents {
    public static func read(_ path: String, limit: Int = 64 * 1024) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: limit)
        var total = 0
        while total < limit {
            let count = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + total, limit - total) }
            if count <= 0 { break }
            total += count
        }
        return String(decoding: bytes[0..<total], as: UTF8.self)
    }
}
