// SPDX-License-Identifier: Apache-2.0
import JesterCore
import JesterHTTP2
import NIOCore

/// What an HTTP/1.1 client's exchange talks to upstream: a keep-alive HTTP/1.1 connection
/// (`UpstreamConnection`), or a stream on a shared HTTP/2 connection (`HTTP2Exchange`). The client side stays
/// the same either way: it writes an HTTP/1.1 request and hears an HTTP/1.1 response.
protocol ExchangeUpstream: AnyObject {
    var pool: UpstreamPool { get }
    var target: Int { get }
    var targetDescription: String { get }
    /// Whether more request bytes may be written now (backpressure).
    var isWritable: Bool { get }
    /// Exchanges completed before this one (0 for a fresh connection): a failure after some is a stale one.
    var completedExchanges: Int { get }
    /// Sends the request head; a 101 answer is passed on only when `expectsUpgrade`, and refused otherwise.
    func startExchange(
        delegate: any UpstreamConnectionDelegate, requestHead: ByteBuffer, isHeadRequest: Bool, expectsUpgrade: Bool)
    func write(_ bytes: ByteBuffer)
    func flush()
    /// The client can take more response bytes.
    func read()
    func startTunnel()
    /// Abandons the exchange (the client left, or it was given up).
    func close()
    /// The exchange ended: the connection goes back to the pool when `reusable`.
    func release(reusable: Bool)
    /// The exchange ended without a release: `failed` counts against the target.
    func finished(failed: Bool)
}

extension UpstreamConnection: ExchangeUpstream {
    func release(reusable: Bool) {
        pool.release(self, reusable: reusable)
    }

    func finished(failed: Bool) {
        pool.finished(self, failed: failed)
    }
}

/// An HTTP/1.1 client's request carried as a stream to an HTTP/2 target (`protocol = "h2"`): the request head
/// (rendered by `UpstreamRequest`) becomes HTTP/2 fields, its body's HTTP/1.1 framing is removed, and the
/// response comes back as an HTTP/1.1 head and decoded body bytes, as an `UpstreamConnection` would deliver them.
/// Trailers of the response are dropped (an HTTP/1.1 client is not asked whether it takes them).
/// Used on the pool's event loop only.
final class HTTP2Exchange: ExchangeUpstream, HTTP2UpstreamStreamDelegate {
    private let connection: HTTP2UpstreamConnection
    private let scheme: String
    private weak var delegate: (any UpstreamConnectionDelegate)?
    private var stream: Int32?
    private var requestBody = BodyReader(.none)
    /// Request bytes whose HTTP/1.1 framing is not complete yet (a chunk size line split across writes).
    private var framed: ByteBuffer?
    private var responseStarted = false
    private var responseUnacknowledged = 0
    private var wasWritable = true
    private var ended = false
    private static let bufferLimit = 64 * 1024

    init(connection: HTTP2UpstreamConnection, tls: Bool) {
        self.connection = connection
        scheme = tls ? "https" : "http"
    }

    var pool: UpstreamPool { connection.pool }
    var target: Int { connection.target }
    var targetDescription: String { pool.targetDescription(target) }
    var completedExchanges: Int { 0 }
    var isWritable: Bool { stream.map { connection.bufferedBody($0) < Self.bufferLimit } ?? true }

    func startExchange(
        delegate: any UpstreamConnectionDelegate, requestHead: ByteBuffer, isHeadRequest: Bool, expectsUpgrade: Bool
    ) {
        // (`expectsUpgrade` has no use here: HTTP/2 has no 101 (RFC 9113 §8.6), nghttp2 resets a stream that sends one.)
        self.delegate = delegate
        var head = HTTPHead()
        let parser = HTTPHeadParser(limits: .init(maxHeadSize: 1 << 20, maxURILength: 1 << 20, maxFieldCount: 10_000))
        let error = requestHead.withUnsafeReadableBytes { parser.parseRequest($0, into: &head) }
        guard error == nil else {
            fail(.invalidResponse(.badStatusLine))
            return
        }
        var fields: [HTTP2Field] = []
        requestHead.withUnsafeReadableBytes { bytes in
            func text(_ range: Range<Int>) -> String { String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self) }
            let authority = head.hostField.map { text(head.fields[$0].value) } ?? targetDescription
            fields = [HTTP2Field(":method", text(head.method)), HTTP2Field(":scheme", scheme),
                HTTP2Field(":authority", authority), HTTP2Field(":path", text(head.target))]
            for (index, field) in head.fields.enumerated() where !field.isHopByHop {
                let name = text(field.name).lowercased()
                // Framing and connection fields do not exist in HTTP/2 (RFC 9113 §8.2.2); Host became :authority.
                if name == "host" || HTTP2Stream.connectionSpecific.contains(name) { continue }
                if name == "te" { continue }
                // (A request id is every request's own: never worth a place in the HPACK table.)
                fields.append(HTTP2Field(name, text(field.value), neverIndexed: index == head.requestIDField))
            }
        }
        // Trailers are accepted (and dropped on the way to the HTTP/1.1 client, RFC 9110 §6.5.1); gRPC servers
        // insist on hearing so.
        fields.append(HTTP2Field("te", "trailers"))
        let framing = BodyFraming.request(head)
        requestBody = BodyReader(framing)
        guard let stream = connection.open(fields: fields, hasBody: framing != .none, delegate: self) else {
            fail(.connectFailed("the HTTP/2 connection to \(targetDescription) refused a new stream"))
            return
        }
        self.stream = stream
    }

    func write(_ bytes: ByteBuffer) {
        guard let stream, !requestBody.isComplete else { return }
        var bytes = bytes
        if var pending = framed {
            pending.writeBuffer(&bytes)
            bytes = pending
        }
        var consumed = 0
        let result: Result<[Range<Int>], HTTPParseError> = bytes.withUnsafeReadableBytes { raw in
            var ranges: [Range<Int>] = []
            do throws(HTTPParseError) {
                while let range = try requestBody.next(raw, &consumed) { ranges.append(range) }
            } catch {
                return .failure(error)
            }
            return .success(ranges)
        }
        guard case .success(let ranges) = result else {
            cancel()
            return
        }
        for range in ranges {
            connection.sendBody(stream, bytes.getSlice(at: bytes.readerIndex + range.lowerBound, length: range.count)!)
        }
        bytes.moveReaderIndex(forwardBy: consumed)
        framed = bytes.readableBytes > 0 ? bytes : nil
        if requestBody.isComplete { connection.finishBody(stream, trailers: []) }
    }

    func flush() {
        connection.scheduleFlush()
    }

    func read() {
        guard let stream, responseUnacknowledged > 0 else { return }
        connection.consumed(stream, count: responseUnacknowledged)
        responseUnacknowledged = 0
    }

    func startTunnel() {
        // No upgrade is forwarded to an HTTP/2 target (the request went out without Upgrade).
        close()
    }

    func close() {
        cancel()
        delegate = nil
    }

    func release(reusable: Bool) {
        // The connection is shared: nothing goes back to the pool; the stream's end was counted as it closed.
        if !ended { cancel() }
    }

    func finished(failed: Bool) {
        if !ended { cancel() }
    }

    private func cancel() {
        guard !ended else { return }
        ended = true
        if let stream {
            connection.cancel(stream)
        } else {
            // The pool counted the request when it chose this connection; with no stream opened, no stream's
            // end gives the count back (the client left while the connection was still being made).
            pool.http2StreamEnded(connection, failed: false)
        }
    }

    private func fail(_ failure: UpstreamFailure) {
        // (Only before a stream opened: the pool's count for this request goes back here.)
        if !ended, stream == nil { pool.http2StreamEnded(connection, failed: true) }
        ended = true
        let delegate = self.delegate
        self.delegate = nil
        connection.pool.eventLoop.assumeIsolated().execute { delegate?.upstreamFailed(failure, responseStarted: false) }
    }

    // MARK: HTTP2UpstreamStreamDelegate

    func upstreamHeaders(_ fields: [HTTP2Field], endStream: Bool) {
        let status = fields.first { $0.name == ":status" }.flatMap { Int($0.value) } ?? 502
        var text = "HTTP/1.1 \(status) \(HTTPStatus.reason(status))\r\n"
        var hasLength = false
        for field in fields where !field.name.hasPrefix(":") {
            if field.name == "content-length" { hasLength = true }
            text += "\(field.name): \(field.value)\r\n"
        }
        if status >= 200, status != 204, status != 304, !hasLength {
            // HTTP/1.1 needs framing the HTTP/2 response did not state: no body, or chunks.
            text += endStream ? "content-length: 0\r\n" : "transfer-encoding: chunked\r\n"
        }
        text += "\r\n"
        let bytes = ByteBuffer(string: text)
        var head = HTTPHead()
        let parser = HTTPHeadParser(limits: .init(maxHeadSize: 1 << 20, maxURILength: 1 << 20, maxFieldCount: 10_000))
        guard bytes.withUnsafeReadableBytes({ parser.parseResponse($0, into: &head) }) == nil else {
            cancel()
            finishDelegate { $0.upstreamFailed(.invalidResponse(.badStatusLine), responseStarted: false) }
            return
        }
        if status >= 200 { responseStarted = true }
        delegate?.upstreamResponseHead(head, bytes: bytes)
        if endStream, status >= 200 { end() }
    }

    func upstreamData(_ bytes: ByteBuffer) {
        responseUnacknowledged += bytes.readableBytes
        delegate?.upstreamResponseBody(bytes)
        delegate?.upstreamReadComplete()
    }

    func upstreamTrailers(_ fields: [HTTP2Field]) {
        end()
    }

    func upstreamEnded() {
        end()
    }

    func upstreamStreamFailed(_ reason: String) {
        ended = true
        let started = responseStarted
        finishDelegate { $0.upstreamFailed(.closedEarly, responseStarted: started) }
    }

    func upstreamDrained() {
        let writable = isWritable
        if writable, !wasWritable { delegate?.upstreamWritabilityChanged(isWritable: true) }
        wasWritable = writable
    }

    private func end() {
        // The target answered before the request body was all sent: its stream is reset (CANCEL) rather than left
        // open there, holding a stream slot and the pool's count of requests in flight for good.
        if !ended, !requestBody.isComplete, let stream { connection.cancel(stream) }
        ended = true
        finishDelegate { $0.upstreamResponseEnd(reusable: true) }
    }

    private func finishDelegate(_ body: (any UpstreamConnectionDelegate) -> Void) {
        guard let delegate else { return }
        self.delegate = nil
        body(delegate)
    }
}
