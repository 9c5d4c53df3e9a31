// SPDX-License-Identifier: Apache-2.0
import CJesterPosix
import Glibc
@testable import JesterSystem
import Testing

/// systemd's protocols as Jester speaks them without libsystemd: the environment read as sd_listen_fds(3) and
/// sd_watchdog_enabled(3) read it, and real datagrams to a socket playing systemd's notify socket. The live tests
/// (test_lifecycle, test_package) run the same code under systemd-socket-activate, a NOTIFY_SOCKET listener and
/// systemd itself.

@Test func activatedSocketsAreTakenOnlyWhenLISTEN_PIDNamesThisProcess() {
    #expect(Systemd.activatedDescriptors(pid: "41", count: "2", names: nil, ourPID: 42).isEmpty)
    #expect(Systemd.activatedDescriptors(pid: nil, count: "2", names: nil, ourPID: 42).isEmpty)
    #expect(Systemd.activatedDescriptors(pid: "42", count: nil, names: nil, ourPID: 42).isEmpty)
    #expect(Systemd.activatedDescriptors(pid: "42", count: "0", names: nil, ourPID: 42).isEmpty)
    #expect(Systemd.activatedDescriptors(pid: "42", count: "-1", names: nil, ourPID: 42).isEmpty)
    #expect(Systemd.activatedDescriptors(pid: "42", count: "two", names: nil, ourPID: 42).isEmpty)
}

@Test func activatedSocketsStartAtThreeAndTakeTheirNamesInOrder() {
    let passed = Systemd.activatedDescriptors(pid: "42", count: "3", names: "public:secure:quic", ourPID: 42)
    #expect(passed.map(\.fd) == [3, 4, 5])
    #expect(passed.map(\.name) == ["public", "secure", "quic"])
    // An empty name is a name (FileDescriptorName= unset on one of several sockets keeps its place).
    #expect(Systemd.activatedDescriptors(pid: "42", count: "3", names: "a::c", ourPID: 42).map(\.name) == ["a", "", "c"])
    // Without LISTEN_FDNAMES every socket is "unknown", as libsystemd names them.
    #expect(Systemd.activatedDescriptors(pid: "42", count: "2", names: nil, ourPID: 42).map(\.name) == ["unknown", "unknown"])
    // Names that do not match the count are refused, as libsystemd refuses them.
    #expect(Systemd.activatedDescriptors(pid: "42", count: "2", names: "only-one", ourPID: 42).isEmpty)
}

@Test func theWatchdogIntervalIsReadOnlyForThisProcess() {
    #expect(Systemd.watchdogInterval(microseconds: "400000", pid: nil, ourPID: 42) == .milliseconds(400))
    #expect(Systemd.watchdogInterval(microseconds: "400000", pid: "42", ourPID: 42) == .milliseconds(400))
    #expect(Systemd.watchdogInterval(microseconds: "400000", pid: "41", ourPID: 42) == nil)
    #expect(Systemd.watchdogInterval(microseconds: "0", pid: nil, ourPID: 42) == nil)
    #expect(Systemd.watchdogInterval(microseconds: "soon", pid: nil, ourPID: 42) == nil)
    #expect(Systemd.watchdogInterval(microseconds: nil, pid: nil, ourPID: 42) == nil)
}

@Test func notifySocketAddressesArePathsOrAbstractNames() {
    #expect(Systemd.NotifyAddress("/run/systemd/notify") == .path("/run/systemd/notify"))
    #expect(Systemd.NotifyAddress("@/org/freedesktop/systemd1/notify/42") == .abstract("/org/freedesktop/systemd1/notify/42"))
    #expect(Systemd.NotifyAddress("@") == nil)
    #expect(Systemd.NotifyAddress("vsock:2:9999") == nil)
    #expect(Systemd.NotifyAddress("relative/path") == nil)
    #expect(Systemd.NotifyAddress("/" + String(repeating: "x", count: 200))?.socketAddressBytes == nil)
    #expect(Systemd.NotifyAddress("/run/n")?.socketAddressBytes == Array("/run/n".utf8) + [0])
    #expect(Systemd.NotifyAddress("@n")?.socketAddressBytes == [0] + Array("n".utf8))
}

/// A datagram socket bound where `address` says, playing systemd's side.
private func listen(at address: Systemd.NotifyAddress) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    try #require(fd >= 0)
    try #require(address.withSocketAddress({ bind(fd, $0, $1) }) == 0)
    return fd
}

private func receive(_ fd: Int32) -> (message: String, descriptor: Int32) {
    var buffer = [UInt8](repeating: 0, count: 512)
    var descriptor: Int32 = -1
    let count = buffer.withUnsafeMutableBytes { cjester_receive_with_fd(fd, $0.baseAddress, $0.count, &descriptor) }
    return (String(decoding: buffer.prefix(max(count, 0)), as: UTF8.self), descriptor)
}

@Test func notificationsReachASocketAtAPath() throws {
    let path = "/tmp/jester-notify-test-\(getpid())"
    unlink(path)
    defer { unlink(path) }
    let systemd = try listen(at: .path(path))
    defer { close(systemd) }
    #expect(Systemd.send("READY=1\nSTATUS=serving", descriptor: -1, to: .path(path)))
    let received = receive(systemd)
    #expect(received.message == "READY=1\nSTATUS=serving")
    #expect(received.descriptor == -1)
}

@Test func storedDescriptorsTravelWithTheirNameToAnAbstractSocket() throws {
    let address = Systemd.NotifyAddress.abstract("jester-notify-test-\(getpid())")
    let systemd = try listen(at: address)
    defer { close(systemd) }
    var ends: [Int32] = [-1, -1]
    try #require(pipe(&ends) == 0)
    defer { close(ends[0]); close(ends[1]) }
    #expect(Systemd.send("FDSTORE=1\nFDNAME=public-0", descriptor: ends[1], to: address))
    let received = receive(systemd)
    #expect(received.message == "FDSTORE=1\nFDNAME=public-0")
    try #require(received.descriptor >= 0)
    defer { close(received.descriptor) }
    // The stored copy is the same pipe: what is written through it comes out of the read end.
    #expect(write(received.descriptor, "x", 1) == 1)
    var byte: UInt8 = 0
    #expect(read(ends[0], &byte, 1) == 1 && byte == UInt8(ascii: "x"))
}

@Test func nothingIsSentWhereNoOneListens() {
    #expect(!Systemd.send("READY=1", descriptor: -1, to: .path("/tmp/jester-no-such-notify-socket-\(getpid())")))
}

@Test func passedSocketsAreAdoptedCloseOnExecOnlyWhenAllAreOpen() throws {
    let listener = try ListeningSocket.bind(host: "127.0.0.1", port: 0, backlog: 4)
    defer { close(listener) }
    let adopted = Systemd.adopt([(fd: listener, name: "public")])
    #expect(adopted.map(\.name) == ["public"])
    #expect(adopted.first?.address.hasPrefix("127.0.0.1:") == true)
    #expect(fcntl(listener, F_GETFD) & FD_CLOEXEC != 0)
    // A number that is not open: the variables were not for us, so nothing is taken, not even the open one.
    var unused: Int32 = 900
    while fcntl(unused, F_GETFD) != -1 { unused += 1 }
    #expect(Systemd.adopt([(fd: listener, name: "public"), (fd: unused, name: "ghost")]).isEmpty)
}
