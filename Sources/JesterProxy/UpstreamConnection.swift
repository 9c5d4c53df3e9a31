// SPDX-License-Identifier: Apache-2.0
import JesterCore
import JesterHTTP2
import JesterTLS
import NIOCore

/// What an upstream connection tells the client connection it currently serves.
protocol UpstreamConnectionDelegate: AnyObject {
    /// A response head arrived (1xx heads too); `bytes` holds exactly the head.
    func upstreamResponseHead(_ head: HTTPHead, bytes: ByteBuffer)
    /// Body bytes of the current response, chunk framing already removed.
    func upstreamResponseBody(_ body: ByteBuffer)
    /// The response's trailers (from an HTTP/2 target), just before its end.
    func upstreamResponseTrailers(_ fields: [HTTP2Field])
    /// The response is complete; `reusable` says whether the connection can carry another request.
    func upstreamResponseEnd(reusable: Bool)
    /// Bytes of an upgraded (WebSocket) connection.
    func upstreamTunnelData(_ bytes: ByteBuffer)
    /// The exchange failed; `responseStarted` says whether a head was already delivered.
    func upstreamFailed(_ failure: UpstreamFailure, responseStarted: Bool)
    /// A batch of reads ended: flush what was written to the client.
    func upstreamReadComplete()
    /// The upstream socket can take more bytes again.
    func upstreamWritabilityChanged(isWritable: Bool)
}

/// One TCP connection to an upstream target: parses responses in place and streams them to its delegate.
///
/// Reads are explicit (autoRead off): the client side asks for more only while the client can take it, which is
/// the backpressure that keeps a 1 GiB download from being buffered. Loop-confined, hence `@unchecked Sendable`.
final class UpstreamConnection: ChannelInboundHandler, @unchecked Sendable {
    /// The TLS handler below this one, for pools with `tls`.
    var tls: TLSHandler?
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        /// Connected, waiting for the first request.
        case fresh
        /// In the pool between exchanges.
        case idle
        /// A request was sent; waiting for the response head.
        case awaitingHead
        /// Streaming a response body.
        case body(BodyReader)
        /// Upgraded: bytes pass through both ways.
        case tunnel
        case closed
    }

    let pool: UpstreamPool
    let target: Int
    /// The client connection of the current exchange. Strong, and cleared whenever an exchange ends or the
    /// connection closes (a weak reference would push both objects' reference counts onto the slow path).
    var delegate: (any UpstreamConnectionDelegate)?
    private var context: ChannelHandlerContext?
    private var state = State.fresh
    private var buffer: ByteBuffer?
    private var parser = HTTPHeadParser(limits: .init(maxHeadSize: 64 * 1024, maxURILength: 64 * 1024, maxFieldCount: 500))
    private var head = HTTPHead()
    private var requestWasHead = false
    /// The current request's body goes as chunks (its head said `Transfer-Encoding: chunked`).
    private var chunkedRequest = false
    /// The request asked to switch protocols (a WebSocket upgrade): only then is a 101 answer passed on.
    private var upgradeRequested = false
    /// Closes the connection when it idles in the pool too long; re-armed per exchange without rescheduling.
    private let idleTimer = ConnectionTimer()
    /// Exchanges completed on this connection; a failure on a reused connection may be retried.
    private(set) var completedExchanges = 0
    private var responseStarted = false
    /// Bytes were written since the last flush.
    private var unflushed = false
    /// A read was asked of the channel and has not delivered yet (see `requestRead`).
    private var readRequested = false
    /// A request of the pool's is in flight on this connection (its balancer counts it; see `UpstreamPool.finished`).
    var inFlight = false
    var exchangeStartedAt = 0.0
    /// When the current exchange's response head arrived (for the least-latency balancer).
    var responseHeadAt: Double?

    init(pool: UpstreamPool, target: Int) {
        self.pool = pool
        self.target = target
    }

    /// Open (the context goes with `channelInactive`) and between exchanges.
    var isUsable: Bool {
        guard context != nil else { return false }
        switch state {
        case .fresh, .idle: return true
        default: return false
        }
    }

    var isWritable: Bool { context?.channel.isWritable ?? false }

    var targetDescription: String { pool.targetDescription(target) }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        idleTimer.setup(queue: pool.timers) { _ in
            guard case .idle = self.state else { return }
            self.pool.remove(self)
            self.close()
        }
    }

    // MARK: Driven by the client connection

    /// Starts an exchange: `head` is the rewritten request head; the response is expected next.
    func startExchange(
        delegate: any UpstreamConnectionDelegate, requestHead: ByteBuffer, chunkedBody: Bool, isHeadRequest: Bool,
        expectsUpgrade: Bool
    ) {
        guard let context else { return }
        self.delegate = delegate
        requestWasHead = isHeadRequest
        chunkedRequest = chunkedBody
        upgradeRequested = expectsUpgrade
        responseStarted = false
        responseHeadAt = nil
        state = .awaitingHead
        parser.reset()
        head.reset()
        unflushed = true
        context.write(wrapOutboundOut(requestHead), promise: nil)
        requestRead()
    }

    /// Writes request body bytes, as a chunk when the request is chunked; flushed by `flush`.
    func sendBody(_ bytes: ByteBuffer) {
        guard let context else { return }
        unflushed = true
        if chunkedRequest {
            context.write(wrapOutboundOut(context.channel.allocator.chunkSizeLine(bytes.readableBytes)), promise: nil)
            context.write(wrapOutboundOut(bytes), promise: nil)
            context.write(wrapOutboundOut(ByteBuffer(staticString: "\r\n")), promise: nil)
        } else {
            context.write(wrapOutboundOut(bytes), promise: nil)
        }
    }

    /// Ends a chunked request body: the last chunk, `trailers` as a trailer section (RFC 9112 §7.1.2). A body
    /// with a length needs no end.
    func endRequest(trailers: [HTTP2Field]) {
        guard chunkedRequest, let context else { return }
        unflushed = true
        guard !trailers.isEmpty else {
            context.write(wrapOutboundOut(ByteBuffer(staticString: "0\r\n\r\n")), promise: nil)
            return
        }
        var end = context.channel.allocator.buffer(capacity: 64)
        end.writeStaticString("0\r\n")
        for field in trailers where !Self.fieldsNeverTrailers.contains(field.name) {
            end.writeString(field.name)
            end.writeStaticString(": ")
            end.writeString(field.value)
            end.writeStaticString("\r\n")
        }
        end.writeStaticString("\r\n")
        context.write(wrapOutboundOut(end), promise: nil)
    }

    /// Fields that framing, routing or the connection depend on: never taken from a trailer section
    /// (RFC 9110 §6.5.1), whatever an HTTP/2 client put there.
    private static let fieldsNeverTrailers: Set<String> = [
        "content-length", "transfer-encoding", "host", "trailer", "te", "connection", "keep-alive", "upgrade",
        "proxy-connection", "expect", "authorization",
    ]

    /// Writes bytes of an upgraded connection as they are; flushed by `flush`.
    func writeTunnel(_ bytes: ByteBuffer) {
        unflushed = true
        context?.write(wrapOutboundOut(bytes), promise: nil)
    }

    /// Flushes written bytes, if there are any (an empty flush is not free in NIO).
    func flush() {
        guard unflushed else { return }
        unflushed = false
        context?.flush()
    }

    /// Asks for more response bytes (the client can take them).
    func read() {
        requestRead()
    }

    /// Asks the channel for the next read unless one is pending already (an idle connection in the pool keeps
    /// one): asking again would change nothing and still walk NIO's channel state checks.
    private func requestRead() {
        guard !readRequested, let context else { return }
        readRequested = true
        context.read()
    }

    /// Switches to a byte tunnel after a 101 response.
    func startTunnel() {
        state = .tunnel
        if let remaining = buffer, remaining.readableBytes > 0 {
            buffer = nil
            delegate?.upstreamTunnelData(remaining)
        }
        requestRead()
    }

    func close() {
        // Closed for the client's sake (it left, or the exchange is abandoned): not the target's fault.
        pool.finished(self, failed: false)
        state = .closed
        delegate = nil
        idleTimer.cancel()
        context?.close(promise: nil)
    }

    func leaveIdle() {
        idleTimer.disarm()
        state = .fresh
    }

    func enterIdle(timeout: TimeAmount) {
        delegate = nil
        state = .idle
        // Keep a read pending so the pool notices when the upstream closes an idle connection.
        requestRead()
        idleTimer.arm(.keepalive, after: timeout)
    }

    // MARK: Channel events

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        readRequested = false
        switch state {
        case .tunnel:
            delegate?.upstreamTunnelData(incoming)
            return
        case .fresh, .idle, .closed:
            // Bytes nobody asked for: the connection is out of step and must not be reused.
            pool.remove(self)
            close()
            return
        case .awaitingHead, .body:
            break
        }
        if buffer == nil || buffer!.readableBytes == 0 {
            buffer = incoming
        } else {
            buffer!.writeBuffer(&incoming)
        }
        processBuffer()
    }

    private func processBuffer() {
        while var current = buffer, current.readableBytes > 0 {
            switch state {
            case .awaitingHead:
                let progress = current.withUnsafeReadableBytes { parser.findEnd($0, isRequest: false) }
                switch progress {
                case .needMoreBytes:
                    return
                case .failed(let error):
                    fail(.invalidResponse(error))
                    return
                case .complete(let length):
                    let error = current.withUnsafeReadableBytes {
                        parser.parseResponse(UnsafeRawBufferPointer(rebasing: $0[0..<length]), into: &head)
                    }
                    if let error {
                        fail(.invalidResponse(error))
                        return
                    }
                    let headBytes = current.readSlice(length: length)!
                    buffer = current
                    parser.reset()
                    if head.status == 101, !upgradeRequested {
                        // Nothing asked to switch protocols: what follows on this connection no longer lines up
                        // with any request. Refused here, for every kind of client, and the connection closed
                        // (`fail` detaches the delegate), so it can never call back into an exchange that is over.
                        fail(.unaskedUpgrade)
                        return
                    }
                    responseStarted = true
                    if head.status < 200 {
                        delegate?.upstreamResponseHead(head, bytes: headBytes)
                        if head.status == 101 { return }  // the client side switches to a tunnel
                        head.reset()
                        continue
                    }
                    responseHeadAt = Double(NIODeadline.now().uptimeNanoseconds) / 1e9
                    let framing = BodyFraming.response(head, requestWasHead: requestWasHead)
                    state = .body(BodyReader(framing))
                    delegate?.upstreamResponseHead(head, bytes: headBytes)
                    if case .body(let reader) = state, reader.isComplete { finishResponse() }
                }
            case .body(var reader):
                var index = 0
                let range: Range<Int>?
                do {
                    range = try current.withUnsafeReadableBytes { bytes throws(HTTPParseError) in
                        try reader.next(bytes, &index)
                    }
                } catch {
                    fail(.invalidResponse(error))
                    return
                }
                let consumed = current.readSlice(length: index)!
                buffer = current
                state = .body(reader)
                if let range {
                    delegate?.upstreamResponseBody(consumed.getSlice(at: consumed.readerIndex + range.lowerBound, length: range.count)!)
                }
                if reader.isComplete {
                    finishResponse()
                } else if range == nil {
                    return
                }
            default:
                return
            }
        }
    }

    private func finishResponse() {
        completedExchanges += 1
        // Bytes after the end of the response mean the upstream framed it differently from us: never reuse.
        let leftover = buffer.map { $0.readableBytes > 0 } ?? false
        let reusable = !leftover && head.isPersistent
        buffer = nil
        state = .fresh
        // A 502, 503 or 504 from the target counts against its health like a failed connection.
        pool.finished(self, failed: (502...504).contains(head.status))
        let delegate = self.delegate
        self.delegate = nil
        delegate?.upstreamResponseEnd(reusable: reusable)
    }

    private func fail(_ failure: UpstreamFailure) {
        let delegate = self.delegate
        let started = responseStarted
        // A keep-alive connection the target closed before answering is stale, not a sign of trouble (the
        // request is replayed elsewhere when it can be); anything else counts against the target.
        let stale: Bool
        if case .closedEarly = failure, !started, completedExchanges > 0 { stale = true } else { stale = false }
        pool.finished(self, failed: !stale)
        close()
        delegate?.upstreamFailed(failure, responseStarted: started)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        delegate?.upstreamReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        idleTimer.cancel()
        switch state {
        case .body(var reader):
            if reader.connectionClosed() {
                completedExchanges += 1
                pool.finished(self, failed: (502...504).contains(head.status))
                let delegate = self.delegate
                self.delegate = nil
                buffer = nil
                state = .closed
                delegate?.upstreamResponseEnd(reusable: false)
            } else {
                fail(.closedEarly)
            }
        case .awaitingHead:
            fail(.closedEarly)
        case .tunnel:
            let delegate = self.delegate
            close()
            delegate?.upstreamFailed(.closedEarly, responseStarted: true)
        case .idle, .fresh:
            pool.remove(self)
            state = .closed
        case .closed:
            break
        }
        self.context = nil
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        delegate?.upstreamWritabilityChanged(isWritable: context.channel.isWritable)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A TLS alert from the target (it refused our client certificate after the handshake, TLS 1.3 style)
        // is a definite answer, not a reset: reported as what it is, never retried.
        if let error = error as? TLSError {
            switch state {
            case .awaitingHead, .body, .tunnel:
                fail(.tlsFailed("\(error)"))
                return
            default:
                break
            }
        }
        context.close(promise: nil)
    }
}
