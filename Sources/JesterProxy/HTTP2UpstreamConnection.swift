// SPDX-License-Identifier: Apache-2.0
import JesterHTTP2
import JesterTLS
import NIOCore

/// What a stream to an HTTP/2 upstream reports back.
protocol HTTP2UpstreamStreamDelegate: AnyObject {
    func upstreamHeaders(_ fields: [HTTP2Field], endStream: Bool)
    func upstreamData(_ bytes: ByteBuffer)
    func upstreamTrailers(_ fields: [HTTP2Field])
    func upstreamEnded()
    /// The stream or the connection failed; `reason` is for the log.
    func upstreamStreamFailed(_ reason: String)
    /// The upstream took request body bytes off the stream's buffer (its window opened).
    func upstreamDrained()
    /// A batch of reads from the connection ended (after any `upstreamData` of this batch).
    func upstreamReadCycleEnded()
}

/// A connection to an HTTP/2 target (`protocol = "h2"`: prior knowledge on plain TCP, ALPN h2 over TLS) that
/// carries many requests at once, one stream each, as gRPC needs. Shared by the worker's requests to that
/// target; flow control works as downstream: received response bytes are acknowledged once the client took them.
final class HTTP2UpstreamConnection: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let pool: UpstreamPool
    let target: Int
    private let session: HTTP2Session
    private var streams: [Int32: any HTTP2UpstreamStreamDelegate] = [:]
    private var context: ChannelHandlerContext?
    private var goingAway = false
    private var flushScheduled = false
    /// Streams this worker opens on one connection at most (the target may advertise fewer; nghttp2 then queues).
    static let maxStreams = 100

    /// Whether frames may be written: at once on plain TCP, after the handshake over TLS (the connection preface
    /// must be the first thing inside TLS).
    private var ready: Bool

    init(pool: UpstreamPool, target: Int, overTLS: Bool) throws {
        self.pool = pool
        self.target = target
        ready = !overTLS
        session = try HTTP2Session(role: .client)
    }

    /// Whether another stream may go on this connection.
    var isUsable: Bool {
        guard let context, context.channel.isActive else { return false }
        return !goingAway && streams.count < Self.maxStreams
    }

    var openStreams: Int { streams.count }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        flushOutput()
        context.read()
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is TLSEstablished {
            ready = true
            flushOutput()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch session.receive(unwrapInboundIn(data)) {
        case .failure(let error):
            fail("HTTP/2 connection error: \(error)")
            context.close(promise: nil)
        case .success(let events):
            for event in events { handle(event) }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushOutput()
        for delegate in streams.values { delegate.upstreamReadCycleEnded() }
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { flushOutput() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail("upstream closed the HTTP/2 connection")
        pool.removeHTTP2(self)
        self.context = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    // MARK: Streams

    /// Opens a stream for a request; nil when the session refuses (the connection is going away).
    func open(fields: [HTTP2Field], hasBody: Bool, delegate: any HTTP2UpstreamStreamDelegate) -> Int32? {
        guard isUsable, let stream = session.request(fields: fields, hasBody: hasBody) else { return nil }
        streams[stream] = delegate
        scheduleFlush()
        return stream
    }

    func sendBody(_ stream: Int32, _ bytes: ByteBuffer) {
        session.sendBody(stream: stream, bytes)
        scheduleFlush()
    }

    func finishBody(_ stream: Int32, trailers: [HTTP2Field]) {
        session.finishBody(stream: stream, trailers: trailers)
        scheduleFlush()
    }

    func bufferedBody(_ stream: Int32) -> Int {
        session.bufferedBody(stream: stream)
    }

    /// Response bytes of `stream` reached the client: the target may send that many more.
    func consumed(_ stream: Int32, count: Int) {
        session.consumed(stream: stream, count: count)
        scheduleFlush()
    }

    /// The client went away: the target stops working on the stream (RST_STREAM CANCEL). `failed`: the stream's
    /// answer counts against the target (a 502-504 thrown away for a retry).
    func cancel(_ stream: Int32, failed: Bool = false) {
        guard streams.removeValue(forKey: stream) != nil else { return }
        session.reset(stream: stream, errorCode: 8)
        pool.http2StreamEnded(self, failed: failed)
        scheduleFlush()
    }

    private func handle(_ event: HTTP2Event) {
        switch event {
        case .headers(let stream, let fields, let endStream):
            streams[stream]?.upstreamHeaders(fields, endStream: endStream)
        case .data(let stream, let bytes):
            if let delegate = streams[stream] {
                delegate.upstreamData(bytes)
            } else {
                session.consumed(stream: stream, count: bytes.readableBytes)
            }
        case .trailers(let stream, let fields):
            streams[stream]?.upstreamTrailers(fields)
        case .endStream(let stream):
            streams[stream]?.upstreamEnded()
        case .streamClosed(let stream, let errorCode):
            guard let delegate = streams.removeValue(forKey: stream) else { return }
            pool.http2StreamEnded(self, failed: errorCode != 0)
            if errorCode != 0 { delegate.upstreamStreamFailed("upstream reset the stream (error \(errorCode))") }
        case .goAway(let lastStream, _):
            goingAway = true
            // Streams the target will not process fail now (RFC 9113 §6.8); they were never worked on.
            for (stream, delegate) in streams where stream > lastStream {
                streams[stream] = nil
                pool.http2StreamEnded(self, failed: false)
                delegate.upstreamStreamFailed("upstream refused the stream (GOAWAY)")
            }
        }
    }

    private func fail(_ reason: String) {
        let failed = streams
        streams = [:]
        for delegate in failed.values {
            pool.http2StreamEnded(self, failed: true)
            delegate.upstreamStreamFailed(reason)
        }
    }

    func scheduleFlush() {
        guard !flushScheduled, let eventLoop = context?.eventLoop else { return }
        flushScheduled = true
        eventLoop.assumeIsolated().execute { [self] in
            self.flushScheduled = false
            self.flushOutput()
        }
    }

    private func flushOutput() {
        guard ready, let context, context.channel.isActive else { return }
        var wrote = false
        while context.channel.isWritable, let bytes = session.takeOutput(allocator: context.channel.allocator) {
            context.write(wrapOutboundOut(bytes), promise: nil)
            wrote = true
        }
        if wrote { context.flush() }
        for event in session.takeEvents() { handle(event) }
        for delegate in streams.values { delegate.upstreamDrained() }
    }

    func close() {
        context?.close(promise: nil)
    }
}
