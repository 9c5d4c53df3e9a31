// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the HTTP/3 server path (JesterHTTP3's HTTP3Session over nghttp3, on a QUICConnection over
// ngtcp2), built by Tests/Fuzz/run.sh together with JesterHTTP3's sources, so it can use their internals.
//
// A real QUIC client (JesterHTTP3's own client role) completes the handshake in memory; then, instead of
// nghttp3, a raw stream writer sends the input's bytes on streams the input picks: four request streams, and the
// control, QPACK encoder and QPACK decoder streams (unidirectional, so the input must write their type byte
// itself). Everything goes through ngtcp2's packets and encryption, as from a network. The server answers every
// request with a body and trailers and acknowledges request DATA, as the proxy would. Checks beyond "no crash":
// requests only on client-initiated bidirectional streams; no event after a stream's close, one close per
// stream; no datagram larger than the connection's limit.
//
// Input: records of [op][length][length bytes]. op & 7: 0-3 request stream n (opened on first use), 4 control,
// 5 QPACK encoder, 6 QPACK decoder, 7 end request stream (op >> 3) & 3.

internal import CJesterNGTCP2
import Foundation
import NIOCore

private let clientAddress = QUICSocketAddress(ip: "127.0.0.1", port: 50_000)!
private let serverAddress = QUICSocketAddress(ip: "127.0.0.1", port: 443)!
private let fixtures = "Tests/Fixtures/tls/"
private let serverCredentials = try! QUICTLSCredentials(
    certificateChainPEM: Array(FileManager.default.contents(atPath: fixtures + "alpha.pem")!),
    privateKeyPEM: Array(FileManager.default.contents(atPath: fixtures + "alpha.key")!)
)
private let clientCredentials = try! QUICTLSCredentials(trustedCertificatesPEM: nil)

/// Writes raw bytes on the streams the input chooses, in place of the client's nghttp3.
private final class RawStreams: QUICStreamApplication {
    /// Bytes waiting per stream, in the order they were queued, with whether the stream ends after them.
    var queue: [(stream: Int64, bytes: [UInt8], fin: Bool)] = []

    func quicApplicationKeysReady() -> Bool { true }
    func quicStreamData(stream: Int64, _ data: UnsafeRawBufferPointer, fin: Bool) -> Bool { true }
    func quicStreamDataAcknowledged(stream: Int64, count: UInt64) -> Bool { true }
    func quicStreamClosed(stream: Int64, errorCode: UInt64?) -> Bool { true }
    func quicStreamReset(stream: Int64, errorCode: UInt64) -> Bool { true }
    func quicStopSending(stream: Int64, errorCode: UInt64) -> Bool { true }
    func quicStreamUnblocked(stream: Int64) -> Bool { true }
    func quicRemoteBidirectionalStreamsExtended(to maximum: UInt64) {}

    func quicNextStreamData(
        _ vectors: UnsafeMutableBufferPointer<ngtcp2_vec>
    ) -> (stream: Int64, fin: Bool, count: Int)? {
        guard let first = queue.first else { return (-1, false, 0) }
        if first.bytes.isEmpty { return (first.stream, first.fin, 0) }
        // The bytes stay in `queue` until written: ngtcp2 copies them into the packet during the call.
        vectors[0] = first.bytes.withUnsafeBufferPointer {
            ngtcp2_vec(base: UnsafeMutablePointer(mutating: $0.baseAddress), len: $0.count)
        }
        return (first.stream, first.fin, 1)
    }

    func quicStreamDataWritten(stream: Int64, count: Int) -> Bool {
        guard let first = queue.first, first.stream == stream else { return true }
        if count >= first.bytes.count { queue.removeFirst() } else { queue[0].bytes.removeFirst(count) }
        return true
    }

    func quicStreamBlocked(stream: Int64) { drop(stream) }
    func quicStreamWriteShut(stream: Int64) { drop(stream) }

    /// A stream that cannot take more (flow control, shut): its queued bytes are abandoned, so the rest goes on.
    private func drop(_ stream: Int64) { queue.removeAll { $0.stream == stream } }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTP3(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    var now = QUICInstant(nanoseconds: 1_000_000_000)
    let endpoint = QUICServerEndpoint(
        credentials: serverCredentials,
        keys: .random(),
        connectionIDs: RandomConnectionIDFactory()
    )
    guard
        let client = try? QUICConnection.connect(
            from: clientAddress,
            to: serverAddress,
            serverName: "localhost",
            credentials: clientCredentials,
            now: now
        )
    else { return 0 }
    let raw = RawStreams()
    _ = client.attach(raw, now: now)
    var server: HTTP3Session?
    var closed: Set<Int64> = []

    func pump() {
        for _ in 0..<100 {
            var moved = 0
            for datagram in client.pendingDatagrams(now: now) {
                moved += 1
                if let server {
                    server.connection.receive(
                        datagram: datagram.bytes,
                        local: serverAddress,
                        peer: clientAddress,
                        now: now
                    )
                } else if case .accepted(let connection) = datagram.bytes.withUnsafeBytes({
                    endpoint.accept(datagram: $0, local: serverAddress, peer: clientAddress, now: now)
                }) {
                    server = try? HTTP3Session(connection: connection, now: now)
                }
            }
            if let server {
                handle(server, &closed)
                for datagram in server.connection.pendingDatagrams(now: now) {
                    precondition(datagram.bytes.count <= max(server.connection.maximumDatagramSize, 1200))
                    moved += 1
                    client.receive(datagram: datagram.bytes, local: clientAddress, peer: serverAddress, now: now)
                }
                handle(server, &closed)
            }
            now = now.adding(milliseconds: 1)
            if moved == 0 {
                // Nothing to send now: run the nearest timer if it is close (pacing, a delayed acknowledgement).
                let deadlines = [client.nextDeadline, server?.connection.nextDeadline].compactMap { $0 }
                guard let next = deadlines.min(), next <= now.adding(milliseconds: 30) else { return }
                now = max(now, next)
                client.handleExpiry(now: now)
                server?.connection.handleExpiry(now: now)
            }
        }
    }

    pump()
    if verbose {
        FileHandle.standardError.write(
            Data("handshake: \(client.state) \(String(describing: server?.connection.state))\n".utf8)
        )
    }
    guard client.state == .established else { return 0 }
    var requestStreams: [Int64?] = [nil, nil, nil, nil]
    var uniStreams: [Int64?] = [nil, nil, nil]
    var index = 0
    while index + 2 <= input.count {
        let op = input[index]
        let length = Int(input[index + 1])
        let bytes = Array(input[(index + 2)..<min(index + 2 + length, input.count)])
        index += 2 + length
        let kind = Int(op & 7)
        switch kind {
        case 0...3:
            if requestStreams[kind] == nil { requestStreams[kind] = client.openBidirectionalStream() }
            if let stream = requestStreams[kind] { raw.queue.append((stream, bytes, false)) }
        case 4...6:
            if uniStreams[kind - 4] == nil { uniStreams[kind - 4] = client.openUnidirectionalStream() }
            if let stream = uniStreams[kind - 4] { raw.queue.append((stream, bytes, false)) }
        default:
            if let stream = requestStreams[Int(op >> 3) & 3] { raw.queue.append((stream, [], true)) }
        }
        pump()
        if verbose {
            let states = "\(client.state) \(String(describing: server?.connection.state)) queue \(raw.queue.count)"
            FileHandle.standardError.write(Data("record \(op) \(bytes.count): \(states)\n".utf8))
        }
        guard client.state == .established, server?.connection.state == .established else { break }
    }
    return 0
}

/// JESTER_FUZZ_VERBOSE set: each event is printed (to check that the seeds reach the request path).
private let verbose = ProcessInfo.processInfo.environment["JESTER_FUZZ_VERBOSE"] != nil

/// Answers requests as the proxy would and checks the order of events.
private func handle(_ session: HTTP3Session, _ closed: inout Set<Int64>) {
    for event in session.takeEvents() {
        if verbose { FileHandle.standardError.write(Data("\(event)\n".utf8)) }
        switch event {
        case .headers(let stream, _, let endStream):
            precondition(stream & 3 == 0, "a request on stream \(stream), not a client bidirectional one")
            precondition(!closed.contains(stream), "a request on closed stream \(stream)")
            try? session.respond(stream: stream, fields: [HTTP3Field(":status", "200")], hasBody: true)
            session.sendBody(stream: stream, ByteBuffer(string: endStream ? "done" : "streaming"))
            session.finishBody(stream: stream, trailers: [HTTP3Field("x-trailer", "1")])
        case .data(let stream, let body):
            precondition(!closed.contains(stream), "DATA on closed stream \(stream)")
            session.consumed(stream: stream, count: body.readableBytes)
        case .endStream(let stream), .trailers(let stream, _), .streamReset(let stream, _):
            precondition(!closed.contains(stream), "an end on closed stream \(stream)")
        case .streamClosed(let stream, _):
            precondition(closed.insert(stream).inserted, "stream \(stream) closed twice")
        case .goAway:
            break
        }
    }
}
