// SPDX-License-Identifier: Apache-2.0
import JesterMetrics
import JesterCore
import JesterHTTP2
import JesterTLS
import NIOCore

/// A client connection that speaks HTTP/2 (ALPN "h2" after TLS, or prior knowledge on plain text): one
/// nghttp2 session, one `RequestStream` per request.
///
/// Streams are translated to HTTP/1.1 for routing and upstreams (RFC 9113 §8.3 ↔ RFC 9112): the same route table,
/// matchers, pools, header edits and X-Forwarded-* as HTTP/1 clients get. Backpressure both ways goes through
/// HTTP/2 flow control: request DATA is acknowledged (WINDOW_UPDATE) only once it was handed to the upstream, and
/// upstream response bytes are read only while the stream's outgoing buffer is small, which drains as fast as the
/// client's window and socket allow. Loop-confined, like everything in a worker.
final class HTTP2Connection: ChannelInboundHandler, ClientConnection, RequestStreamConnection, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let runtime: WorkerRuntime
    let routes: ListenerRoutes
    /// The listener's metric ids, found once per connection (nil without metrics).
    let metricsListener: ListenerMetricIDs?
    let tls: TLSSessionFacts?
    let clientSubjectHeader: [UInt8]?
    private(set) var clientAddress: String
    private(set) var clientIP: IPAddressBytes?
    private let session: HTTP2Session
    private var streams: [Int32: RequestStream] = [:]
    var streamProtocol: StreamProtocol { .http2 }
    /// TLS over TCP accepts no early data: a request arrives after the handshake (or on plain text).
    var handshakeComplete: Bool { true }
    func awaitHandshake(stream id: Int64, _ resume: @escaping () -> Void) { resume() }
    private var context: ChannelHandlerContext?
    /// Bytes read before this handler took over (the preface of a prior-knowledge client).
    private var initialBytes: ByteBuffer?
    private var closing = false
    private var draining = false
    /// Closes the connection when it has had no stream for the keep-alive timeout. Holds the connection strongly;
    /// `handlerRemoved` and `channelInactive` cancel it.
    private let idleTimer = ConnectionTimer()
    private var flushScheduled = false
    /// `http.connection_request_rate`, over all of the connection's streams.
    private lazy var requestBucket = runtime.makeRequestBucket()
    private var refusedOverRate = 0

    /// The client and what it connected to, for PROXY headers to targets (`send_proxy_protocol`).
    private(set) var proxyAddresses: ProxyProtocol.Addresses?

    init(
        runtime: WorkerRuntime, listener: String, clientAddress: String, tls: TLSSessionFacts?, initialBytes: ByteBuffer?,
        proxyAddresses: ProxyProtocol.Addresses? = nil
    ) throws {
        self.proxyAddresses = proxyAddresses
        self.runtime = runtime
        routes = runtime.routeTables[listener] ?? .empty
        metricsListener = runtime.metrics?.ids.listeners[listener]
        self.tls = tls
        clientSubjectHeader = runtime.clientSubjectHeaders[listener]
        self.clientAddress = clientAddress
        clientIP = IPAddressBytes(clientAddress)
        self.initialBytes = initialBytes
        var settings = HTTP2Session.Settings()
        settings.maxConcurrentStreams = UInt32(runtime.configuration.http.http2MaxConcurrentStreams)
        settings.maxHeaderListSize = UInt32(runtime.configuration.http.maxRequestHeadSize)
        session = try HTTP2Session(role: .server, settings: settings)
    }

    // MARK: Channel events

    /// Takes over from the HTTP/1 handler, which counted the connection (see `WorkerRuntime.transfer`).
    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        idleTimer.setup(queue: runtime.timers) { _ in self.idleTimeoutPassed() }
        if runtime.isDraining { drain() }
        if let bytes = initialBytes {
            initialBytes = nil
            received(bytes)
        }
        flushOutput()
        armIdleTimer()
        context.read()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idleTimer.cancel()
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        runtime.counters.bytesIn &+= bytes.readableBytes
        received(bytes)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        for stream in streams.values { stream.flushUpstream() }
        flushOutput()
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        guard context.channel.isWritable else { return }
        flushOutput()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closing = true
        idleTimer.cancel()
        for stream in streams.values { stream.clientGone() }
        if let metricsListener {
            runtime.metrics?.streamClosed(listener: metricsListener, protocol: .http2, count: streams.count)
        }
        streams = [:]
        runtime.unregister(self, clientAddress: clientAddress)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            // HTTP/2 needs both directions; a half-closed client is gone.
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    // MARK: Draining

    /// The drain timeout passed: every stream still under way is logged as cut, and the connection closes.
    /// Returns how many requests were cut.
    func cut() -> Int {
        let cut = streams.values.reduce(0) { $0 + $1.cut() }
        if let metricsListener {
            runtime.metrics?.streamClosed(listener: metricsListener, protocol: .http2, count: streams.count)
        }
        streams = [:]
        closing = true
        context?.close(promise: nil)
        return cut
    }

    /// A graceful GOAWAY now (streams in flight finish); the final one a second later; the connection closes
    /// when the last stream ends (RFC 9113 §6.8).
    func drain() {
        guard !draining, let context else { return }
        draining = true
        session.announceShutdown()
        flushOutput()
        context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(1)) { [self] in
            self.session.goAway()
            self.flushOutput()
            self.closeIfIdle()
        }
    }

    // MARK: Session

    private func received(_ bytes: ByteBuffer) {
        switch session.receive(bytes) {
        case .failure(let error):
            runtime.logWarning("HTTP/2 connection error", metadata: ["client": "\(clientAddress)", "error": "\(error)"])
            flushOutput()
            closing = true
            context?.close(promise: nil)
        case .success(let events):
            for event in events { handle(event) }
        }
    }

    private func handle(_ event: HTTP2Event) {
        switch event {
        case .headers(let id, let fields, let endStream):
            idleTimer.disarm()
            let stream = RequestStream(connection: self, id: Int64(id))
            streams[id] = stream
            if let metricsListener { runtime.metrics?.streamOpened(listener: metricsListener, protocol: .http2) }
            stream.start(fields: fields, endStream: endStream)
        case .data(let id, let bytes):
            if let stream = streams[id] {
                stream.requestData(bytes)
            } else {
                session.consumed(stream: id, count: bytes.readableBytes)
            }
        case .endStream(let id):
            streams[id]?.requestEnded()
        case .trailers(let id, let fields):
            // Forwarded to HTTP/2 upstreams; dropped for HTTP/1.1 ones (RFC 9110 §6.5.1 lets a proxy do that).
            streams[id]?.requestEnded(trailers: fields)
        case .streamClosed(let id, let errorCode):
            if let stream = streams.removeValue(forKey: id) {
                if let metricsListener { runtime.metrics?.streamClosed(listener: metricsListener, protocol: .http2) }
                stream.closed(errorCode: UInt64(errorCode))
            }
            closeIfIdle()
            if streams.isEmpty { armIdleTimer() }
        case .goAway:
            break
        }
    }

    /// Asks for `flushOutput` at the end of this event-loop tick: the events of one upstream read (a response
    /// head, its body, its end) and of many streams then leave in one TLS record batch and one write.
    func scheduleFlush() {
        guard !flushScheduled, let eventLoop = context?.eventLoop else { return }
        flushScheduled = true
        eventLoop.assumeIsolated().execute { [self] in
            self.flushScheduled = false
            self.flushOutput()
        }
    }

    /// Writes what the session has to send, while the socket takes it; the rest waits in nghttp2 and in the
    /// streams' buffers, which pause their upstreams.
    func flushOutput() {
        guard let context, context.channel.isActive else { return }
        var wrote = false
        while context.channel.isWritable, let bytes = session.takeOutput(allocator: context.channel.allocator) {
            runtime.counters.bytesOut &+= bytes.readableBytes
            context.write(wrapOutboundOut(bytes), promise: nil)
            wrote = true
        }
        if wrote { context.flush() }
        for event in session.takeEvents() { handle(event) }
        for stream in streams.values { stream.resumeUpstreamIfRoom() }
        closeIfSessionEnded()
    }

    /// Closes the connection once nghttp2 wants neither to read nor to write: after a connection error (its
    /// GOAWAY is out), or after either side's GOAWAY with no stream left. Without this the socket stayed open
    /// until `keepalive_timeout`, although nothing more could happen on it.
    private func closeIfSessionEnded() {
        guard !closing, !session.isActive, let context else { return }
        closing = true
        context.close(promise: nil)
    }

    private func closeIfIdle() {
        guard draining, streams.isEmpty, !closing else { return }
        closing = true
        flushOutput()
        context?.close(promise: nil)
    }

    private func armIdleTimer() {
        guard context != nil, !closing else { return }
        idleTimer.arm(.keepalive, after: runtime.timeouts.keepalive)
    }

    private func idleTimeoutPassed() {
        guard streams.isEmpty, !closing else { return }
        session.goAway()
        flushOutput()
        closing = true
        context?.close(promise: nil)
    }

    // MARK: For streams

    /// One request's worth of `http.connection_request_rate`; a client far over it (twice the burst refused) is
    /// sent away with GOAWAY ENHANCE_YOUR_CALM.
    func takeRequestToken() -> Bool {
        guard requestBucket != nil else { return true }
        if requestBucket!.take(now: runtime.monotonicSeconds) { return true }
        refusedOverRate += 1
        runtime.logWarning("request rate limit", metadata: ["client": "\(clientAddress)"])
        if Double(refusedOverRate) > 2 * requestBucket!.burst, !closing {
            session.goAway(errorCode: 0xB)
            flushOutput()
            closing = true
            context?.close(promise: nil)
        }
        return false
    }


    func respond(_ id: Int64, fields: [HTTP2Field], hasBody: Bool) {
        session.respond(stream: Int32(truncatingIfNeeded: id), fields: fields, hasBody: hasBody)
    }

    func respond(_ id: Int64, headers: HTTP2HeaderBlock, hasBody: Bool) {
        session.respond(stream: Int32(truncatingIfNeeded: id), headers: headers, hasBody: hasBody)
    }

    func respondInterim(_ id: Int64, status: Int) {
        session.respondInterim(stream: Int32(truncatingIfNeeded: id), status: status)
    }

    func sendBody(_ id: Int64, _ bytes: ByteBuffer) {
        session.sendBody(stream: Int32(truncatingIfNeeded: id), bytes)
    }

    func finishBody(_ id: Int64, trailers: [HTTP2Field]) {
        session.finishBody(stream: Int32(truncatingIfNeeded: id), trailers: trailers)
    }

    func bufferedBody(_ id: Int64) -> Int {
        session.bufferedBody(stream: Int32(truncatingIfNeeded: id))
    }

    func consumed(_ id: Int64, count: Int) {
        session.consumed(stream: Int32(truncatingIfNeeded: id), count: count)
    }

    /// A response under way will not be completed: what of it was handed over still goes out, then the stream
    /// is reset (INTERNAL_ERROR), so the client sees the part that came and that it is incomplete.
    func abortResponse(_ id: Int64) {
        session.abortBody(stream: Int32(truncatingIfNeeded: id))
        flushOutput()
    }

    func resetWithInternalError(_ id: Int64) {
        session.reset(stream: Int32(truncatingIfNeeded: id), errorCode: 2)
        flushOutput()
    }
}
