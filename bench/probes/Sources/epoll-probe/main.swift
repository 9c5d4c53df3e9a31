// SPDX-License-Identifier: Apache-2.0
// The floor without SwiftNIO: the same two jobs as nio-probe on a bare, level-triggered epoll loop in Swift.
//
//   epoll-probe pass LISTEN UPSTREAM     relay bytes between each client and its own upstream connection
//   epoll-probe splice LISTEN UPSTREAM   the same relay without copying: splice(2) through a pipe per direction
//   epoll-probe respond LISTEN           answer each request head with a fixed response (no upstream)
//
// This is roughly what a proxy's own socket layer would cost: one shared 64 KiB read buffer, a small slot per
// file descriptor, `read`/`write` straight from the loop, and epoll_ctl only when a side must pause or resume.
// Bytes are kept per connection only when a write comes up short.

import CProbeLibc
import Glibc

let pass = CommandLine.arguments.count == 4 && ["pass", "splice"].contains(CommandLine.arguments[1])
let splices = pass && CommandLine.arguments[1] == "splice"
guard pass || (CommandLine.arguments.count == 3 && CommandLine.arguments[1] == "respond") else {
    print("usage: epoll-probe pass|splice LISTEN UPSTREAM | epoll-probe respond LISTEN")
    exit(2)
}

func ipv4(_ text: String) -> sockaddr_in {
    let colon = text.lastIndex(of: ":")!
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(text[text.index(after: colon)...])!).bigEndian
    inet_pton(AF_INET, String(text[..<colon]), &address.sin_addr)
    return address
}

func check(_ result: Int32, _ what: String) {
    if result < 0 { perror(what); exit(1) }
}

/// What the loop knows about one open file descriptor.
struct Slot {
    /// Bumped each time the descriptor number is reused, so a stale event from the same batch is ignored.
    var generation: UInt32 = 0
    var open = false
    /// The other side of a relayed pair, or -1.
    var partner: Int32 = -1
    var connecting = false
    var closeAfterWrite = false
    /// Bytes still to be written to this descriptor (a short write); nil almost always.
    var unwritten: [UInt8]? = nil
    /// Splice mode: the pipe holding bytes on their way to this descriptor, and how many it holds.
    var pipeRead: Int32 = -1
    var pipeWrite: Int32 = -1
    var piped = 0
}

let EPOLL_IN = EPOLLIN.rawValue, EPOLL_OUT = EPOLLOUT.rawValue
let epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
check(epoll, "epoll_create1")
var slots = [Slot](repeating: Slot(), count: 1 << 17)
let bufferSize = 65536
let buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 16)

func control(_ operation: Int32, _ fd: Int32, _ events: UInt32) {
    var event = epoll_event()
    event.events = events
    event.data.u64 = UInt64(UInt32(fd)) | UInt64(slots[Int(fd)].generation) << 32
    epoll_ctl(epoll, operation, fd, &event)
}

func opened(_ fd: Int32, events: UInt32) {
    var one: Int32 = 1
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    slots[Int(fd)].generation &+= 1
    slots[Int(fd)].open = true
    control(EPOLL_CTL_ADD, fd, events)
}

func closeOne(_ fd: Int32) {
    guard fd >= 0, slots[Int(fd)].open else { return }
    let generation = slots[Int(fd)].generation
    if slots[Int(fd)].pipeRead >= 0 {
        close(slots[Int(fd)].pipeRead)
        close(slots[Int(fd)].pipeWrite)
    }
    slots[Int(fd)] = Slot(generation: generation)
    close(fd)  // also leaves the epoll set
}

func closePair(_ fd: Int32) {
    let partner = slots[Int(fd)].partner
    closeOne(fd)
    closeOne(partner)
}

/// Writes `count` bytes at `bytes` to `fd`; keeps what does not fit and waits for EPOLLOUT. True if all went out.
@discardableResult
func send(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Bool {
    var sent = 0
    while sent < count {
        let n = write(fd, bytes + sent, count - sent)
        if n < 0 {
            if errno == EINTR { continue }
            if errno == EAGAIN { break }
            closePair(fd)
            return false
        }
        sent += n
    }
    if sent == count { return true }
    slots[Int(fd)].unwritten = Array(UnsafeRawBufferPointer(start: bytes + sent, count: count - sent))
    control(EPOLL_CTL_MOD, fd, EPOLL_IN | EPOLL_OUT)
    return false
}

// MARK: respond

let body = "Hello from the benchmark upstream, a small fixed body of about one hundred bytes long.....\n"
let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\n"
let keepAliveResponse = Array((head + "\r\n" + body).utf8)
let closeResponse = Array((head + "Connection: close\r\n\r\n" + body).utf8)

/// Where `needle` ends in `bytes[from..<to]`, or nil (memmem: the stdlib's generic `firstRange(of:)` costs
/// tens of microseconds per call here).
func find(_ needle: StaticString, in bytes: UnsafeRawPointer, from: Int, to: Int) -> Int? {
    guard let found = memmem(bytes + from, to - from, needle.utf8Start, needle.utf8CodeUnitCount) else { return nil }
    return bytes.distance(to: found) + needle.utf8CodeUnitCount
}

/// Answers the request heads in one read. A head split across reads is not reassembled: the probe serves wrk's
/// small GET requests, which arrive whole.
func respond(_ fd: Int32, _ count: Int) {
    var start = 0
    var out: [UInt8] = []
    while let end = find("\r\n\r\n", in: buffer, from: start, to: count) {
        let closing = find("Connection: close", in: buffer, from: start, to: end) != nil
        if out.isEmpty && end == count {
            // The usual case, one request per read: write the constant straight away.
            let done = (closing ? closeResponse : keepAliveResponse).withUnsafeBytes { send(fd, $0.baseAddress!, $0.count) }
            if closing { if done { closeOne(fd) } else { slots[Int(fd)].closeAfterWrite = true } }
            return
        }
        out += closing ? closeResponse : keepAliveResponse
        start = end
        if closing { slots[Int(fd)].closeAfterWrite = true; break }
    }
    guard !out.isEmpty else { return }
    let done = out.withUnsafeBytes { send(fd, $0.baseAddress!, $0.count) }
    if done && slots[Int(fd)].closeAfterWrite { closeOne(fd) }
}

// MARK: pass

var upstreamAddress = pass ? ipv4(CommandLine.arguments[3]) : sockaddr_in()

/// A client's first bytes: connect its upstream and hold the bytes there until the connection is up.
func connectUpstream(for client: Int32, _ count: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { closeOne(client); return }
    let result = withUnsafePointer(to: &upstreamAddress) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard result == 0 || errno == EINPROGRESS else { close(fd); closeOne(client); return }
    opened(fd, events: EPOLL_IN | EPOLL_OUT)
    slots[Int(fd)].connecting = true
    slots[Int(fd)].partner = client
    slots[Int(fd)].unwritten = Array(UnsafeRawBufferPointer(start: buffer, count: count))
    slots[Int(client)].partner = fd
    control(EPOLL_CTL_MOD, client, 0)  // read no more until the upstream takes these bytes
}

// MARK: splice

/// Moves what the pipe toward `fd` holds into `fd`; false when `fd` is full (it then waits for EPOLLOUT) or failed.
func drainPipe(to fd: Int32) -> Bool {
    while slots[Int(fd)].piped > 0 {
        let n = probe_splice(slots[Int(fd)].pipeRead, fd, slots[Int(fd)].piped)
        if n < 0 {
            if errno == EAGAIN {
                control(EPOLL_CTL_MOD, fd, EPOLL_IN | EPOLL_OUT)
                return false
            }
            closePair(fd)
            return false
        }
        slots[Int(fd)].piped -= n
    }
    return true
}

/// Splice mode's readable: socket to the partner's pipe, then the pipe to the partner, no copy through here.
func spliceReadable(_ fd: Int32) {
    let partner = slots[Int(fd)].partner
    if slots[Int(partner)].pipeRead < 0 {
        var ends: [Int32] = [-1, -1]
        guard probe_pipe(&ends) == 0 else { closePair(fd); return }
        slots[Int(partner)].pipeRead = ends[0]
        slots[Int(partner)].pipeWrite = ends[1]
    }
    let n = probe_splice(fd, slots[Int(partner)].pipeWrite, bufferSize)
    if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) {
        closePair(fd)
        return
    }
    guard n > 0 else { return }
    slots[Int(partner)].piped += n
    if !drainPipe(to: partner), slots[Int(fd)].open {
        control(EPOLL_CTL_MOD, fd, 0)  // back-pressure: the partner is full
    }
}

func relay(from fd: Int32, _ count: Int) {
    let partner = slots[Int(fd)].partner
    if partner < 0 { connectUpstream(for: fd, count); return }
    if !send(partner, buffer, count), slots[Int(fd)].open {
        control(EPOLL_CTL_MOD, fd, 0)  // back-pressure: the partner is full
    }
}

// MARK: loop

func readable(_ fd: Int32) {
    if splices, slots[Int(fd)].partner >= 0, slots[Int(slots[Int(fd)].partner)].unwritten == nil {
        spliceReadable(fd)
        return
    }
    let n = read(fd, buffer, bufferSize)
    if n > 0 {
        if pass { relay(from: fd, n) } else { respond(fd, n) }
    } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
        closePair(fd)
    }
}

func writable(_ fd: Int32) {
    if slots[Int(fd)].connecting {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        if error != 0 { closePair(fd); return }
        slots[Int(fd)].connecting = false
    }
    if let bytes = slots[Int(fd)].unwritten {
        slots[Int(fd)].unwritten = nil
        guard bytes.withUnsafeBytes({ send(fd, $0.baseAddress!, $0.count) }) else { return }
    }
    guard drainPipe(to: fd) else { return }
    if slots[Int(fd)].closeAfterWrite { closeOne(fd); return }
    control(EPOLL_CTL_MOD, fd, EPOLL_IN)
    let partner = slots[Int(fd)].partner
    if partner >= 0 { control(EPOLL_CTL_MOD, partner, EPOLL_IN) }
}

signal(SIGPIPE, SIG_IGN)
let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
check(listener, "socket")
var one: Int32 = 1
setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
var listenAddress = ipv4(CommandLine.arguments[2])
check(withUnsafePointer(to: &listenAddress) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
}, "bind")
check(listen(listener, 4096), "listen")
slots[Int(listener)].open = true
control(EPOLL_CTL_ADD, listener, EPOLL_IN)

var events = [epoll_event](repeating: epoll_event(), count: 256)
while true {
    let ready = epoll_wait(epoll, &events, Int32(events.count), -1)
    if ready < 0 { if errno == EINTR { continue }; perror("epoll_wait"); exit(1) }
    for index in 0..<Int(ready) {
        let fd = Int32(truncatingIfNeeded: events[index].data.u64 & 0xffff_ffff)
        let generation = UInt32(truncatingIfNeeded: events[index].data.u64 >> 32)
        let flags = events[index].events
        if fd == listener {
            while true {
                let client = probe_accept(listener)
                if client < 0 { break }
                opened(client, events: EPOLL_IN)
            }
            continue
        }
        guard slots[Int(fd)].open, slots[Int(fd)].generation == generation else { continue }
        if flags & EPOLL_OUT != 0 { writable(fd) }
        guard slots[Int(fd)].open, slots[Int(fd)].generation == generation else { continue }
        if flags & (EPOLL_IN | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0, !slots[Int(fd)].connecting { readable(fd) }
    }
}
