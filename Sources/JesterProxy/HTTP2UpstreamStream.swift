// SPDX-License-Identifier: Apache-2.0
import JesterCore
import JesterHTTP2
import NIOCore

/// One exchange carried as a stream to an HTTP/2 target (`protocol = "h2"`), for any client: the request head
/// (rendered by `UpstreamRequest`, as for HTTP/1.1 pools) becomes HTTP/2 fields, body bytes go as DATA and
/// trailers as trailers, and the response comes back as an HTTP/1.1-form head, body bytes and trailers, as an
/// `UpstreamConnection` would deliver them. An HTTP/2 client gets the response's fields and trailers back as they
/// came (gRPC's status travels in trailers); an HTTP/1.1 client gets them framed for HTTP/1.1, its trailers
/// dropped (it was not asked whether it takes them). Flow control both ways: request bytes are acknowledged to
/// the client as the target takes them (`isWritable`), response bytes to the target as the client takes them
/// (`read`). Used on the pool's event loop only.
final class HTTP2UpstreamStream: ExchangeUpstream, HTTP2UpstreamStreamDelegate {
    private let connection: HTTP2UpstreamConnection
    private let scheme: String
    private weak var delegate: (any UpstreamConnectionDelegate)?
    private var stream: Int32?
    /// The request's body is complete (or it had none): a response that ends leaves no request half sent.
    private var requestEnded = false
    private var responseStarted = false
    private var responseUnacknowledged = 0
    /// Response DATA came since the connection's last read cycle ended.
    private var receivedInCycle = false
    /// `isWritable` as the client side last saw it: a change to writable is reported once.
    private var wasWritable = true
    private var ended = false
    private(set) var responseFramingIsSynthesized = false
    /// The request is a HEAD: its answer's missing length is not made up (it would say the resource is empty).
    private var requestIsHead = false
    /// When the request went out and its response head came, read only when the pool counts metrics.
    private var sentAt: NIODeadline?
    private(set) var responseWait: Int64?
    /// Request body bytes waiting in the session above this are not taken yet (about one stream window).
    private static let bufferLimit = 64 * 1024
    /// Parses the heads translated between the protocols; their fields were checked by nghttp2 or rendered by
    /// Jester, so the limits are only a bound.
    private static let parser = HTTPHeadParser(
        limits: .init(maxHeadSize: 1 << 20, maxURILength: 1 << 20, maxFieldCount: 10_000))

    init(connection: HTTP2UpstreamConnection, tls: Bool) {
        self.connection = connection
        scheme = tls ? "https" : "http"
    }

    var pool: UpstreamPool { connection.pool }
    var target: Int { connection.target }
    var targetDescription: String { pool.targetDescription(target) }
    var completedExchanges: Int { 0 }
    var isWritable: Bool { stream.map { connection.bufferedBody($0) < Self.bufferLimit } ?? true }

    // MARK: Request

    func startExchange(
        delegate: any UpstreamConnectionDelegate, requestHead: ByteBuffer, chunkedBody: Bool, isHeadRequest: Bool,
        expectsUpgrade: Bool
    ) {
        // (`expectsUpgrade` has no use here: HTTP/2 has no 101 (RFC 9113 §8.6); no upgrade is forwarded to an
        // HTTP/2 target, and nghttp2 resets a stream that answers with one.)
        self.delegate = delegate
        requestIsHead = isHeadRequest
        var head = HTTPHead()
        guard requestHead.withUnsafeReadableBytes({ Self.parser.parseRequest($0, into: &head) }) == nil else {
            fail(.invalidResponse(.badStatusLine))
            return
        }
        let fields = requestHead.withUnsafeReadableBytes { fieldsOfRequest(head, $0) }
        let hasBody = BodyFraming.request(head) != .none
        requestEnded = !hasBody
        guard let stream = connection.open(fields: fields, hasBody: hasBody, delegate: self) else {
            fail(.streamReset("the HTTP/2 connection to \(targetDescription) refused a new stream"))
            return
        }
        self.stream = stream
        if pool.metrics != nil { sentAt = .now() }
    }

    /// The HTTP/2 fields of a rendered HTTP/1.1 request head: the request line and Host become pseudo-headers;
    /// framing and connection fields, which do not exist in HTTP/2 (RFC 9113 §8.2.2), are left out.
    private func fieldsOfRequest(_ head: HTTPHead, _ bytes: UnsafeRawBufferPointer) -> [HTTP2Field] {
        func text(_ range: Range<Int>) -> String {
            String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
        }
        let authority = head.hostField.map { text(head.fields[$0].value) } ?? targetDescription
        var fields = [
            HTTP2Field(":method", text(head.method)), HTTP2Field(":scheme", scheme),
            HTTP2Field(":authority", authority), HTTP2Field(":path", text(head.target)),
        ]
        fields.reserveCapacity(head.fields.count + 5)
        for (index, field) in head.fields.enumerated() where !field.isHopByHop {
            let name = text(field.name).lowercased()
            if name == "host" || name == "te" || RequestStream.connectionSpecific.contains(name) { continue }
            // (A request id is every request's own: never worth a place in the HPACK table.)
            fields.append(HTTP2Field(name, text(field.value), neverIndexed: index == head.requestIDField))
        }
        // Trailers are accepted (an HTTP/1.1 client's are dropped on the way, RFC 9110 §6.5.1); gRPC servers
        // insist on hearing so.
        fields.append(HTTP2Field("te", "trailers"))
        return fields
    }

    func sendBody(_ bytes: ByteBuffer) {
        guard let stream, !requestEnded else { return }
        connection.sendBody(stream, bytes)
        // Over the limit now: the next drain below it is reported as writable again.
        if !isWritable { wasWritable = false }
    }

    func endRequest(trailers: [HTTP2Field]) {
        guard let stream, !requestEnded else { return }
        requestEnded = true
        connection.finishBody(stream, trailers: trailers)
    }

    func writeTunnel(_ bytes: ByteBuffer) {}

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
        acknowledgeOwed()
        delegate = nil
    }

    func release(reusable: Bool) {
        // The connection is shared: nothing goes back to the pool; the stream's end was counted as it closed.
        if !ended { cancel() }
        acknowledgeOwed()
    }

    func finished(failed: Bool) {
        if !ended { cancel(failed: failed) }
        acknowledgeOwed()
    }

    /// Response bytes received and never acknowledged (the client had not taken them yet when the exchange
    /// ended) are acknowledged now: the connection's window is shared by every stream on it, and bytes never
    /// given back would shrink it for good, until every stream on the connection stalls.
    private func acknowledgeOwed() {
        guard let stream, responseUnacknowledged > 0 else { return }
        connection.consumed(stream, count: responseUnacknowledged)
        responseUnacknowledged = 0
    }

    private func cancel(failed: Bool = false) {
        guard !ended else { return }
        ended = true
        if let stream {
            connection.cancel(stream, failed: failed)
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
        if status >= 200, status != 204, status != 304, !hasLength, !(requestIsHead && endStream) {
            // HTTP/1.1 needs framing the HTTP/2 response did not state: no body, or chunks.
            text += endStream ? "content-length: 0\r\n" : "transfer-encoding: chunked\r\n"
            responseFramingIsSynthesized = true
        }
        text += "\r\n"
        let bytes = ByteBuffer(string: text)
        var head = HTTPHead()
        guard bytes.withUnsafeReadableBytes({ Self.parser.parseResponse($0, into: &head) }) == nil else {
            cancel()
            finishDelegate { $0.upstreamFailed(.invalidResponse(.badStatusLine), responseStarted: false) }
            return
        }
        if status >= 200 {
            responseStarted = true
            if let sentAt { responseWait = (NIODeadline.now() - sentAt).nanoseconds }
        }
        delegate?.upstreamResponseHead(head, bytes: bytes)
        if endStream, status >= 200 { end() }
    }

    func upstreamData(_ bytes: ByteBuffer) {
        responseUnacknowledged += bytes.readableBytes
        receivedInCycle = true
        delegate?.upstreamResponseBody(bytes)
    }

    /// Once per read of the connection, not per DATA frame: the client side flushes, acknowledges, and a
    /// response filter flushes its transformation (a compressor's sync flush costs bytes), once per batch.
    func upstreamReadCycleEnded() {
        guard receivedInCycle else { return }
        receivedInCycle = false
        delegate?.upstreamReadComplete()
    }

    func upstreamTrailers(_ fields: [HTTP2Field]) {
        delegate?.upstreamResponseTrailers(fields.filter { !RequestStream.connectionSpecific.contains($0.name) })
        end()
    }

    func upstreamEnded() {
        end()
    }

    func upstreamStreamFailed(_ reason: String) {
        ended = true
        acknowledgeOwed()
        let started = responseStarted
        finishDelegate { $0.upstreamFailed(.streamReset(reason), responseStarted: started) }
    }

    func upstreamDrained() {
        let writable = isWritable
        if writable, !wasWritable { delegate?.upstreamWritabilityChanged(isWritable: true) }
        wasWritable = writable
    }

    private func end() {
        // The target answered before the request body was all sent: its stream is reset (CANCEL) rather than left
        // open there, holding a stream slot and the pool's count of requests in flight for good.
        if !ended, !requestEnded, let stream { connection.cancel(stream) }
        ended = true
        finishDelegate { $0.upstreamResponseEnd(reusable: true) }
    }

    private func finishDelegate(_ body: (any UpstreamConnectionDelegate) -> Void) {
        guard let delegate else { return }
        self.delegate = nil
        body(delegate)
    }
}
