// SPDX-License-Identifier: Apache-2.0
import CJesterPosix
import Glibc

/// A blocking Unix stream socket client, for jesterctl: connect, write, read with a deadline.
public final class UnixSocketClient {
    private let fd: Int32

    /// Connects to the socket at `path`.
    public init(path: String) throws(SystemError) {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.utf8.count < capacity else {
            close(fd)
            throw SystemError("connect", path, errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: path.utf8)
            buffer[path.utf8.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            let error = SystemError("connect", path)
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    public func write(_ bytes: [UInt8]) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if written < 0 {
                if errno == EINTR { continue }
                throw SystemError("send")
            }
            offset += written
        }
    }

    /// Reads what is available, waiting up to `timeoutMilliseconds` (-1: forever). Empty means the peer closed.
    public func read(timeoutMilliseconds: Int32) throws(SystemError) -> [UInt8] {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            let ready = poll(&descriptor, 1, timeoutMilliseconds)
            if ready < 0, errno == EINTR { continue }
            if ready < 0 { throw SystemError("poll") }
            if ready == 0 { throw SystemError("read", "control socket", errno: ETIMEDOUT) }
            break
        }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
        guard count >= 0 else { throw SystemError("recv") }
        return Array(buffer[0..<count])
    }
}

/// The credentials of a Unix socket's peer, as the kernel reports them (SO_PEERCRED): they cannot be forged.
public struct PeerCredentials: Sendable, Equatable {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    /// The credentials of the peer of the connected Unix socket `fd`.
    public static func of(socket fd: Int32) -> PeerCredentials? {
        var pid: pid_t = 0
        var uid: uid_t = 0
        var gid: gid_t = 0
        guard cjester_peer_credentials(fd, &pid, &uid, &gid) == 0 else { return nil }
        return PeerCredentials(pid: pid, uid: uid, gid: gid)
    }

    /// The supplementary groups of the peer process, from /proc (the kernel's view, not the group database).
    public func supplementaryGroups() -> [UInt32] {
        guard let status = FileContents.read("/proc/\(pid)/status") else { return [] }
        for line in status.split(separator: "\n") where line.hasPrefix("Groups:") {
            return line.dropFirst("Groups:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap {
                UInt32($0)
            }
        }
        return []
    }
}
