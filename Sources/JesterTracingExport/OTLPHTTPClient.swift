// SPDX-License-Identifier: Apache-2.0
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import JesterTracing

/// Posts one export body to the collector over a plain blocking socket, every step bounded by one deadline.
///
/// Blocking is right here and only here: it runs on the exporter's own thread, never on an event loop, and a
/// socket with `poll` deadlines needs no event loop group of its own. One connection per export, closed after
/// the response head (`Connection: close`): exports are a few per second at most, so keep-alive would save
/// little and add the stale-connection cases.
struct OTLPHTTPClient: Sendable {
    let endpoint: OTLPEndpoint
    /// Sent as `User-Agent` (OTLP asks exporters to name themselves).
    let userAgent: String

    /// Sends `body` and returns the collector's answer, or `.unreachable` when it cannot be had before
    /// `deadline`.
    func post(_ body: [UInt8], deadline: ContinuousClock.Instant) -> OTLPRetryPolicy.Outcome {
        guard let fd = connect(deadline: deadline) else { return .unreachable }
        defer { close(fd) }
        let head =
            "POST \(endpoint.path) HTTP/1.1\r\nHost: \(endpoint.hostField)\r\nUser-Agent: \(userAgent)\r\n"
            + "Content-Type: application/x-protobuf\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        guard send(Array(head.utf8) + body, on: fd, deadline: deadline) else { return .unreachable }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while response.count < OTLPResponseHead.maxLength {
            if let head = OTLPResponseHead(parsing: response) {
                return .status(head.status, retryAfter: head.retryAfter)
            }
            guard wait(fd, for: Int16(POLLIN), deadline: deadline) else { return .unreachable }
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0, errno == EINTR || errno == EAGAIN { continue }
            guard count > 0 else { break }
            response += chunk[0..<count]
        }
        if let head = OTLPResponseHead(parsing: response) { return .status(head.status, retryAfter: head.retryAfter) }
        return .unreachable
    }

    /// A non-blocking socket connected to the endpoint's first address that answers, or nil.
    private func connect(deadline: ContinuousClock.Instant) -> Int32? {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var results: UnsafeMutablePointer<addrinfo>?
        // Name resolution blocks without a deadline of its own; the exporter's thread is the only one waiting.
        guard getaddrinfo(endpoint.host, String(endpoint.port), &hints, &results) == 0, let first = results else {
            return nil
        }
        defer { freeaddrinfo(first) }
        var next: UnsafeMutablePointer<addrinfo>? = first
        while let info = next {
            next = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
            guard fd >= 0 else { continue }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            let result = Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen)
            if result == 0 { return fd }
            if errno == EINPROGRESS, wait(fd, for: Int16(POLLOUT), deadline: deadline) {
                var error: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                if getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0, error == 0 { return fd }
            }
            close(fd)
        }
        return nil
    }

    /// Writes all of `bytes` before `deadline` (no SIGPIPE when the collector has gone).
    private func send(_ bytes: [UInt8], on fd: Int32, deadline: ContinuousClock.Instant) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            }
            if sent > 0 {
                offset += sent
            } else if sent < 0, errno == EAGAIN || errno == EINTR {
                guard wait(fd, for: Int16(POLLOUT), deadline: deadline) else { return false }
            } else {
                return false
            }
        }
        return true
    }

    /// Waits until `fd` is ready for `events`; false when the deadline passes first or the socket failed.
    private func wait(_ fd: Int32, for events: Int16, deadline: ContinuousClock.Instant) -> Bool {
        while true {
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard remaining > .zero else { return false }
            let milliseconds = Int32(min(remaining.components.seconds * 1000 + remaining.components.attoseconds
                / 1_000_000_000_000_000 + 1, 60_000))
            var descriptor = pollfd(fd: fd, events: events, revents: 0)
            let ready = poll(&descriptor, 1, milliseconds)
            if ready < 0, errno == EINTR { continue }
            if ready < 0 { return false }
            if ready > 0 { return descriptor.revents & (events | Int16(POLLHUP) | Int16(POLLERR)) != 0 }
        }
    }
}

/// The part of a collector's response the exporter reads: the status, and `Retry-After` in seconds.
struct OTLPResponseHead: Hashable {
    var status: Int
    var retryAfter: Duration?

    /// A longer head is not a collector's (bounds what the exporter reads).
    static let maxLength = 16 * 1024

    /// Parses a complete response head (through the empty line), or nil while it is incomplete or not HTTP.
    init?(parsing bytes: [UInt8]) {
        let end: [UInt8] = [13, 10, 13, 10]
        guard let headEnd = bytes.indices.first(where: { bytes[$0...].starts(with: end) }) else { return nil }
        let lines = String(decoding: bytes[..<headEnd], as: UTF8.self).split(separator: "\r\n")
        guard let statusLine = lines.first else { return nil }
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), parts[1].count == 3, let status = Int(parts[1]) else {
            return nil
        }
        self.status = status
        retryAfter = nil
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            guard line[..<colon].lowercased() == "retry-after" else { continue }
            // RFC 9110 §10.2.3: delay-seconds or an HTTP date; a date is ignored (backoff applies instead).
            let value = line[line.index(after: colon)...].trimmingPrefixSpaces()
            if let seconds = Int(value), seconds >= 0 { retryAfter = .seconds(seconds) }
        }
    }
}

extension Substring {
    /// Without leading and trailing spaces and tabs.
    fileprivate func trimmingPrefixSpaces() -> Substring {
        var value = self
        while let first = value.first, first == " " || first == "\t" { value = value.dropFirst() }
        while let last = value.last, last == " " || last == "\t" { value = value.dropLast() }
        return value
    }
}
