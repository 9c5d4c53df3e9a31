// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterCore
import JesterHTTP2
import JesterTLS
import NIOCore

/// One request of an HTTP/2 or HTTP/3 connection (`RequestStreamConnection`): translated to HTTP/1.1 (RFC 9113
/// §8.3, RFC 9114 §4.3) and routed like any request, then answered locally or proxied through the exchange's
/// upstream (`ExchangeUpstream`: an HTTP/1.1 connection, or a stream to an HTTP/2 target, which keeps fields and
/// trailers both ways, for gRPC), the response translated back. Both protocols carry the same messages over
/// streams with flow control, so one adapter serves both.
///
/// The connection is `unowned`: it owns its streams, and a stream that outlives it (a pool's completion arriving
/// after the client left) has been marked finished by `clientGone`, and every late path checks that first.
final class RequestStream: UpstreamConnectionDelegate, UpstreamWaiter {
    unowned let connection: any RequestStreamConnection
    let id: Int64
    /// The connection's runtime and listener facts, read once per stream: the stream reads them many times per
    /// request, and each read through the connection's protocol was a witness call and a copy (measured: 1.6 %
    /// of an HTTP/2 request's CPU before they were kept here).
    let runtime: WorkerRuntime
    let routes: ListenerRoutes
    let tls: TLSSessionFacts?
    /// The request's decisions (route, filters, upstream choice, retries, log), shared with HTTP/1.1.
    var exchange = RequestExchange()
    var upstream: (any ExchangeUpstream)?
    var requestComplete = false
    /// The body goes upstream chunked (no content-length was given).
    var chunked = false
    var requestBodyBytes: Int64 = 0
    /// Request DATA that arrived before the upstream connection was ready.
    var pendingBody: [ByteBuffer] = []
    /// Request bytes handed to the upstream and not yet acknowledged to the client (WINDOW_UPDATE).
    var unacknowledged = 0
    var responseStarted = false
    var responseHasBody = false
    /// Reading from the upstream waits for the stream's outgoing buffer to drain.
    var upstreamPaused = false
    var finished = false
    /// The response deadline until the head arrives, then the route's `read_timeout` between parts of the
    /// response: one timer in the worker's `TimerQueue`, as on HTTP/1 (a `scheduleTask` per stream and its
    /// cancellation were a tenth of an HTTP/2 request's CPU). It holds the stream strongly; `closed` cancels it.
    let timer = ConnectionTimer()
    /// The route's `timeout` (whole exchange), made only for routes that set one.
    var exchangeDeadline: ConnectionTimer?
    /// The client's request trailers, passed on with the end of the body.
    var requestTrailers: [HTTP2Field] = []
    /// The response's trailers (from an HTTP/2 target), sent with its end.
    var responseTrailers: [HTTP2Field] = []
    /// Proxying waits for the whole (small) body; see `heldBodyLimit`.
    var deferredStart: (() -> Void)?
    /// Body matchers (`match_body`): the start of the body, collected before the route is chosen; nil when no
    /// route of the listener looks at bodies, or once the route is chosen. The DATA itself waits in `pendingBody`.
    var peekedBody: [UInt8]?
    /// The request's fields, kept while `peekedBody` is collected.
    var fieldsAwaitingRoute: [HTTP2Field] = []
    /// `peekedBody` is the whole body held back for the route's filters (`RequestFilter.bodyLimit`), after the
    /// route was chosen, rather than the start of it for body matchers before.
    var awaitingFilterBody = false
    /// Request bytes acknowledged to the client while they were held for body matchers, before they were passed
    /// on: passing them on later must not acknowledge them a second time.
    var acknowledgedAhead = 0

    /// Upstream response bytes buffered per stream before reading from the upstream pauses.
    static let outgoingBufferLimit = 256 * 1024

    init(connection: any RequestStreamConnection, id: Int64) {
        self.connection = connection
        self.id = id
        runtime = connection.runtime
        routes = connection.routes
        tls = connection.tls
        timer.setup(queue: runtime.timers) { purpose in self.timerFired(purpose) }
    }


    // MARK: Request

    func start(fields: [HTTP2Field], endStream: Bool) {
        runtime.counters.requests &+= 1
        requestComplete = endStream
        guard let bytes = Self.translate(fields, hasBody: !endStream, allocator: runtime.allocator) else {
            finishLocally(status: 400, failure: "request without :method, :path or :authority")
            return
        }
        let parser = HTTPHeadParser(limits: runtime.parserLimits)
        let error = bytes.withUnsafeReadableBytes { parser.parseRequest($0, into: &exchange.head) }
        exchange.begin(
            bytes: bytes, client: connection.clientAddress, runtime: runtime, multiplexed: connection.streamProtocol,
            secure: tls != nil)
        if !connection.handshakeComplete { exchange.log.earlyData = true }
        if let error {
            // The same strict rules as HTTP/1: bytes nghttp2 lets through (in a :path, say) still get a 400 here.
            finishLocally(status: error.status, failure: error.reason)
            return
        }
        let withinRate = connection.takeRequestToken()
        if let status = exchange.preRouteRefusal(runtime: runtime, withinConnectionRate: withinRate) {
            finishLocally(status: status, failure: exchange.log.failure)
            return
        }
        let peekLimit = routes.bodyPeekLimit
        if peekLimit > 0, !endStream {
            // Some route of this listener matches on the body: its start arrives in DATA frames before the
            // route can be chosen (`requestData`, `requestEnded`).
            peekedBody = []
            fieldsAwaitingRoute = fields
            timer.arm(.body, after: runtime.timeouts.body)
            if exchange.head.expectsContinue {
                // The client waits for this before it sends the body we need to see (as on HTTP/1.1).
                connection.respondInterim(id, status: 100)
            }
            return
        }
        route(fields: fields, body: peekLimit > 0 ? .empty : nil)
    }

    /// Chooses the request's route (`body`: the start of the body when some route looks at it), runs its
    /// filters, and acts on it.
    func route(fields: [HTTP2Field], body: BodyPeek?) {
        let tls = tls.map { TLSRouteFacts(serverName: $0.serverName, clientSubject: $0.clientCertificateSubject) }
        switch exchange.chooseRoute(
            in: routes, client: connection.clientIP, tls: tls, body: body, bodyBytesSoFar: requestBodyBytes,
            clientAddress: connection.clientAddress, runtime: runtime)
        {
        case .refuse(let status, let reason):
            dropHeldBody()
            finishLocally(status: status, failure: reason)
            return
        case .local(let response):
            dropHeldBody()
            respond(response)
            return
        case .respond, .proxy:
            break
        }
        chunked = exchange.head.isChunked
        guard exchange.hasFilters else {
            filtersDecided(.proceed, fields: fields)
            return
        }
        let limit = exchange.filterBodyLimit
        if limit > 0, exchange.hasBody {
            // A filter reads the body (the pre-upstream phase): it is held back, whole, before the filters run.
            // What the body matchers held already is its start.
            let held = pendingBody.reduce(into: [UInt8]()) { $0 += $1.readableBytesView }
            if let length = exchange.head.contentLength, length > limit {
                filterBodyArrived([], isComplete: false, fields: fields)
                return
            }
            if requestComplete || held.count > limit {
                filterBodyArrived(held, isComplete: held.count <= limit, fields: fields)
                return
            }
            awaitingFilterBody = true
            peekedBody = held
            fieldsAwaitingRoute = fields
            timer.arm(.body, after: runtime.timeouts.body)
            // (Sent already when body matchers waited for the body.)
            if body == nil, exchange.head.expectsContinue { connection.respondInterim(id, status: 100) }
            return
        }
        runFilters(fields: fields, body: nil)
    }

    /// The body the route's filters read is all here (or over their limit: 413, and the rest is dropped).
    func filterBodyArrived(_ body: [UInt8], isComplete: Bool, fields: [HTTP2Field]) {
        guard isComplete else {
            dropHeldBody()
            finishLocally(
                status: 413, failure: "request body larger than \(exchange.filterBodyLimit) bytes, the most its filters read")
            return
        }
        runFilters(fields: fields, body: body)
    }

    /// The route's filters run (on the head, and the body when one of them reads it), then `filtersDecided`.
    func runFilters(fields: [HTTP2Field], body: [UInt8]?) {
        guard let verdict = exchange.runFilters(
            clientAddress: connection.clientAddress, clientIP: connection.clientIP, tls: tls, body: body,
            runtime: runtime)
        else {
            awaitFilters(fields: fields)
            return
        }
        filtersDecided(verdict, fields: fields)
    }

    /// A filter waits; DATA that comes meanwhile is held in `pendingBody`, unacknowledged.
    private func awaitFilters(fields: [HTTP2Field]) {
        exchange.whenFiltersDecide { [weak self] verdict in
            // (A stream that finished meanwhile cancelled the run, so this comes only to a live stream.)
            guard let self, !self.finished else { return }
            // (A re-resolve pass may have moved the request to a route whose filters wait in turn.)
            guard let verdict = self.exchange.filtersFinished(verdict, runtime: self.runtime) else {
                self.awaitFilters(fields: fields)
                return
            }
            self.filtersDecided(verdict, fields: fields)
            self.connection.scheduleFlush()
        }
    }

    /// The request filters decided: answer as they say, or carry out the route's action.
    func filtersDecided(_ verdict: FilterVerdict, fields: [HTTP2Field]) {
        switch verdict {
        case .proceed:
            break
        case .respond(let response, _):
            dropHeldBody()
            respond(response)
            return
        case .fail(let status, let reason):
            dropHeldBody()
            finishLocally(status: status, failure: reason)
            return
        }
        guard let matched = exchange.route else { return }
        switch matched.action {
        case .respond(let responseHead, let body):
            dropHeldBody()
            respondWithRendered(responseHead, body: body)
        case .redirect(let status, let location):
            dropHeldBody()
            respond(exchange.redirect(status: status, to: location, secure: tls != nil))
        case .proxy, .split:
            // A small body with a declared length is held until it is complete: nghttp2 checks the length
            // against the DATA only at the end of the stream, and a request that fails the check must not have
            // reached an upstream at all (a larger one streams; if it fails, the upstream connection is cut
            // before the body completes, so the upstream never sees a complete, different request).
            if !requestComplete, let length = exchange.head.contentLength, length <= Self.heldBodyLimit {
                deferredStart = { [unowned self] in self.proxy(matched, fields: fields) }
                // The upstream's 100 cannot come before the body it waits for: a client that expects one gets it here.
                if exchange.head.expectsContinue { connection.respondInterim(id, status: 100) }
                armBodyTimer()
                return
            }
            proxy(matched, fields: fields)
        }
    }

    /// Declared body lengths up to this are received whole before the request goes upstream (one window).
    static let heldBodyLimit: Int64 = 65_535

    func proxy(_ matched: CompiledRoute, fields: [HTTP2Field]) {
        guard !finished else { return }
        if exchange.earlyDataVerdict(handshakeComplete: connection.handshakeComplete) == .awaitHandshake {
            // (The stream may be gone by then: `proxy` checks `finished` first. Its body waits in `pendingBody`.)
            connection.awaitHandshake(stream: id) { [weak self] in self?.proxy(matched, fields: fields) }
            return
        }
        exchange.chooseUpstream(clientAddress: connection.clientAddress, runtime: runtime)
        // A decoded body's length is known only at its end.
        if exchange.transformsRequestBody { chunked = true }
        armRouteTimers(matched)
        acquireUpstream(fresh: false)
    }

    func acquireUpstream(fresh: Bool) {
        exchange.nextAttempt(runtime: runtime).acquire(fresh: fresh, client: connection.proxyAddresses, for: self)
    }

    /// The HTTP/1.1 head of an HTTP/2 request: pseudo-headers to the request line and Host, cookie crumbs
    /// joined (RFC 9113 §8.2.3), and chunked framing for a body of unknown length. nghttp2 has already refused
    /// connection-specific fields, uppercase names and invalid bytes. Written straight into the buffer the
    /// parser reads (string interpolation and a copy cost more than routing the request).
    static func translate(_ fields: [HTTP2Field], hasBody: Bool, allocator: ByteBufferAllocator) -> ByteBuffer? {
        var method: String?
        var path: String?
        var authority: String?
        var cookies = 0
        var hasLength = false
        var size = 32
        for field in fields {
            switch field.name {
            case ":method": method = field.value
            case ":path": path = field.value
            case ":authority": authority = field.value
            case "host": if authority == nil { authority = field.value }
            case "cookie": cookies += 1
            case "content-length": hasLength = true
            default: break
            }
            size += field.name.utf8.count + field.value.utf8.count + 4
        }
        guard let method, let path, let authority, method != "CONNECT" else { return nil }
        var head = allocator.buffer(capacity: size)
        head.writeString(method)
        head.writeStaticString(" ")
        head.writeString(path)
        head.writeStaticString(" HTTP/1.1\r\nhost: ")
        head.writeString(authority)
        head.writeStaticString("\r\n")
        for field in fields {
            switch field.name {
            case "host", "cookie": continue
            case let name where name.utf8.first == UInt8(ascii: ":"): continue
            default:
                head.writeString(field.name)
                head.writeStaticString(": ")
                head.writeString(field.value)
                head.writeStaticString("\r\n")
            }
        }
        if cookies > 0 {
            head.writeStaticString("cookie: ")
            var first = true
            for field in fields where field.name == "cookie" {
                if !first { head.writeStaticString("; ") }
                head.writeString(field.value)
                first = false
            }
            head.writeStaticString("\r\n")
        }
        if hasBody, !hasLength { head.writeStaticString("transfer-encoding: chunked\r\n") }
        head.writeStaticString("\r\n")
        return head
    }

    func upstreamAcquired(_ result: Result<any ExchangeUpstream, UpstreamFailure>, from pool: UpstreamPool) {
        guard !finished, let route = exchange.route else {
            if case .success(let upstream) = result { upstream.release(reusable: true) }
            return
        }
        switch result {
        case .failure(let failure):
            finishLocally(status: exchange.acquisitionFailed(failure).status, failure: exchange.log.failure)
        case .success(let upstream):
            self.upstream = upstream
            let request = UpstreamRequest(
                runtime: runtime, route: route, clientAddress: connection.clientAddress, tls: tls,
                clientSubjectHeader: connection.clientSubjectHeader, chunked: chunked, upgrade: false,
                filterFields: exchange.upstreamFilterFields,
                earlyData: exchange.earlyDataVerdict(handshakeComplete: connection.handshakeComplete) == .forwardEarly)
            let (head, upstream) = exchange.startAttempt(
                on: upstream, request: request, clientAddress: connection.clientAddress, runtime: runtime)
            self.upstream = upstream
            upstream.startExchange(
                delegate: self, requestHead: head, chunkedBody: chunked, isHeadRequest: exchange.isHeadRequest,
                expectsUpgrade: false)
            for bytes in pendingBody { forward(bytes) }
            pendingBody = []
            if requestComplete { endRequestBody() } else { armBodyTimer() }
            upstream.flush()
            acknowledge()
        }
    }

    func requestData(_ bytes: ByteBuffer) {
        requestBodyBytes += Int64(bytes.readableBytes)
        exchange.log.bytesIn += bytes.readableBytes
        if peekedBody != nil {
            if awaitingFilterBody, let route = exchange.route, requestBodyBytes > route.maxBodySize {
                // The route's own limit holds while its filters' body is collected, as it does when it streams.
                connection.consumed(id, count: bytes.readableBytes)
                peekedBody = nil
                awaitingFilterBody = false
                dropHeldBody()
                finishLocally(status: 413, failure: "request body larger than \(route.maxBodySize) bytes")
                return
            }
            hold(bytes)
            return
        }
        if let route = exchange.route, requestBodyBytes > route.maxBodySize {
            // Acknowledged like any dropped DATA, or the connection's window would shrink for every stream.
            connection.consumed(id, count: bytes.readableBytes)
            finishLocally(status: 413, failure: "request body larger than \(route.maxBodySize) bytes")
            return
        }
        guard !finished, let route = exchange.route, !route.action.isLocal else {
            // Answered locally (or already finished): the body is read and dropped.
            connection.consumed(id, count: bytes.readableBytes)
            return
        }
        armBodyTimer()
        if upstream == nil {
            pendingBody.append(bytes)
        } else {
            forward(bytes)
        }
    }

    func requestEnded(trailers: [HTTP2Field] = []) {
        requestComplete = true
        requestTrailers = trailers
        if peekedBody != nil {
            routeWithPeekedBody(isComplete: true)
            return
        }
        if let start = deferredStart {
            deferredStart = nil
            start()
            return
        }
        guard upstream != nil else { return }
        endRequestBody()
        upstream?.flush()
    }

    func forward(_ bytes: ByteBuffer) {
        guard let upstream else { return }
        upstream.sendBody(bytes)
        unacknowledged += notAcknowledgedYet(bytes.readableBytes)
    }

    // MARK: Body matchers

    /// DATA that arrived while body matchers wait for the start of the body. It is acknowledged at once (a
    /// `max_size` above the stream's window would otherwise stall the client before the limit is reached), so
    /// what is held is bounded by the limit plus one window.
    func hold(_ bytes: ByteBuffer) {
        let limit = peekLimit
        // client_body_timeout is the longest pause between two pieces, here too.
        timer.arm(.body, after: runtime.timeouts.body)
        pendingBody.append(bytes)
        connection.consumed(id, count: bytes.readableBytes)
        acknowledgedAhead += bytes.readableBytes
        connection.scheduleFlush()
        // One byte past the limit tells a body cut at the limit from one exactly that long (END_STREAM comes
        // as its own event, after the last DATA).
        peekedBody!.append(contentsOf: bytes.readableBytesView.prefix(limit + 1 - peekedBody!.count))
        if peekedBody!.count > limit { routeWithPeekedBody(isComplete: false) }
    }

    /// How much of the body `peekedBody` collects: the body matchers' limit, or the filters'.
    var peekLimit: Int { awaitingFilterBody ? exchange.filterBodyLimit : routes.bodyPeekLimit }

    /// The body ended, or went past the limit: the route can be chosen (or its filters run).
    func routeWithPeekedBody(isComplete: Bool) {
        guard let peeked = peekedBody, !finished else { return }
        peekedBody = nil
        let fields = fieldsAwaitingRoute
        fieldsAwaitingRoute = []
        timer.disarm()
        if awaitingFilterBody {
            awaitingFilterBody = false
            filterBodyArrived(peeked, isComplete: isComplete, fields: fields)
            return
        }
        let limit = routes.bodyPeekLimit
        route(fields: fields, body: BodyPeek(bytes: Array(peeked.prefix(limit)), isComplete: isComplete))
    }

    /// Of `count` request bytes passed on, those the client has not been told about yet.
    func notAcknowledgedYet(_ count: Int) -> Int {
        let ahead = min(acknowledgedAhead, count)
        acknowledgedAhead -= ahead
        return count - ahead
    }

    /// A locally answered request does not pass on the body held for the matchers: what of it is not yet
    /// acknowledged is acknowledged now, so the connection's window stays whole.
    func dropHeldBody() {
        let held = pendingBody.reduce(0) { $0 + $1.readableBytes }
        connection.consumed(id, count: notAcknowledgedYet(held))
        pendingBody = []
    }

    func endRequestBody() {
        upstream?.endRequest(trailers: requestTrailers)
        // The response timeout runs from the end of the request, however long the upload took.
        guard let route = exchange.route, let pool = upstream?.pool, !finished else { return }
        timer.arm(.response, after: exchange.responseTimeout(pool: pool))
    }

    /// Tells the client it may send as much again as the upstream has taken: HTTP/2 flow control as
    /// backpressure.
    /// `flushing`: outside the connection's read cycle (which flushes at its end), send the WINDOW_UPDATE now;
    /// a client waiting for window sends nothing that would flush it otherwise.
    func acknowledge(flushing: Bool = true) {
        guard unacknowledged > 0, upstream?.isWritable ?? true else { return }
        connection.consumed(id, count: unacknowledged)
        unacknowledged = 0
        if flushing { connection.scheduleFlush() }
    }

    func flushUpstream() {
        upstream?.flush()
        acknowledge(flushing: false)
    }

}
