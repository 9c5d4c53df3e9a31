// SPDX-License-Identifier: Apache-2.0
// A tiny HTTP/3 server on JesterHTTP3's sessions and one plain UDP socket, for the live tier
// (Tests/Live/test_http3_sessions.py) to check the wrappers against independent clients (aioquic, h2load) until
// the worker has an HTTP/3 listener (issue 23, part two).
//
//   jester-h3-probe CERT.pem KEY.pem [--retry]   binds 127.0.0.1 on a free UDP port, prints "PORT n", serves
//
//   GET  /size/N   200 with N bytes (a repeating pattern) and the trailer x-served: jester-h3-probe
//   POST /echo     200 echoing the request body once it ended, trailers x-echo-length and x-echo-trailer (the
//                  request's x-checksum trailer, when sent)
//   GET  /stats    200 with {"connections": accepted so far, "retries": Retry packets sent}
//   anything else  404 without a body
//
// --retry: every new connection must answer a Retry first (address validation forced).
import Foundation
import JesterHTTP3
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

let arguments = CommandLine.arguments
guard arguments.count >= 3 else {
    FileHandle.standardError.write(Data("usage: jester-h3-probe CERT.pem KEY.pem [--retry]\n".utf8))
    exit(2)
}
let forceRetry = arguments.contains("--retry")
let credentials = try QUICTLSCredentials(
    certificateChainPEM: Array(try Data(contentsOf: URL(fileURLWithPath: arguments[1]))),
    privateKeyPEM: Array(try Data(contentsOf: URL(fileURLWithPath: arguments[2]))))
let endpoint = QUICServerEndpoint(credentials: credentials, keys: .random(), connectionIDs: RandomConnectionIDFactory())

// MARK: The socket

let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
var bound = sockaddr_in()
bound.sin_family = sa_family_t(AF_INET)
bound.sin_addr.s_addr = inet_addr("127.0.0.1")
bound.sin_port = 0
precondition(withUnsafePointer(to: &bound) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
} == 0)
var length = socklen_t(MemoryLayout<sockaddr_in>.size)
_ = withUnsafeMutablePointer(to: &bound) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
}
let localAddress = QUICSocketAddress(ip: "127.0.0.1", port: UInt16(bigEndian: bound.sin_port))!
FileHandle.standardOutput.write(Data("PORT \(localAddress.port)\n".utf8))

func monotonicNow() -> QUICInstant {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return QUICInstant(nanoseconds: UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec))
}

@MainActor
func send(_ bytes: UnsafeRawBufferPointer, to peer: QUICSocketAddress) {
    peer.bytes.withUnsafeBytes { address in
        _ = sendto(
            fd, bytes.baseAddress, bytes.count, 0, address.baseAddress!.assumingMemoryBound(to: sockaddr.self),
            socklen_t(address.count))
    }
}

// MARK: Serving

/// What the probe did, for GET /stats.
var acceptedConnections = 0
var retriesSent = 0

/// One connection's requests in progress.
@MainActor
final class Served {
    let session: HTTP3Session
    var paths: [Int64: String] = [:]
    var bodies: [Int64: [UInt8]] = [:]
    var requestTrailers: [Int64: [HTTP3Field]] = [:]

    init(_ session: HTTP3Session) { self.session = session }

    func handle(_ events: [HTTP3Event]) {
        for event in events {
            switch event {
            case .headers(let stream, let fields, let endStream):
                let method = fields.first { $0.name == ":method" }?.value ?? ""
                let path = fields.first { $0.name == ":path" }?.value ?? ""
                paths[stream] = "\(method) \(path)"
                bodies[stream] = []
                if endStream { respond(stream) }
            case .data(let stream, let bytes):
                bodies[stream, default: []] += Array(bytes.readableBytesView)
                session.consumed(stream: stream, count: bytes.readableBytes)
            case .trailers(let stream, let fields):
                requestTrailers[stream] = fields
                respond(stream)
            case .endStream(let stream):
                respond(stream)
            case .streamReset(let stream, _), .streamClosed(let stream, _):
                paths[stream] = nil
                bodies[stream] = nil
                requestTrailers[stream] = nil
            case .goAway:
                break
            }
        }
    }

    private func respond(_ stream: Int64) {
        guard let request = paths[stream] else { return }
        if request.hasPrefix("GET /size/"), let size = Int(request.dropFirst("GET /size/".count)) {
            try? session.respond(stream: stream, fields: [HTTP3Field(":status", "200")], hasBody: true)
            session.sendBody(stream: stream, ByteBuffer(bytes: (0..<size).map { UInt8(truncatingIfNeeded: $0 % 251) }))
            session.finishBody(stream: stream, trailers: [HTTP3Field("x-served", "jester-h3-probe")])
        } else if request == "GET /stats" {
            let stats = "{\"connections\": \(acceptedConnections), \"retries\": \(retriesSent)}"
            try? session.respond(stream: stream, fields: [HTTP3Field(":status", "200")], hasBody: true)
            session.sendBody(stream: stream, ByteBuffer(string: stats))
            session.finishBody(stream: stream)
        } else if request == "POST /echo" {
            let body = bodies[stream] ?? []
            var trailers = [HTTP3Field("x-echo-length", String(body.count))]
            if let checksum = requestTrailers[stream]?.first(where: { $0.name == "x-checksum" }) {
                trailers.append(HTTP3Field("x-echo-trailer", checksum.value))
            }
            try? session.respond(stream: stream, fields: [HTTP3Field(":status", "200")], hasBody: true)
            session.sendBody(stream: stream, ByteBuffer(bytes: body))
            session.finishBody(stream: stream, trailers: trailers)
        } else {
            try? session.respond(stream: stream, fields: [HTTP3Field(":status", "404")], hasBody: false)
        }
    }
}

var table: [QUICConnectionID: Served] = [:]
var served: [ObjectIdentifier: Served] = [:]

@MainActor
func adopt(_ connection: QUICConnection, now: QUICInstant) {
    guard let session = try? HTTP3Session(connection: connection, now: now) else { return }
    let entry = Served(session)
    served[ObjectIdentifier(connection)] = entry
    table[connection.originalDestinationConnectionID] = entry
}

@MainActor
func receive(_ datagram: UnsafeRawBufferPointer, from peer: QUICSocketAddress, now: QUICInstant) {
    switch endpoint.route(datagram: datagram, peer: peer) {
    case .connection(let id, let isLong):
        if let entry = table[id] {
            entry.session.connection.receive(datagram: datagram, local: localAddress, peer: peer, now: now)
        } else if isLong {
            switch endpoint.accept(
                datagram: datagram, local: localAddress, peer: peer, requireAddressValidation: forceRetry, now: now)
            {
            case .accepted(let connection):
                acceptedConnections += 1
                adopt(connection, now: now)
            case .retry(let answer):
                retriesSent += 1
                answer.bytes.withUnsafeBytes { send($0, to: answer.peer) }
            case .refuse(let answer):
                answer.bytes.withUnsafeBytes { send($0, to: answer.peer) }
            case .ignore: break
            }
        } else if let reset = endpoint.statelessReset(datagram: datagram, peer: peer) {
            reset.bytes.withUnsafeBytes { send($0, to: reset.peer) }
        }
    case .versionNegotiation(let answer):
        answer.bytes.withUnsafeBytes { send($0, to: answer.peer) }
    case .invalid:
        break
    }
}

/// Runs timers, hands events to the requests, writes what each connection has, forgets finished ones.
@MainActor
func service(now: QUICInstant) {
    var buffer = [UInt8](repeating: 0, count: 1500)
    for (key, entry) in served {
        let connection = entry.session.connection
        if let deadline = connection.nextDeadline, deadline <= now { connection.handleExpiry(now: now) }
        entry.handle(entry.session.takeEvents())
        buffer.withUnsafeMutableBytes { raw in
            while let written = connection.writeDatagram(into: raw, now: now) {
                send(UnsafeRawBufferPointer(rebasing: raw[..<written.count]), to: written.peer)
            }
        }
        entry.handle(entry.session.takeEvents())
        for event in connection.takeEvents() {
            switch event {
            case .connectionIDIssued(let id): table[id] = entry
            case .connectionIDRetired(let id): table[id] = nil
            default: break
            }
        }
        if connection.state == .closed {
            served[key] = nil
            table = table.filter { $0.value !== entry }
        }
    }
}

// MARK: The loop

var datagram = [UInt8](repeating: 0, count: 65_536)
while true {
    let now = monotonicNow()
    let deadlines = served.values.compactMap { $0.session.connection.nextDeadline }
    let wait = deadlines.min().map { $0 <= now ? 0 : Int32(min(($0.nanoseconds - now.nanoseconds) / 1_000_000 + 1, 100)) }
    var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    _ = poll(&poller, 1, wait ?? 100)
    let received = monotonicNow()
    for _ in 0..<64 {
        var storage = sockaddr_storage()
        var storageLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let count = datagram.withUnsafeMutableBytes { raw in
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    recvfrom(fd, raw.baseAddress, raw.count, Int32(MSG_DONTWAIT), $0, &storageLength)
                }
            }
        }
        guard count > 0 else { break }
        let peer = withUnsafeBytes(of: &storage) {
            QUICSocketAddress(sockaddrBytes: UnsafeRawBufferPointer(rebasing: $0[..<Int(storageLength)]))
        }
        guard let peer else { continue }
        datagram.withUnsafeBytes { receive(UnsafeRawBufferPointer(rebasing: $0[..<count]), from: peer, now: received) }
    }
    service(now: monotonicNow())
}
