// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterCore
import JesterMetrics
import JesterTLS
import NIOCore

/// One client connection: parses requests in place, routes them, and either answers locally or streams the
/// exchange with an upstream, one request at a time so pipelined requests are answered in order.
///
/// Reads are explicit (autoRead off): the next bytes are read only when there is somewhere for them to go (a new
/// request head, or a request body the upstream socket can take), so a fast client cannot make Jester buffer an
/// upload, and a pipelining client waits in its own socket buffer. Loop-confined, hence `@unchecked Sendable`.
final class DownstreamConnection: ClientConnection, UpstreamWaiter, ChannelInboundHandler, RemovableChannelHandler,
    @unchecked Sendable
{
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Phase {
        /// Waiting for (the rest of) a request head.
        case awaitingHead
        /// The head is in; reading the start of the body for routes that match on it (`match_body`).
        case awaitingBody
        /// A request filter waits for an answer (a Redis round trip); nothing is read meanwhile.
        case filtering
        /// A request is being proxied.
        case proxying
        /// A WebSocket (or other allowed upgrade) tunnel to the upstream.
        case tunnel
        /// The connection is being closed; input is ignored.
        case closing
    }

    let runtime: WorkerRuntime
    let routes: ListenerRoutes
    /// The client's address as bytes, for routes that match client networks.
    var clientIP: IPAddressBytes?
    var context: ChannelHandlerContext!
    var phase = Phase.awaitingHead
    /// Received bytes not yet consumed: the next request head, or request body bytes the upstream cannot take yet.
    var buffer: ByteBuffer?
    var parser: HTTPHeadParser
    /// The current request's decisions (route, filters, upstream choice, retries, log), shared with HTTP/2.
    var exchange = RequestExchange()
    var clientAddress = "-"
    /// Keep-alive and pipelining: whether another request may follow, what responses say about it, what happens
    /// between requests (a pure state machine, `HTTP1KeepAlive`).
    var persistence: HTTP1KeepAlive
    let timer = ConnectionTimer()
    var exchangeDeadline: ConnectionTimer?

    // The current exchange's framing and I/O (its decisions are in `exchange`).
    var upstream: (any ExchangeUpstream)?
    var requestHead: ByteBuffer?
    var requestBody = BodyReader(.none)
    var requestBodyBytes: Int64 = 0
    var isChunkedUpstream = false
    var responseStarted = false
    var responseFraming = BodyFraming.none
    var rechunkResponse = false
    var isUpgrade = false
    /// Bytes were written to the client since the last flush.
    var unflushed = false
    /// The last piece written, not yet handed to the channel: a small piece that follows is copied into its
    /// spare room (a response head is allocated with room for a small body), so a small response goes out as
    /// one buffer, one channel write and one `write` call instead of a `writev` of two.
    var unsent: ByteBuffer?
    /// A read was asked of the channel and has not delivered yet (see `requestRead`).
    var readRequested = false
    /// The client socket's writability, as the last `channelWritabilityChanged` said.
    var clientIsWritable = true
    /// `http.connection_request_rate`: requests this connection may still send.
    lazy var requestBucket = runtime.makeRequestBucket()
    /// The head of a request whose body is being peeked at (phase `.awaitingBody`).
    var pendingHead: ByteBuffer?
    /// Phase `.awaitingBody` holds the body back for the route's filters (`RequestFilter.bodyLimit`), after the
    /// route was chosen, rather than for body matchers before.
    var awaitingFilterBody = false
    /// What the TLS handshake negotiated; nil on a plain-text listener.
    var tls: TLSSessionFacts?
    var tlsRouteFacts: TLSRouteFacts?
    /// The client and the address it connected to, as a trusted balancer's PROXY header named them.
    var proxiedClient: ProxyProtocol.Addresses?
    /// The header that carries a verified client certificate's subject upstream (`client_subject_header`).
    let clientSubjectHeader: [UInt8]?

    /// The listener's name, and whether it serves HTTP/2 (a client that negotiates or starts with it is handed
    /// to an `HTTP2Connection`).
    let listener: String
    let servesHTTP2: Bool
    /// `http2_only`: the connection is HTTP/2 from its first byte (or its handshake), whatever it sends.
    let servesOnlyHTTP2: Bool
    /// The listener's metric ids, found once per connection (nil without metrics).
    let metricsListener: ListenerMetricIDs?

    /// A connection accepted on `listener`, whose per-listener facts (`WorkerRuntime.listenerFacts`) the
    /// listener's accept path looked up once.
    init(runtime: WorkerRuntime, listener: WorkerRuntime.ListenerFacts) {
        self.runtime = runtime
        self.listener = listener.name
        servesHTTP2 = listener.servesHTTP2
        servesOnlyHTTP2 = listener.servesOnlyHTTP2
        metricsListener = runtime.metrics?.ids.listeners[listener.name]
        routes = listener.routes
        parser = HTTPHeadParser(limits: runtime.parserLimits)
        clientSubjectHeader = listener.clientSubjectHeader
        persistence = HTTP1KeepAlive(maxRequests: runtime.configuration.http.keepaliveRequests)
    }

    convenience init(runtime: WorkerRuntime, listener: String) {
        self.init(runtime: runtime, listener: runtime.listenerFacts(listener))
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    /// The context holds this handler and this handler holds the context: dropping it here, when the closed
    /// channel's pipeline lets go of its handlers, is what frees the pair. (Without it every connection leaked.)
    func handlerRemoved(context: ChannelHandlerContext) {
        phase = .closing
        timer.cancel()
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        clientAddress = Self.text(of: context.channel.remoteAddress)
        if routes.needsClientAddress { clientIP = IPAddressBytes(clientAddress) }
        guard runtime.register(self, clientAddress: clientAddress) else {
            phase = .closing
            context.close(promise: nil)
            return
        }
        // Strong on purpose (see ConnectionTimer); channelInactive cancels the timer, which breaks the cycle.
        timer.setup(queue: runtime.timers) { purpose in self.timerFired(purpose) }
        armIdleTimer(.keepaliveTimeout)
        requestRead()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer.cancel()
        exchangeDeadline?.cancel()
        if let upstream {
            // The client left mid-exchange: the upstream connection is out of step, never reuse it.
            self.upstream = nil
            upstream.close()
        }
        if exchange.isUnderWay, !exchange.isLogged {
            if phase != .closing {
                // The client left mid-exchange (nginx's 499 when nothing was answered yet), timed to now.
                if exchange.log.failure.isEmpty {
                    exchange.log.failure = responseStarted
                        ? "client closed the connection during the response" : "client closed the connection"
                }
                finishLog(status: responseStarted ? exchange.log.status : 499)
            } else {
                // Jester cut it (its failure says why); status 0 when nothing was answered.
                finishLog(status: exchange.log.status)
            }
        }
        // A retried request's budget slot goes back when the client leaves mid-retry too, and a filter still
        // waiting is let go.
        exchange.end()
        phase = .closing
        runtime.unregister(self, clientAddress: clientAddress)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        readRequested = false
        runtime.counters.bytesIn &+= incoming.readableBytes
        switch phase {
        case .closing:
            return
        case .tunnel:
            upstream?.writeTunnel(incoming)
            return
        case .awaitingHead, .awaitingBody, .proxying, .filtering:
            break
        }
        if buffer == nil || buffer!.readableBytes == 0 {
            buffer = incoming
        } else {
            buffer!.writeBuffer(&incoming)
        }
        process()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        upstream?.flush()
        flushClient()
        if wantsInput { requestRead() }
    }

    /// Asks the channel for the next read, unless a read is already pending: asking again would change nothing
    /// and still walk NIO's channel state checks (a dozen reference-count operations), on every request.
    func requestRead() {
        guard !readRequested else { return }
        readRequested = true
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        clientIsWritable = context.channel.isWritable
        if clientIsWritable {
            if timer.isArmed(for: .send) {
                timer.disarm()
                // Reading from the upstream again: its pauses count from now.
                if responseStarted, phase == .proxying, let read = exchange.route?.readTimeout {
                    timer.arm(.upstreamRead, after: read)
                }
            }
            if responseStarted || phase == .tunnel { upstream?.read() }
        } else if responseStarted, phase == .proxying {
            // The client stopped taking bytes: it has send_timeout to take some before it is dropped.
            timer.arm(.send, after: runtime.timeouts.send)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? TLSError {
            // Scanners, clients that distrust the certificate, plain HTTP sent to the TLS port: common, so
            // counted, and logged at debug with a summary warning at most once a minute.
            runtime.counters.tlsHandshakeFailures &+= 1
            runtime.handshakeFailures.failed(client: clientAddress, error: error)
            if tls == nil, let ids = metricsListener { runtime.metrics?.tlsHandshake(listener: ids, failed: true) }
        }
        close()
    }

    /// The client shut down its sending side. A request already complete is still answered (then the connection
    /// closes); anything that still needed client bytes (a partial head, a body, a tunnel) cannot finish.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let proxied = event as? ProxiedClient {
            // The load balancer's PROXY header named the real client: limits, logs, routing and X-Forwarded-For
            // use it from now on.
            guard runtime.reassign(from: clientAddress, to: proxied.address) else {
                phase = .closing
                context.close(promise: nil)
                return
            }
            clientAddress = proxied.address
            proxiedClient = proxied.addresses
            if routes.needsClientAddress { clientIP = IPAddressBytes(clientAddress) }
            return
        }
        if let established = event as? TLSEstablished {
            tls = established.facts
            if let metricsListener { runtime.metrics?.tlsHandshake(listener: metricsListener, failed: false) }
            if established.facts.applicationProtocol == "h2" || servesOnlyHTTP2 {
                switchToHTTP2()
                return
            }
            tlsRouteFacts = TLSRouteFacts(
                serverName: established.facts.serverName, clientSubject: established.facts.clientCertificateSubject)
            return
        }
        guard case ChannelEvent.inputClosed = event else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        persistence.clientInputClosed()
        switch phase {
        case .proxying where requestBody.isComplete && responseStarted:
            break  // finishExchange closes after the response
        case .proxying where requestBody.isComplete:
            // Nothing answered yet: the client gave up waiting (a half-close and a close look the same here, and
            // HTTP/1.1 clients half-close only to leave, so, like nginx, Jester stops the upstream's work too).
            exchange.log.failure = "client closed the connection before the response"
            finishLog(status: 499)
            close()
        case .filtering where BodyFraming.request(exchange.head) == .none:
            break  // answered when the filter decides, then closed
        case .awaitingHead where buffer?.readableBytes ?? 0 > 0:
            // A partial head that can never be completed.
            respondWithError(400, closing: true)
        default:
            close()
        }
    }

    /// Whether to read more from the client now.
    var wantsInput: Bool {
        switch phase {
        case .awaitingHead, .awaitingBody: return true
        case .proxying:
            if requestBody.isComplete {
                // Keep a read pending while the response comes (a pipelined request is buffered, bounded): NIO
                // would otherwise drop read interest after every request and restore it after every response,
                // two epoll_ctl calls per request. It also notices a client that leaves mid-exchange.
                return persistence.readsAhead(bufferedBytes: buffer?.readableBytes ?? 0)
            }
            return upstream?.isWritable ?? false
        case .tunnel: return upstream?.isWritable ?? false
        case .filtering, .closing: return false
        }
    }

    // MARK: HTTP/2

    static let http2Preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    /// Hands the connection to an `HTTP2Connection` (ALPN chose h2, or the client sent the HTTP/2 preface), with
    /// whatever was read already.
    func switchToHTTP2() {
        guard let context else { return }
        phase = .closing
        timer.cancel()
        let pending = buffer
        buffer = nil
        // Whichever handler holds the connection's place in the worker's count when something fails.
        var counted: any ClientConnection = self
        do {
            let connection = try HTTP2Connection(
                runtime: runtime, listener: listener, clientAddress: clientAddress, tls: tls, initialBytes: pending,
                proxyAddresses: proxyAddresses())
            runtime.transfer(from: self, to: connection)
            counted = connection
            try context.pipeline.syncOperations.addHandler(connection, position: .after(self))
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        } catch {
            runtime.logWarning("cannot start HTTP/2", metadata: ["client": "\(clientAddress)", "error": "\(error)"])
            runtime.unregister(counted, clientAddress: clientAddress)
            context.close(promise: nil)
        }
    }

    // MARK: Draining

    /// The worker drains: a busy connection ends after its current exchange (with `Connection: close`); an idle
    /// one is closed at a random moment within the next second.
    ///
    /// Not at once: closing an idle keep-alive connection races with a request the client may be sending on it
    /// right now, which the client then sees fail ("connection reset", "closed without response"). A client
    /// that is actively using the connection sends its next request within that window and gets it answered with
    /// `Connection: close`; only a truly idle one is closed, and the jitter spreads the reconnects of many idle
    /// clients instead of sending them all to the new generation in one burst. A connection accepted but not yet
    /// read gets the same treatment: its client has likely sent a request already.
    ///
    /// A busy connection is left alone here: its response head, when written, says `Connection: close` (see
    /// `writeConnectionField`); one whose head already went out without it was promised another request, so it
    /// goes idle after the exchange and closes the same jittered way.
    /// The drain timeout passed: a request still under way is logged as cut (status 0 when nothing was
    /// answered), and the connection closes. Returns how many requests were cut (0 or 1).
    func cut() -> Int {
        guard phase != .closing else { return 0 }
        let underWay = exchange.isUnderWay && !exchange.isLogged
        if underWay {
            exchange.log.failure = "cut at the drain timeout"
            finishLog(status: responseStarted ? exchange.log.status : 0)
        }
        close()
        return underWay ? 1 : 0
    }

    func drain() {
        guard let idle = persistence.drainStarted(idle: phase == .awaitingHead && buffer?.readableBytes ?? 0 == 0)
        else { return }
        armIdleTimer(idle)
    }

    /// How long an idle connection waits for its next request: the keep-alive timeout, or, in a draining worker,
    /// a random moment within the next second.
    func armIdleTimer(_ limit: HTTP1KeepAlive.IdleLimit) {
        switch limit {
        case .keepaliveTimeout: timer.arm(.keepalive, after: runtime.timeouts.keepalive)
        case .drainGrace: timer.arm(.keepalive, after: .nanoseconds(Int64.random(in: 100_000_000...1_000_000_000)))
        }
    }

    /// The client's address as text, for X-Forwarded-For and the logs; IPv4 without `inet_ntop`.
    static func text(of address: SocketAddress?) -> String {
        if case .v4(let v4) = address { return IPAddressBytes.dottedQuad(UInt32(bigEndian: v4.address.sin_addr.s_addr)) }
        return address?.ipAddress ?? "-"
    }

    // MARK: Requests

    func process() {
        while phase == .awaitingHead || phase == .awaitingBody || phase == .proxying {
            guard var current = buffer, current.readableBytes > 0 else { return }
            if phase == .proxying {
                guard forwardRequestBody() else { return }
                continue
            }
            if phase == .awaitingBody {
                // Peeked, not consumed: the body is forwarded from the buffer as usual once the route is chosen (and
                // its filters decided). For filters, one byte past their limit tells a body over it.
                let limit = awaitingFilterBody ? exchange.filterBodyLimit + 1 : routes.bodyPeekLimit
                let outcome: Result<BodyPeek?, HTTPParseError> = current.withUnsafeReadableBytes { raw in
                    Result { () throws(HTTPParseError) in
                        try BodyPeek.peek(raw, framing: BodyFraming.request(exchange.head), limit: limit)
                    }
                }
                guard case .success(let peeked) = outcome else {
                    if case .failure(let error) = outcome {
                        phase = .awaitingHead
                        awaitingFilterBody = false
                        rejectRequest(error)
                    }
                    return
                }
                guard let peeked else {
                    // client_body_timeout is the longest pause between two reads, here too.
                    timer.arm(.body, after: runtime.timeouts.body)
                    return
                }
                if awaitingFilterBody {
                    awaitingFilterBody = false
                    phase = .awaitingHead
                    filterBodyArrived(peeked)
                    continue
                }
                guard let headBytes = pendingHead else { return }
                pendingHead = nil
                phase = .awaitingHead
                startRequest(headBytes, body: peeked, begun: true)
                continue
            }
            if servesOnlyHTTP2, tls == nil, persistence.requestsStarted == 0, exchange.route == nil {
                // http2_only: the session checks the preface, and ends the connection when it is not one.
                switchToHTTP2()
                return
            }
            if persistence.requestsStarted == 0, servesHTTP2, tls == nil, exchange.route == nil {
                // HTTP/2 with prior knowledge (RFC 9113 §3.3): the connection preface instead of a request line.
                let seen = min(current.readableBytes, Self.http2Preface.count)
                let matches = current.withUnsafeReadableBytes { $0.prefix(seen).elementsEqual(Self.http2Preface.prefix(seen)) }
                if matches {
                    if seen == Self.http2Preface.count { switchToHTTP2() }
                    return
                }
            }
            let progress = current.withUnsafeReadableBytes { parser.findEnd($0, isRequest: true) }
            switch progress {
            case .needMoreBytes:
                // The header timeout runs from the first read that left a head incomplete: a head that arrives
                // whole (nearly all of them) never arms it, which saves a clock read per request.
                if exchange.route == nil, !timer.isArmed(for: .header) {
                    timer.arm(.header, after: runtime.timeouts.header)
                }
                return
            case .failed(let error):
                rejectRequest(error)
                return
            case .complete(let length):
                exchange.head.reset()
                let error = current.withUnsafeReadableBytes {
                    parser.parseRequest(UnsafeRawBufferPointer(rebasing: $0[0..<length]), into: &exchange.head)
                }
                let headBytes = current.readSlice(length: length)!
                buffer = current
                parser.reset()
                if let error {
                    exchange.begin(bytes: headBytes, client: clientAddress, runtime: runtime, secure: tls != nil)
                    rejectRequest(error)
                    return
                }
                if routes.bodyPeekLimit > 0, BodyFraming.request(exchange.head) != .none {
                    // Some route of this listener matches on the body: read its start before choosing. (The
                    // request's record starts now: a body that never comes is logged with its request.)
                    exchange.begin(bytes: headBytes, client: clientAddress, runtime: runtime, secure: tls != nil)
                    pendingHead = headBytes
                    phase = .awaitingBody
                    timer.disarm()
                    timer.arm(.body, after: runtime.timeouts.body)
                    if exchange.head.expectsContinue, exchange.head.version == .http1_1 {
                        // The client waits for this before it sends the body we need to see.
                        write(ByteBuffer(staticString: "HTTP/1.1 100 Continue\r\n\r\n"))
                        flushClient()
                    }
                    continue
                }
                startRequest(headBytes, body: routes.bodyPeekLimit > 0 ? .empty : nil)
            }
        }
    }

    /// `begun`: the exchange began already (when the head came, before body matchers waited for the body).
    func startRequest(_ headBytes: ByteBuffer, body: BodyPeek? = nil, begun: Bool = false) {
        timer.disarm()
        runtime.counters.requests &+= 1
        if !begun { exchange.begin(bytes: headBytes, client: clientAddress, runtime: runtime, secure: tls != nil) }
        persistence.requestStarted(
            persistent: exchange.head.isPersistent, isHTTP10: exchange.head.version == .http1_0,
            draining: runtime.isDraining)
        let withinRate = requestBucket == nil || requestBucket!.take(now: runtime.monotonicSeconds)
        if let status = exchange.preRouteRefusal(runtime: runtime, withinConnectionRate: withinRate) {
            // (A client over its request rate, a pipelining or keep-alive flood, is also disconnected.)
            if !withinRate { runtime.logWarning("request rate limit", metadata: ["client": "\(clientAddress)"]) }
            respondWithError(status, closing: true)
            return
        }
        let framing = BodyFraming.request(exchange.head)
        switch exchange.chooseRoute(
            in: routes, client: clientIP, tls: tlsRouteFacts, body: body, clientAddress: clientAddress, runtime: runtime)
        {
        case .refuse(let status, let reason):
            if !reason.isEmpty { exchange.log.failure = reason }
            // (An unread body ends the connection; 413 always does.)
            respondWithError(status, closing: status == 413 || framing != .none)
            return
        case .local(let response):
            respond(response, closing: framing != .none)
            return
        case .respond, .proxy:
            break
        }
        guard exchange.hasFilters else {
            // (Most routes: no closure made, no allocation.)
            filtersDecided(.proceed)
            return
        }
        if exchange.filterBodyLimit > 0, framing != .none {
            // A filter reads the body (the pre-upstream phase): it is held back, whole, before the filters run. The
            // body matchers' peek is it when that saw all of it.
            if let body, body.isComplete, body.bytes.count <= exchange.filterBodyLimit {
                runFilters(body: body.bytes)
                return
            }
            if let length = exchange.head.contentLength, length > exchange.filterBodyLimit {
                filterBodyArrived(BodyPeek(bytes: [], isComplete: false))
                return
            }
            awaitingFilterBody = true
            phase = .awaitingBody
            timer.arm(.body, after: runtime.timeouts.body)
            // (Sent already when body matchers waited for the body: `body` is their peek.)
            if body == nil, exchange.head.expectsContinue, exchange.head.version == .http1_1 {
                write(ByteBuffer(staticString: "HTTP/1.1 100 Continue\r\n\r\n"))
                flushClient()
            }
            return
        }
        runFilters(body: nil)
    }

    /// The body the route's filters read is all here (or over their limit: 413, and it is not read further).
    func filterBodyArrived(_ body: BodyPeek) {
        timer.disarm()
        guard body.isComplete, body.bytes.count <= exchange.filterBodyLimit else {
            exchange.log.failure = "request body larger than \(exchange.filterBodyLimit) bytes, the most its filters read"
            respondWithError(413, closing: true)
            return
        }
        runFilters(body: body.bytes)
    }

    /// The route's filters run (on the head, and the body when one of them reads it), then `filtersDecided`.
    func runFilters(body: [UInt8]?) {
        guard let verdict = exchange.runFilters(
            clientAddress: clientAddress, clientIP: clientIP, tls: tls, body: body, runtime: runtime)
        else {
            awaitFilters()
            return
        }
        filtersDecided(verdict)
    }

    /// A filter waits (a Redis round trip): nothing more is read until it decides.
    private func awaitFilters() {
        phase = .filtering
        exchange.whenFiltersDecide { [weak self] verdict in self?.filtersResumed(verdict) }
    }

    /// A filter that waited decided (on the event loop, outside any read): carry on, then flush and read as the
    /// end of a read cycle would.
    func filtersResumed(_ verdict: FilterVerdict) {
        guard phase == .filtering, context != nil else { return }
        phase = .awaitingHead
        // (A re-resolve pass may have moved the request to a route whose filters wait in turn.)
        guard let verdict = exchange.filtersFinished(verdict, runtime: runtime) else {
            awaitFilters()
            return
        }
        filtersDecided(verdict)
        upstream?.flush()
        flushClient()
        if wantsInput { requestRead() }
    }

    /// The request filters decided: answer as they say, or carry out the route's action.
    func filtersDecided(_ verdict: FilterVerdict) {
        let framing = BodyFraming.request(exchange.head)
        switch verdict {
        case .proceed:
            break
        case .respond(let response, _):
            // The body is not read: a request with one ends the connection.
            respond(response, closing: framing != .none)
            return
        case .fail(let status, _):
            respondWithError(status, closing: framing != .none)
            return
        }
        guard let matched = exchange.route, let headBytes = exchange.headBytes else { return }
        switch matched.action {
        case .respond(let responseHead, let body):
            // A local answer does not read the request body, so a request with one ends the connection.
            if framing != .none { persistence.endAfterExchange() }
            // One buffer for the whole answer (the rendered head is shared by every connection; its copy gets
            // this connection's Connection field).
            var out = runtime.allocator.buffer(capacity: responseHead.readableBytes + 32 + body.readableBytes)
            out.writeImmutableBuffer(responseHead)
            exchange.writeResponseFields(into: &out, runtime: runtime, routes: routes)
            writeConnectionField(into: &out)
            out.writeStaticString("\r\n")
            if !exchange.isHeadRequest { out.writeImmutableBuffer(body) }
            exchange.log.status = Int(responseHead.getString(at: responseHead.readerIndex + 9, length: 3) ?? "") ?? 0
            write(out)
            exchange.log.bytesOut = body.readableBytes
            finishExchange(requestComplete: framing == .none)
        case .redirect(let status, let location):
            respond(exchange.redirect(status: status, to: location, secure: tls != nil), closing: framing != .none)
        case .proxy, .split:
            _ = exchange.chooseUpstream(clientAddress: clientAddress, runtime: runtime)
            phase = .proxying
            requestHead = headBytes
            requestBody = BodyReader(framing)
            requestBodyBytes = 0
            isChunkedUpstream = framing == .chunked || (framing != .none && exchange.transformsRequestBody)
            isUpgrade = exchange.head.connectionUpgrade && exchange.head.upgradeWebSocket && framing == .none
            responseStarted = false
            if let total = matched.totalTimeout { armExchangeDeadline(total) }
            acquireUpstream(fresh: false)
            // (Bytes that came while a filter waited.)
            if phase == .proxying, buffer?.readableBytes ?? 0 > 0 { process() }
        }
    }

}

extension ByteBufferAllocator {
    /// The size line of one chunk (RFC 9112 §7.1): the length in hex, then CRLF; the chunk's data and its CRLF
    /// follow.
    func chunkSizeLine(_ count: Int) -> ByteBuffer {
        var line = buffer(capacity: 18)
        line.writeString(String(count, radix: 16))
        line.writeStaticString("\r\n")
        return line
    }
}

extension ByteBuffer {
    /// Writes a non-negative integer in decimal without going through a `String`.
    mutating func writeDecimal(_ value: Int64) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for Int64.max's 19 digits
        withUnsafeMutableBytes(of: &digits) { scratch in
            var remaining = UInt64(max(0, value))
            var index = scratch.count
            repeat {
                index -= 1
                scratch[index] = UInt8(ascii: "0") + UInt8(remaining % 10)
                remaining /= 10
            } while remaining > 0
            writeBytes(UnsafeRawBufferPointer(rebasing: scratch[index...]))
        }
    }
}
