// SPDX-License-Identifier: Apache-2.0
import CJesterPosix
import Glibc

/// A socketpair that carries file descriptors from the master to one worker (SCM_RIGHTS), each with a sequence
/// number: how a running worker gets a freshly opened access-log file on reopen, since workers never open paths.
///
/// Separate from the worker's control socketpair because SwiftNIO owns that one on both ends: its reads would
/// drop the descriptors and its queued writes could interleave with ours. SOCK_SEQPACKET keeps each message
/// whole, so one receive is one descriptor with its number.
public enum DescriptorChannel {
    /// A new pair (close-on-exec): the master keeps the first end (non-blocking, so a stuck worker never blocks
    /// it), the worker gets the second.
    public static func makePair() throws(SystemError) -> (master: Int32, worker: Int32) {
        var fds: [Int32] = [-1, -1]
        let type = Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        guard socketpair(AF_UNIX, type, 0, &fds) == 0 else { throw SystemError("socketpair(SOCK_SEQPACKET)") }
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        return (fds[0], fds[1])
    }

    /// Sends a copy of `fd` with `sequence` (the caller keeps its own `fd`).
    public static func send(_ fd: Int32, sequence: UInt64, over socket: Int32) throws(SystemError) {
        var bytes = withUnsafeBytes(of: sequence.bigEndian) { Array($0) }
        while true {
            let sent = cjester_send_with_fd(socket, &bytes, bytes.count, fd)
            if sent == bytes.count { return }
            if sent < 0, errno == EINTR { continue }
            throw SystemError("sendmsg(SCM_RIGHTS)", errno: sent < 0 ? errno : EMSGSIZE)
        }
    }

    /// Blocks until a descriptor arrives and returns it (close-on-exec) with its sequence number; nil once the
    /// master's end is closed (the master exited, or a binary upgrade's exec closed it).
    public static func receive(from socket: Int32) throws(SystemError) -> (sequence: UInt64, fd: Int32)? {
        var bytes = [UInt8](repeating: 0, count: 8)
        while true {
            var fd: Int32 = -1
            let count = cjester_receive_with_fd(socket, &bytes, bytes.count, &fd)
            if count < 0, errno == EINTR { continue }
            if count < 0 { throw SystemError("recvmsg(SCM_RIGHTS)") }
            if count == 0 { return nil }
            // A message without a descriptor or with a short number is not ours to act on.
            guard count == 8, fd >= 0 else {
                if fd >= 0 { close(fd) }
                continue
            }
            let sequence = bytes.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            return (sequence, fd)
        }
    }
}
