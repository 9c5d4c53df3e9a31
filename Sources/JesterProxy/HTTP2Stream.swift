// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterCore
import JesterHTTP2
import NIOCore

/// One HTTP/2 request: translated to HTTP/1.1 (RFC 9113 §8.3) and routed like any request, then answered locally,
/// proxied to an HTTP/1.1 upstream (the response translated back), or passed as a stream to an HTTP/2 upstream
/// (fields and trailers kept, for gRPC).
///
/// The connection is `unowned`: it owns its streams, and a stream that outlives it (a pool's completion arriving
/// after the client left) has been marked finished by `clientGone`, and every late path checks that first.
final class HTTP2Stream: UpstreamConnectionDelegate, HTTP2UpstreamStreamDelegate, UpstreamWaiter {
    private unowned let connection: HTTP2Connection
    let id: Int32
    /// The request's decisions (route, filters, upstream choice, retries, log), shared with HTTP/1.1.
    private var exchange = RequestExchange()
    private var upstream: UpstreamConnection?
    private var requestComplete = false
    /// The body goes upstream chunked (no content-length was given).
    private var chunked = false
    private var requestBodyBytes: Int64 = 0
    /// Request DATA that arrived before the upstream connection was ready.
    private var pendingBody: [ByteBuffer] = []
    /// Request bytes handed to the upstream and not yet acknowledged to the client (WINDOW_UPDATE).
    private var unacknowledged = 0
    private var responseStarted = false
    private var responseHasBody = false
    /// Reading from the upstream waits for the stream's outgoing buffer to drain.
    private var upstreamPaused = false
    private var finished = false
    /// The response deadline until the head arrives, then the route's `read_timeout` between parts of the
    /// response: one timer in the worker's `TimerQueue`, as on HTTP/1 (a `scheduleTask` per stream and its
    /// cancellation were a tenth of an HTTP/2 request's CPU). It holds the stream strongly; `closed` cancels it.
    private let timer = ConnectionTimer()
    /// The route's `timeout` (whole exchange), made only for routes that set one.
    private var exchangeDeadline: ConnectionTimer?
    // An HTTP/2 upstream (`protocol = "h2"`): the stream there, and byte counts not yet acknowledged each way.
    private var h2Upstream: HTTP2UpstreamConnection?
    private var h2Stream: Int32?
    private var usesHTTP2Upstream = false
    /// The request's fields for an HTTP/2 target, kept for a retry.
    private var h2RequestFields: [HTTP2Field]?
    private var requestTrailers: [HTTP2Field] = []
    /// Proxying waits for the whole (small) body; see `heldBodyLimit`.
    private var deferredStart: (() -> Void)?
    /// Body matchers (`match_body`): the start of the body, collected before the route is chosen; nil when no
    /// route of the listener looks at bodies, or once the route is chosen. The DATA itself waits in `pendingBody`.
    private var peekedBody: [UInt8]?
    /// The request's fields, kept while `peekedBody` is collected.
    private var fieldsAwaitingRoute: [HTTP2Field] = []
    /// Request bytes acknowledged to the client while they were held for body matchers, before they were passed
    /// on: passing them on later must not acknowledge them a second time.
    private var acknowledgedAhead = 0
    private var requestUnacknowledged = 0
    private var responseUnacknowledged = 0
    /// Buffered bytes (either way) above which acknowledging waits: the window per stream, roughly.
    private static let acknowledgeBelow = 64 * 1024

    init(connection: HTTP2Connection, id: Int32) {
        self.connection = connection
        self.id = id
        timer.setup(queue: connection.runtime.timers) { purpose in self.timerFired(purpose) }
    }

    private var runtime: WorkerRuntime { connection.runtime }

    // MARK: Request

    func start(fields: [HTTP2Field], endStream: Bool) {
        runtime.counters.requests &+= 1
        requestComplete = endStream
        guard let bytes = Self.translate(fields, hasBody: !endStream, allocator: runtime.allocator) else {
            finishLocally(status: 400, failure: "HTTP/2 request without :method, :path or :authority")
            return
        }
        let parser = HTTPHeadParser(limits: runtime.parserLimits)
        let error = bytes.withUnsafeReadableBytes { parser.parseRequest($0, into: &exchange.head) }
        exchange.begin(bytes: bytes, client: connection.clientAddress, runtime: runtime)
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
        let peekLimit = connection.routes.bodyPeekLimit
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
    private func route(fields: [HTTP2Field], body: BodyPeek?) {
        let tls = connection.tls.map { TLSRouteFacts(serverName: $0.serverName, clientSubject: $0.clientCertificateSubject) }
        switch exchange.chooseRoute(
            in: connection.routes, client: connection.clientIP, tls: tls, body: body, bodyBytesSoFar: requestBodyBytes)
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
        guard let verdict = exchange.runFilters(
            clientAddress: connection.clientAddress, clientIP: connection.clientIP, tls: connection.tls)
        else {
            // A filter waits; DATA that comes meanwhile is held in `pendingBody`, unacknowledged.
            exchange.whenFiltersDecide { [weak self] verdict in
                // (A stream that finished meanwhile cancelled the run, so this comes only to a live stream.)
                guard let self, !self.finished else { return }
                self.exchange.note(verdict)
                self.filtersDecided(verdict, fields: fields)
                self.connection.scheduleFlush()
            }
            return
        }
        filtersDecided(verdict, fields: fields)
    }

    /// The request filters decided: answer as they say, or carry out the route's action.
    private func filtersDecided(_ verdict: FilterVerdict, fields: [HTTP2Field]) {
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
            respond(exchange.redirect(status: status, to: location, secure: connection.tls != nil))
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

    private func proxy(_ matched: CompiledRoute, fields: [HTTP2Field]) {
        guard !finished else { return }
        let pool = exchange.chooseUpstream(clientAddress: connection.clientAddress)
        armRouteTimers(matched)
        if pool.speaksHTTP2 {
            proxyOverHTTP2(pool, fields: fields, route: matched)
            return
        }
        acquireUpstream(from: pool, fresh: false)
    }

    private func acquireUpstream(from pool: UpstreamPool, fresh: Bool) {
        exchange.log.mark(.asked)
        pool.acquire(hashKey: exchange.balancingHash, fresh: fresh, excluding: exchange.retries.failedTargets,
            connectTimeout: exchange.route?.timeouts.connect, preferring: exchange.stickyTarget,
            client: pool.settings.sendProxyProtocol == nil ? nil : connection.proxyAddresses, for: self)
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

    func upstreamAcquired(_ result: Result<UpstreamConnection, UpstreamFailure>, from pool: UpstreamPool) {
        guard !finished, let route = exchange.route, let headBytes = exchange.headBytes else {
            if case .success(let upstream) = result { pool.release(upstream, reusable: true) }
            return
        }
        switch result {
        case .failure(var failure):
            // A retry that finds no other target answers with what the failed attempt got.
            if case .noTarget = failure, let previous = exchange.retries.lastFailure { failure = previous }
            finishLocally(status: failure.status, failure: failure.reason)
        case .success(let upstream):
            self.upstream = upstream
            exchange.log.mark(.connected)
            exchange.log.upstreamTarget = upstream.targetDescription
            let request = UpstreamRequest(
                runtime: runtime, route: route, clientAddress: connection.clientAddress, tls: connection.tls,
                clientSubjectHeader: connection.clientSubjectHeader, chunked: chunked, upgrade: false,
                filterFields: exchange.upstreamFilterFields)
            exchange.assignRequestID(runtime: runtime)
            let rendered = headBytes.withUnsafeReadableBytes {
                request.renderHead(
                    $0, head: exchange.head, target: upstream.targetDescription, requestID: exchange.requestID,
                    allocator: runtime.allocator)
            }
            upstream.startExchange(delegate: self, requestHead: rendered, isHeadRequest: exchange.isHeadRequest, expectsUpgrade: false)
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
        if usesHTTP2Upstream {
            if let h2Upstream, let h2Stream {
                h2Upstream.sendBody(h2Stream, bytes)
                requestUnacknowledged += bytes.readableBytes
                acknowledgeRequest()
            } else {
                pendingBody.append(bytes)
            }
        } else if upstream == nil {
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
        if usesHTTP2Upstream {
            if let h2Upstream, let h2Stream { h2Upstream.finishBody(h2Stream, trailers: trailers) }
            return
        }
        guard upstream != nil else { return }
        endRequestBody()
        upstream?.flush()
    }

    private func forward(_ bytes: ByteBuffer) {
        guard let upstream else { return }
        if chunked {
            upstream.write(runtime.allocator.chunkSizeLine(bytes.readableBytes))
            upstream.write(bytes)
            upstream.write(ByteBuffer(staticString: "\r\n"))
        } else {
            upstream.write(bytes)
        }
        unacknowledged += notAcknowledgedYet(bytes.readableBytes)
    }

    // MARK: Body matchers

    /// DATA that arrived while body matchers wait for the start of the body. It is acknowledged at once (a
    /// `max_size` above the stream's window would otherwise stall the client before the limit is reached), so
    /// what is held is bounded by the limit plus one window.
    private func hold(_ bytes: ByteBuffer) {
        let limit = connection.routes.bodyPeekLimit
        pendingBody.append(bytes)
        connection.consumed(id, count: bytes.readableBytes)
        acknowledgedAhead += bytes.readableBytes
        connection.scheduleFlush()
        // One byte past the limit tells a body cut at the limit from one exactly that long (END_STREAM comes
        // as its own event, after the last DATA).
        peekedBody!.append(contentsOf: bytes.readableBytesView.prefix(limit + 1 - peekedBody!.count))
        if peekedBody!.count > limit { routeWithPeekedBody(isComplete: false) }
    }

    /// The body ended, or went past the limit: the route can be chosen.
    private func routeWithPeekedBody(isComplete: Bool) {
        guard let peeked = peekedBody, !finished else { return }
        peekedBody = nil
        let fields = fieldsAwaitingRoute
        fieldsAwaitingRoute = []
        timer.disarm()
        let limit = connection.routes.bodyPeekLimit
        route(fields: fields, body: BodyPeek(bytes: Array(peeked.prefix(limit)), isComplete: isComplete))
    }

    /// Of `count` request bytes passed on, those the client has not been told about yet.
    private func notAcknowledgedYet(_ count: Int) -> Int {
        let ahead = min(acknowledgedAhead, count)
        acknowledgedAhead -= ahead
        return count - ahead
    }

    /// A locally answered request does not pass on the body held for the matchers: what of it is not yet
    /// acknowledged is acknowledged now, so the connection's window stays whole.
    private func dropHeldBody() {
        let held = pendingBody.reduce(0) { $0 + $1.readableBytes }
        connection.consumed(id, count: notAcknowledgedYet(held))
        pendingBody = []
    }

    private func endRequestBody() {
        if chunked { upstream?.write(ByteBuffer(staticString: "0\r\n\r\n")) }
        // The response timeout runs from the end of the request, however long the upload took.
        guard let route = exchange.route, let pool = upstream?.pool, !finished else { return }
        timer.arm(.response, after: route.responseTimeout ?? pool.responseTimeout)
    }

    /// Tells the client it may send as much again as the upstream has taken: HTTP/2 flow control as
    /// backpressure.
    /// `flushing`: outside the connection's read cycle (which flushes at its end), send the WINDOW_UPDATE now;
    /// a client waiting for window sends nothing that would flush it otherwise.
    private func acknowledge(flushing: Bool = true) {
        guard unacknowledged > 0, upstream?.isWritable ?? true else { return }
        connection.consumed(id, count: unacknowledged)
        unacknowledged = 0
        if flushing { connection.scheduleFlush() }
    }

    func flushUpstream() {
        upstream?.flush()
        acknowledge(flushing: false)
    }

    // MARK: Response

    func upstreamResponseHead(_ response: HTTPHead, bytes: ByteBuffer) {
        timer.disarm()
        if response.status >= 200 || response.status == 101 {
            exchange.log.upstreamStatus = response.status
            exchange.log.mark(.responseHead)
        }
        if response.status < 200 {
            // 1xx goes on as an interim HEADERS frame, as to HTTP/1.1 clients: a client that sent
            // `expect: 100-continue` waits for the 100 before it sends its body. A 101 never arrives (no upgrade is
            // forwarded, and `UpstreamConnection` refuses one nobody asked for).
            connection.respondInterim(id, status: response.status)
            connection.scheduleFlush()
            return
        }
        if response.status >= 500, let upstream, exchange.route?.retryPolicy.statuses.contains(response.status) == true,
            retry(.status(response.status), target: upstream.target, pool: upstream.pool, abandoning: {
                // Not forwarded: the answer is thrown away with its connection, and the request goes elsewhere.
                upstream.finished(failed: (502...504).contains(response.status))
                self.upstream = nil
                upstream.close()
            })
        {
            return
        }
        let route = exchange.route
        var fields = HTTP2HeaderBlock(reservingBytes: bytes.readableBytes + 128, fields: response.fields.count + 4)
        fields.append(":status", String(response.status))
        bytes.withUnsafeReadableBytes { raw in
            // Hop-by-hop covers every field HTTP/2 forbids (RFC 9113 §8.2.2): Connection, Keep-Alive,
            // Proxy-Connection, Transfer-Encoding, Upgrade, and whatever Connection named.
            // Content-Length is written once below: the upstream may send a list ("5, 5") or repeat the field,
            // which the parser accepted as one length, and HTTP/2 clients must see one value as HTTP/1 ones do.
            let echoedID = RequestExchange.fieldWrittenByExchange(in: response, raw, runtime: runtime)
            for index in response.fields.indices where index != echoedID {
                let field = response.fields[index]
                guard !field.isHopByHop, field.kind != .contentLength else { continue }
                if RequestExchange.dropsUpstreamField(raw, name: field.name, route: route) { continue }
                fields.append(
                    lowercasing: UnsafeRawBufferPointer(rebasing: raw[field.name]),
                    value: UnsafeRawBufferPointer(rebasing: raw[field.value]))
            }
        }
        if let length = response.forwardedContentLength { fields.append("content-length", String(length)) }
        exchange.forEachLowercasedUpstreamResponseAddition(
            target: upstream?.target ?? 0, secure: connection.tls != nil, runtime: runtime, routes: connection.routes
        ) { name, value, unique in
            fields.append(lowercasing: name, value: value, neverIndexed: unique)
        }
        responseHasBody = BodyFraming.response(response, requestWasHead: exchange.isHeadRequest) != .none
        armReadTimer()
        responseStarted = true
        exchange.log.status = response.status
        connection.respond(id, headers: fields, hasBody: responseHasBody)
        connection.scheduleFlush()
    }

    /// Fields that HTTP/2 forbids (RFC 9113 §8.2.2), dropped even when the upstream did not name them hop-by-hop.
    static let connectionSpecific: Set<String> = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]

    func upstreamResponseBody(_ body: ByteBuffer) {
        exchange.log.bytesOut += body.readableBytes
        armReadTimer()
        connection.sendBody(id, body)
    }

    func upstreamResponseEnd(reusable: Bool) {
        exchange.log.mark(.responseEnd)
        if responseHasBody { connection.finishBody(id) }
        if let upstream {
            self.upstream = nil
            upstream.pool.release(upstream, reusable: reusable && requestComplete)
        }
        complete()
        connection.scheduleFlush()
    }

    func upstreamTunnelData(_ bytes: ByteBuffer) {}

    func upstreamFailed(_ failure: UpstreamFailure, responseStarted started: Bool) {
        let failed = upstream
        upstream = nil
        // An exchange that is over (the client left, a timeout answered) has nothing left to say, and its
        // connection may be gone.
        guard !finished else { return }
        exchange.log.failure = failure.reason
        if started || responseStarted {
            // Part of the response went out: a reset is the only honest end (the client sees it incomplete).
            complete()
            connection.reset(id, errorCode: 2)
            return
        }
        if let failed,
            exchange.replayAllowed(after: failure, completedExchanges: failed.completedExchanges, runtime: runtime)
        {
            timer.disarm()
            acquireUpstream(from: failed.pool, fresh: true)
            return
        }
        if case .closedEarly = failure, let failed, retry(.reset, target: failed.target, pool: failed.pool) {
            exchange.retries.lastFailure = failure
            return
        }
        finishLocally(status: failure.status, failure: failure.reason)
    }

    /// Sends the request again, to another target of `pool` than `target` (which just failed it), when the route's
    /// retry policy and the pool's retry budget allow it (`RequestExchange.retryDelay`: only a complete request
    /// without a body, which is not kept); `abandon` lets go of the failed attempt first. The next attempt is an
    /// HTTP/1.1 connection or an HTTP/2 stream, as the pool speaks. True when a retry is on its way (after a short
    /// jittered backoff).
    private func retry(
        _ reason: RetryPolicy.Reason, target: Int, pool: UpstreamPool, abandoning abandon: () -> Void = {}
    ) -> Bool {
        guard !finished, !responseStarted, let route = exchange.route else { return false }
        guard let delay = exchange.retryDelay(
            after: reason, target: target, pool: pool, requestComplete: requestComplete, runtime: runtime)
        else { return false }
        abandon()
        // The response timeout starts again with the next attempt.
        timer.disarm()
        runtime.eventLoop.assumeIsolated().scheduleTask(in: delay) {
            guard !self.finished, self.upstream == nil, self.h2Upstream == nil else { return }
            if self.usesHTTP2Upstream {
                self.openHTTP2Stream(pool: pool, route: route)
            } else {
                self.acquireUpstream(from: pool, fresh: false)
            }
        }
        return true
    }

    func upstreamReadComplete() {
        connection.scheduleFlush()
        if connection.bufferedBody(id) < HTTP2Connection.streamBufferLimit {
            upstream?.read()
        } else {
            upstreamPaused = true
        }
    }

    func upstreamWritabilityChanged(isWritable: Bool) {
        if isWritable { acknowledge() }
    }

    /// The stream's outgoing buffer drained: read from the upstream again.
    func resumeUpstreamIfRoom() {
        if usesHTTP2Upstream {
            acknowledgeResponse()
            return
        }
        guard upstreamPaused, connection.bufferedBody(id) < HTTP2Connection.streamBufferLimit / 2 else { return }
        upstreamPaused = false
        upstream?.read()
    }

    // MARK: Ends

    /// The client reset the stream, or it completed: an upstream still busy with it is closed (out of step).
    func closed(errorCode: UInt32) {
        deferredStart = nil
        timer.cancel()
        exchangeDeadline?.cancel()
        // The client gave up (or the exchange is over): so does the target.
        detachUpstream()
        if !finished {
            exchange.log.failure = errorCode == 8 ? "client cancelled the stream" : "stream reset (error \(errorCode))"
            // 499 when nothing was answered (nginx's convention); otherwise the status that went out.
            complete(status: responseStarted ? nil : 499)
        }
    }

    /// The drain timeout passed: a stream still under way is logged as cut (status 0 when nothing was answered)
    /// and let go. Returns 1 if it was under way.
    func cut() -> Int {
        deferredStart = nil
        timer.cancel()
        exchangeDeadline?.cancel()
        detachUpstream()
        guard !finished else { return 0 }
        exchange.log.failure = "cut at the drain timeout"
        complete(status: responseStarted ? nil : 0)
        return 1
    }

    func clientGone() {
        deferredStart = nil
        closed(errorCode: 8)
    }

    /// Lets go of whatever upstream still works on this request: an HTTP/1.1 connection is closed (which detaches
    /// its delegate), an HTTP/2 stream reset with CANCEL (`cancel` does nothing for a stream that already ended).
    /// Called wherever the exchange ends early, so that no upstream keeps this stream as its delegate: a stream
    /// outlives its `unowned` connection only while something else holds it, and an upstream that did could call
    /// it after the client's connection was gone.
    private func detachUpstream() {
        if let upstream {
            self.upstream = nil
            upstream.close()
        }
        if let h2Upstream, let h2Stream { h2Upstream.cancel(h2Stream) }
        h2Upstream = nil
    }

    private func finishLocally(status: Int, failure: String) {
        guard !finished else { return }
        detachUpstream()
        if responseStarted {
            complete()
            connection.reset(id, errorCode: 2)
            return
        }
        exchange.log.failure = failure
        respond(.error(status))
    }

    /// Answers the request locally (an error, a filter's answer).
    private func respond(_ response: LocalResponse) {
        if response.status >= 400 { runtime.counters.errors &+= 1 }
        respond(
            status: response.status, fields: response.fields.map { HTTP2Field($0.name.lowercased(), $0.value) },
            body: response.body)
    }

    /// A route's fixed response (rendered as HTTP/1.1 text once per configuration).
    private func respondWithRendered(_ rendered: ByteBuffer, body: ByteBuffer) {
        // (Split on the string "\r\n": to Swift, CR LF is one Character.)
        let lines = String(buffer: rendered).components(separatedBy: "\r\n")
        let status = Int(lines[0].dropFirst(9).prefix(3)) ?? 200
        let fields = Self.fields(ofRendered: lines.dropFirst().joined(separator: "\r\n"))
            .filter { $0.name != "content-length" }
        respond(status: status, fields: fields, body: body)
    }

    private func respond(status: Int, fields: [HTTP2Field], body: ByteBuffer) {
        let sendsBody = !exchange.isHeadRequest && body.readableBytes > 0
        var all = [HTTP2Field(":status", String(status))] + fields
        exchange.forEachLowercasedResponseField(runtime: runtime, routes: connection.routes) { name, value, unique in
            all.append(HTTP2Field(
                String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self), neverIndexed: unique))
        }
        all.append(HTTP2Field("content-length", String(body.readableBytes)))
        responseStarted = true
        exchange.log.status = status
        exchange.log.bytesOut = body.readableBytes
        connection.respond(id, fields: all, hasBody: sendsBody)
        if sendsBody {
            connection.sendBody(id, body)
            connection.finishBody(id)
        }
        complete()
        connection.scheduleFlush()
    }

    /// "Name: value\r\n" lines (a route's rendered header edits, a fixed response's head) as HTTP/2 fields.
    static func fields(ofRendered rendered: String) -> [HTTP2Field] {
        rendered.split(separator: "\r\n").compactMap { line in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return HTTP2Field(line[..<colon].lowercased(), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
    }

    // MARK: HTTP/2 upstreams

    /// Proxies the stream to an HTTP/2 target as a stream there: fields pass as HTTP/2 fields (with the route's
    /// edits and X-Forwarded-*), and trailers pass both ways (gRPC's status travels in them).
    private func proxyOverHTTP2(_ pool: UpstreamPool, fields: [HTTP2Field], route: CompiledRoute) {
        usesHTTP2Upstream = true
        // Made once: a retry sends the same fields (the same X-Request-Id) to the next target.
        h2RequestFields = http2UpstreamFields(fields, route: route, tls: pool.settings.tls != nil)
        openHTTP2Stream(pool: pool, route: route)
    }

    /// A stream for the request on a connection to one of the pool's targets (never one that failed it already).
    private func openHTTP2Stream(pool: UpstreamPool, route: CompiledRoute) {
        let upstreamFields = h2RequestFields ?? []
        exchange.log.mark(.asked)
        pool.acquireHTTP2(
            hashKey: exchange.balancingHash, excluding: exchange.retries.failedTargets,
            connectTimeout: route.timeouts.connect, preferring: exchange.stickyTarget
        ) { result in
            switch result {
            case .failure(var failure):
                // A retry that finds no other target answers with what the failed attempt got.
                if case .noTarget = failure, let previous = self.exchange.retries.lastFailure { failure = previous }
                self.finishLocally(status: failure.status, failure: failure.reason)
            case .success(let upstream):
                guard !self.finished,
                    let stream = upstream.open(
                        fields: upstreamFields, hasBody: !self.requestComplete || !self.pendingBody.isEmpty,
                        delegate: self)
                else {
                    pool.http2StreamEnded(upstream, failed: false)
                    self.finishLocally(status: 502, failure: "the HTTP/2 upstream connection refused a new stream")
                    return
                }
                self.h2Upstream = upstream
                self.h2Stream = stream
                self.exchange.log.mark(.connected)
                self.exchange.log.upstreamTarget = pool.targetDescription(upstream.target)
                for bytes in self.pendingBody {
                    upstream.sendBody(stream, bytes)
                    self.requestUnacknowledged += self.notAcknowledgedYet(bytes.readableBytes)
                }
                self.pendingBody = []
                if self.requestComplete { upstream.finishBody(stream, trailers: self.requestTrailers) }
                self.acknowledgeRequest()
                self.armHTTP2ResponseTimer(pool: pool, route: route)
            }
        }
    }

    private func armHTTP2ResponseTimer(pool: UpstreamPool, route: CompiledRoute) {
        guard !finished else { return }
        timer.arm(.response, after: route.responseTimeout ?? pool.responseTimeout)
    }

    /// The request's fields for the target: pseudo-headers (path rewritten, Host overridden as the route says),
    /// the client's fields minus what the route removes and what only Jester may say, then the additions.
    private func http2UpstreamFields(_ fields: [HTTP2Field], route: CompiledRoute, tls upstreamTLS: Bool) -> [HTTP2Field] {
        var method = "GET"
        var path = "/"
        var authority = ""
        var forwardedFor: [String] = []
        var passed: [HTTP2Field] = []
        exchange.assignRequestID(runtime: runtime)
        let requestIDName = runtime.requestIDField.http2Name
        let subjectHeader = connection.clientSubjectHeader.map { String(decoding: $0, as: UTF8.self).lowercased() }
        let filterFields = exchange.upstreamFilterFields.map { HTTP2Field($0.name.lowercased(), $0.value) }
        for field in fields {
            switch field.name {
            case ":method": method = field.value
            case ":path": path = field.value
            case ":authority": authority = field.value
            case "host": if authority.isEmpty { authority = field.value }
            case let name where name.hasPrefix(":"): continue
            case "x-forwarded-for": forwardedFor.append(field.value)
            case "x-forwarded-proto", "x-forwarded-host", "forwarded": continue
            case subjectHeader: continue
            case requestIDName:
                // The client's own id goes on; one Jester replaced (too long) does not.
                if case .client = exchange.requestID { passed.append(field) }
            default:
                if field.name.contains("_"), runtime.dropsUnderscoredFields { continue }
                // Only the filters say what they found out (a forwarded claim).
                if !filterFields.isEmpty, filterFields.contains(where: { $0.name == field.name }) { continue }
                if !route.requestEdits.isEmpty,
                    Array(field.name.utf8).withUnsafeBytes({ route.requestEdits.drops($0, 0..<$0.count) })
                {
                    continue
                }
                passed.append(field)
            }
        }
        if let headBytes = exchange.headBytes {
            let rewritten: String? = headBytes.withUnsafeReadableBytes { bytes in
                route.pathRewrite.rewrite(bytes, path: exchange.head.path).map { newPath in
                    String(decoding: newPath, as: UTF8.self)
                        + String(decoding: UnsafeRawBufferPointer(rebasing: bytes[exchange.head.path.upperBound..<exchange.head.target.upperBound]), as: UTF8.self)
                }
            }
            if let rewritten { path = rewritten }
        }
        var out = [
            HTTP2Field(":method", method), HTTP2Field(":scheme", upstreamTLS ? "https" : "http"),
            HTTP2Field(":authority", route.upstreamHost.map { String(decoding: $0, as: UTF8.self) } ?? authority),
            HTTP2Field(":path", path),
        ]
        out += passed
        out += route.requestEdits.appended.map { HTTP2Field($0.name, $0.value) }
        out += filterFields.filter { !$0.value.isEmpty }
        let client = connection.clientAddress
        let scheme = connection.tls == nil ? "http" : "https"
        out.append(HTTP2Field("x-forwarded-for", (forwardedFor + [client]).joined(separator: ", ")))
        out.append(HTTP2Field("x-forwarded-proto", scheme))
        if !authority.isEmpty { out.append(HTTP2Field("x-forwarded-host", authority)) }
        if runtime.configuration.http.forwardedHeader {
            // RFC 7239, as `UpstreamRequest` writes it for HTTP/1.1 upstreams.
            let forValue = client.contains(":") ? "\"[\(client)]\"" : client
            out.append(HTTP2Field(
                "forwarded", "for=\(forValue);proto=\(scheme)" + (authority.isEmpty ? "" : ";host=\"\(authority)\"")))
        }
        if let subjectHeader, let subject = connection.tls?.clientCertificateSubject {
            out.append(HTTP2Field(subjectHeader, String(subject.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) })))
        }
        if case .generated = exchange.requestID {
            out.append(HTTP2Field(requestIDName, exchange.withRequestID(runtime: runtime) {
                String(decoding: $0, as: UTF8.self)
            }, neverIndexed: true))
        }
        return out
    }

    private func acknowledgeRequest() {
        guard requestUnacknowledged > 0, let h2Upstream, let h2Stream,
            h2Upstream.bufferedBody(h2Stream) < Self.acknowledgeBelow
        else { return }
        connection.consumed(id, count: requestUnacknowledged)
        requestUnacknowledged = 0
        connection.scheduleFlush()
    }

    private func acknowledgeResponse() {
        guard responseUnacknowledged > 0, let h2Upstream, let h2Stream,
            connection.bufferedBody(id) < Self.acknowledgeBelow
        else { return }
        h2Upstream.consumed(h2Stream, count: responseUnacknowledged)
        responseUnacknowledged = 0
    }

    /// `timeout`: the whole exchange; a response under way is cut short with a reset, visibly.
    private func armRouteTimers(_ route: CompiledRoute) {
        guard let total = route.totalTimeout else { return }
        let deadline = ConnectionTimer()
        // Strong, like `timer`: `closed` cancels it.
        deadline.setup(queue: runtime.timers) { _ in self.timedOut("route timeout") }
        deadline.arm(.response, after: total)
        exchangeDeadline = deadline
    }

    /// `client_body_timeout` while the body streams to an HTTP/1.1 upstream (or is held whole before it goes), as
    /// on HTTP/1.1: a body that stops coming gets 408 rather than holding the stream, and its upstream connection,
    /// until the client leaves. Every DATA frame re-arms it; the response timeout replaces it once the body is
    /// complete. (Not for h2 upstreams, whose response timeout runs from the start: gRPC streams both ways.)
    private func armBodyTimer() {
        guard !requestComplete, !finished, !usesHTTP2Upstream, !responseStarted else { return }
        timer.arm(.body, after: runtime.timeouts.body)
    }

    /// `read_timeout`: re-armed by every part of the response.
    private func armReadTimer() {
        guard let read = exchange.route?.readTimeout, !finished else { return }
        timer.arm(.upstreamRead, after: read)
    }

    private func timerFired(_ purpose: ConnectionTimer.Purpose) {
        switch purpose {
        case .response:
            guard !responseStarted, !finished else { return }
            finishLocally(status: 504, failure: UpstreamFailure.responseTimedOut.reason)
        case .upstreamRead:
            timedOut("upstream read timeout")
        case .body:
            if peekedBody != nil {
                // The body matchers waited for a body that stopped coming.
                peekedBody = nil
                finishLocally(status: 408, failure: "client body timeout")
                return
            }
            guard !requestComplete, !finished, !responseStarted else { return }
            // Bytes Jester has not acknowledged (no upstream connection yet, or one not taking more) are its own
            // pause, not the client's. (A body held whole before it goes fits one window: never paused so.)
            if deferredStart == nil, !pendingBody.isEmpty || unacknowledged > 0 {
                timer.arm(.body, after: runtime.timeouts.body)
                return
            }
            finishLocally(status: 408, failure: "client body timeout")
        default:
            break
        }
    }

    private func timedOut(_ reason: String) {
        guard !finished else { return }
        detachUpstream()
        if responseStarted {
            exchange.log.failure = reason
            complete()
            connection.reset(id, errorCode: 2)
        } else {
            finishLocally(status: 504, failure: reason)
        }
    }

    private func complete(status: Int? = nil) {
        guard !finished else { return }
        finished = true
        timer.disarm()
        exchangeDeadline?.disarm()
        exchange.writeLog(status: status, protocol: "HTTP/2.0", tls: connection.tls, runtime: runtime)
        exchange.end()
    }
}

extension HTTP2Stream {
    // MARK: HTTP2UpstreamStreamDelegate

    // (Each of these is a no-op once the exchange finished: `detachUpstream` made sure no more arrive, and a
    // finished stream may have lost its connection.)

    func upstreamHeaders(_ fields: [HTTP2Field], endStream: Bool) {
        guard !finished else { return }
        timer.disarm()
        let status = fields.first { $0.name == ":status" }.flatMap { Int($0.value) } ?? 502
        if status >= 200 {
            exchange.log.upstreamStatus = status
            exchange.log.mark(.responseHead)
        }
        if status < 200 {
            // An interim response goes on as one (a 100 that the client's `expect: 100-continue` waits for).
            connection.respondInterim(id, status: status)
            connection.scheduleFlush()
            return
        }
        if status >= 500, let upstream = h2Upstream, let stream = h2Stream,
            exchange.route?.retryPolicy.statuses.contains(status) == true,
            retry(.status(status), target: upstream.target, pool: upstream.pool, abandoning: {
                // Not forwarded: the answer is dropped with its stream, and the request goes elsewhere.
                h2Upstream = nil
                h2Stream = nil
                upstream.cancel(stream)
            })
        {
            return
        }
        let route = exchange.route
        var out = [HTTP2Field(":status", String(status))]
        let requestIDName = runtime.requestIDField.http2Name
        for field in fields where !field.name.hasPrefix(":") && !Self.connectionSpecific.contains(field.name) {
            // RFC 9110 §8.6: no Content-Length on a 204, whatever the upstream sent.
            if status == 204, field.name == "content-length" { continue }
            // The request id is written once below, whatever the upstream echoed.
            if field.name == requestIDName { continue }
            if route?.responseEdits.isEmpty == false, Array(field.name.utf8).withUnsafeBytes({
                RequestExchange.dropsUpstreamField($0, name: 0..<$0.count, route: route)
            }) {
                continue
            }
            out.append(field)
        }
        exchange.forEachLowercasedUpstreamResponseAddition(
            target: h2Upstream?.target ?? 0, secure: connection.tls != nil, runtime: runtime, routes: connection.routes
        ) { name, value, unique in
            out.append(HTTP2Field(
                String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self), neverIndexed: unique))
        }
        responseStarted = true
        responseHasBody = !endStream
        exchange.log.status = status
        connection.respond(id, fields: out, hasBody: !endStream)
        if endStream { completeHTTP2Response() }
        connection.scheduleFlush()
    }

    func upstreamData(_ bytes: ByteBuffer) {
        guard !finished else { return }
        exchange.log.bytesOut += bytes.readableBytes
        armReadTimer()
        responseUnacknowledged += bytes.readableBytes
        connection.sendBody(id, bytes)
        acknowledgeResponse()
        connection.scheduleFlush()
    }

    func upstreamTrailers(_ fields: [HTTP2Field]) {
        guard !finished else { return }
        connection.finishBody(id, trailers: fields.filter { !Self.connectionSpecific.contains($0.name) })
        completeHTTP2Response()
        connection.scheduleFlush()
    }

    func upstreamEnded() {
        guard !finished else { return }
        connection.finishBody(id)
        completeHTTP2Response()
        connection.scheduleFlush()
    }

    func upstreamStreamFailed(_ reason: String) {
        let failed = h2Upstream
        h2Upstream = nil
        h2Stream = nil
        guard !finished else { return }
        exchange.log.failure = reason
        if responseStarted {
            complete()
            connection.reset(id, errorCode: 2)
            return
        }
        // Nothing was answered: the request may go to another target, as on HTTP/1.1 pools.
        if let failed, retry(.reset, target: failed.target, pool: failed.pool) {
            exchange.retries.lastFailure = .connectFailed(reason)
            return
        }
        finishLocally(status: 502, failure: reason)
    }

    func upstreamDrained() {
        guard !finished else { return }
        acknowledgeRequest()
    }

    /// The target's response ended. If the client is still sending the request body, the target has said all it
    /// will: its stream is reset (CANCEL), or it would stay open there, holding one of the connection's stream
    /// slots and this stream as its delegate; the rest of the client's body is read and dropped.
    private func completeHTTP2Response() {
        exchange.log.mark(.responseEnd)
        if !requestComplete, let h2Upstream, let h2Stream { h2Upstream.cancel(h2Stream) }
        h2Upstream = nil
        complete()
    }
}
