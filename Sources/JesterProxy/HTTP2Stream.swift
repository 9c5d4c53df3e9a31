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
    private var head = HTTPHead()
    private var headBytes: ByteBuffer?
    private var route: CompiledRoute?
    private var upstream: UpstreamConnection?
    private var requestIsHead = false
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
    private var log = AccessLog.Record()
    /// Sticky sessions: the target the request's cookie names.
    private var stickyTarget: Int?
    /// The pool's balancing hash of the request, kept for a second attempt.
    private var balancingHash: UInt64?
    // Second attempts on HTTP/1.1 pools, as for HTTP/1 clients (see DownstreamConnection.upstreamFailed and
    // retry): a replay on a fresh connection when a reused one closes before answering, and the route's retries.
    private var requestIsIdempotent = false
    private var requestHasBody = false
    private var replays = 0
    private var retries = RetryAttempts()
    // An HTTP/2 upstream (`protocol = "h2"`): the stream there, and byte counts not yet acknowledged each way.
    private var h2Upstream: HTTP2UpstreamConnection?
    private var h2Stream: Int32?
    private var usesHTTP2Upstream = false
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
        requestHasBody = !endStream
        guard let bytes = Self.translate(fields, hasBody: !endStream, allocator: runtime.allocator) else {
            finishLocally(status: 400, failure: "HTTP/2 request without :method, :path or :authority")
            return
        }
        let parser = HTTPHeadParser(limits: runtime.parserLimits)
        let error = bytes.withUnsafeReadableBytes { parser.parseRequest($0, into: &head) }
        headBytes = bytes
        log.begin(head: head, bytes: bytes, client: connection.clientAddress, detailed: runtime.accessLog != nil)
        if let error {
            // The same strict rules as HTTP/1: bytes nghttp2 lets through (in a :path, say) still get a 400 here.
            finishLocally(status: error.status, failure: error.reason)
            return
        }
        if runtime.rejectsUnderscoredFields, head.fields.contains(where: \.hasUnderscore) {
            finishLocally(status: 400, failure: HTTPParseError.underscoreInFieldName.reason)
            return
        }
        if !connection.takeRequestToken() {
            finishLocally(status: 429, failure: "connection_request_rate exceeded")
            return
        }
        let peekLimit = connection.routes.bodyPeekLimit
        if peekLimit > 0, !endStream {
            // Some route of this listener matches on the body: its start arrives in DATA frames before the
            // route can be chosen (`requestData`, `requestEnded`).
            peekedBody = []
            fieldsAwaitingRoute = fields
            timer.arm(.body, after: runtime.timeouts.body)
            return
        }
        route(fields: fields, bytes: bytes, body: peekLimit > 0 ? .empty : nil)
    }

    /// Chooses the request's route (`body`: the start of the body when some route looks at it) and acts on it.
    private func route(fields: [HTTP2Field], bytes: ByteBuffer, body: BodyPeek?) {
        let tls = connection.tls.map { TLSRouteFacts(serverName: $0.serverName, clientSubject: $0.clientCertificateSubject) }
        let matched = bytes.withUnsafeReadableBytes {
            connection.routes.match($0, head: head, client: connection.clientIP, tls: tls, body: body)
        }
        guard let matched else {
            finishLocally(status: 404, failure: "")
            return
        }
        route = matched
        log.route = matched.name
        (requestIsHead, requestIsIdempotent) = bytes.withUnsafeReadableBytes {
            (RequestMethod.isHead($0, head.method), RequestMethod.isIdempotent($0, head.method))
        }
        chunked = head.isChunked
        if let length = head.contentLength, length > matched.maxBodySize {
            finishLocally(status: 413, failure: "")
            return
        }
        if requestBodyBytes > matched.maxBodySize {
            // (Read while the body matchers looked at it.)
            finishLocally(status: 413, failure: "request body larger than \(matched.maxBodySize) bytes")
            return
        }
        switch matched.action {
        case .respond(let responseHead, let body):
            dropHeldBody()
            respondWithRendered(responseHead, body: body)
        case .proxy, .split:
            // A small body with a declared length is held until it is complete: nghttp2 checks the length
            // against the DATA only at the end of the stream, and a request that fails the check must not have
            // reached an upstream at all (a larger one streams; if it fails, the upstream connection is cut
            // before the body completes, so the upstream never sees a complete, different request).
            if !requestComplete, let length = head.contentLength, length <= Self.heldBodyLimit {
                deferredStart = { [unowned self] in self.proxy(matched, fields: fields) }
                return
            }
            proxy(matched, fields: fields)
        }
    }

    /// Declared body lengths up to this are received whole before the request goes upstream (one window).
    static let heldBodyLimit: Int64 = 65_535

    private func proxy(_ matched: CompiledRoute, fields: [HTTP2Field]) {
        guard !finished, let bytes = headBytes else { return }
        switch matched.action {
        case .respond:
            return
        case .proxy, .split:
            let pool = bytes.withUnsafeReadableBytes {
                matched.action.pool(head: head, bytes: $0, clientAddress: connection.clientAddress)!
            }
            log.upstream = pool.name
            let hash = bytes.withUnsafeReadableBytes {
                pool.hashKey(head: head, bytes: $0, clientAddress: connection.clientAddress)
            }
            armRouteTimers(matched)
            stickyTarget = pool.stickyCookie.flatMap { name in
                bytes.withUnsafeReadableBytes { raw in
                    BalancingKey.cookie(name, head: head, bytes: raw).flatMap {
                        pool.stickyTarget(UnsafeRawBufferPointer(rebasing: raw[$0]))
                    }
                }
            }
            if pool.speaksHTTP2 {
                proxyOverHTTP2(pool, fields: fields, route: matched, hash: hash)
                return
            }
            balancingHash = hash
            acquireUpstream(from: pool, fresh: false)
        }
    }

    private func acquireUpstream(from pool: UpstreamPool, fresh: Bool) {
        pool.acquire(hashKey: balancingHash, fresh: fresh, excluding: retries.failedTargets,
            connectTimeout: route?.timeouts.connect, preferring: stickyTarget,
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
        guard !finished, let route, let headBytes else {
            if case .success(let upstream) = result { pool.release(upstream, reusable: true) }
            return
        }
        switch result {
        case .failure(var failure):
            // A retry that finds no other target answers with what the failed attempt got.
            if case .noTarget = failure, let previous = retries.lastFailure { failure = previous }
            finishLocally(status: failure.status, failure: failure.reason)
        case .success(let upstream):
            self.upstream = upstream
            log.upstreamTarget = upstream.targetDescription
            let request = UpstreamRequest(
                runtime: runtime, route: route, clientAddress: connection.clientAddress, tls: connection.tls,
                clientSubjectHeader: connection.clientSubjectHeader, chunked: chunked, upgrade: false)
            let (rendered, requestID) = headBytes.withUnsafeReadableBytes {
                request.renderHead($0, head: head, target: upstream.targetDescription, allocator: runtime.allocator)
            }
            log.requestID = requestID
            upstream.startExchange(delegate: self, requestHead: rendered, isHeadRequest: requestIsHead, expectsUpgrade: false)
            for bytes in pendingBody { forward(bytes) }
            pendingBody = []
            if requestComplete { endRequestBody() }
            upstream.flush()
            acknowledge()
        }
    }

    func requestData(_ bytes: ByteBuffer) {
        requestBodyBytes += Int64(bytes.readableBytes)
        log.bytesIn += bytes.readableBytes
        if peekedBody != nil {
            hold(bytes)
            return
        }
        if let route, requestBodyBytes > route.maxBodySize {
            // Acknowledged like any dropped DATA, or the connection's window would shrink for every stream.
            connection.consumed(id, count: bytes.readableBytes)
            finishLocally(status: 413, failure: "request body larger than \(route.maxBodySize) bytes")
            return
        }
        guard !finished, let route, !route.action.isLocal else {
            // Answered locally (or already finished): the body is read and dropped.
            connection.consumed(id, count: bytes.readableBytes)
            return
        }
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
        guard let peeked = peekedBody, let headBytes, !finished else { return }
        peekedBody = nil
        let fields = fieldsAwaitingRoute
        fieldsAwaitingRoute = []
        timer.disarm()
        let limit = connection.routes.bodyPeekLimit
        route(fields: fields, bytes: headBytes, body: BodyPeek(bytes: Array(peeked.prefix(limit)), isComplete: isComplete))
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
        guard let route, let pool = upstream?.pool, !finished else { return }
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
        if response.status < 200 {
            // 1xx: 100 Continue has no meaning here (the client does not wait for it in HTTP/2); a 101 never
            // arrives (no upgrade is forwarded, and `UpstreamConnection` refuses one nobody asked for).
            return
        }
        if response.status >= 500, let upstream, route?.retryPolicy.statuses.contains(response.status) == true,
            retry(.status(response.status), from: upstream, abandoning: {
                // Not forwarded: the answer is thrown away with its connection, and the request goes elsewhere.
                upstream.finished(failed: (502...504).contains(response.status))
                self.upstream = nil
                upstream.close()
            })
        {
            return
        }
        let edits = route?.responseEdits ?? HeaderEdits()
        var fields = HTTP2HeaderBlock(
            reservingBytes: bytes.readableBytes, fields: response.fields.count + edits.appended.count + 2)
        fields.append(":status", String(response.status))
        bytes.withUnsafeReadableBytes { raw in
            // Hop-by-hop covers every field HTTP/2 forbids (RFC 9113 §8.2.2): Connection, Keep-Alive,
            // Proxy-Connection, Transfer-Encoding, Upgrade, and whatever Connection named.
            // Content-Length is written once below: the upstream may send a list ("5, 5") or repeat the field,
            // which the parser accepted as one length, and HTTP/2 clients must see one value as HTTP/1 ones do.
            for field in response.fields where !field.isHopByHop && field.kind != .contentLength {
                if !edits.isEmpty, edits.drops(raw, field.name) { continue }
                fields.append(
                    lowercasing: UnsafeRawBufferPointer(rebasing: raw[field.name]),
                    value: UnsafeRawBufferPointer(rebasing: raw[field.value]))
            }
        }
        if let length = response.forwardedContentLength { fields.append("content-length", String(length)) }
        for field in edits.appended { fields.append(field.name, field.value) }
        if let upstream, let cookie = stickyCookie(for: upstream.pool, target: upstream.target) {
            fields.append("set-cookie", cookie)
        }
        responseHasBody = BodyFraming.response(response, requestWasHead: requestIsHead) != .none
        armReadTimer()
        responseStarted = true
        log.status = response.status
        connection.respond(id, headers: fields, hasBody: responseHasBody)
        connection.scheduleFlush()
    }

    /// The Set-Cookie value that sticks the client to `target`, when the pool is sticky and the client is new to
    /// it (or its target went away).
    private func stickyCookie(for pool: UpstreamPool, target: Int) -> String? {
        guard let name = pool.stickyCookie, target != stickyTarget else { return nil }
        let token = String(decoding: pool.stickyTokens[target], as: UTF8.self)
        return "\(String(decoding: name, as: UTF8.self))=\(token); Path=/; HttpOnly; SameSite=Lax"
            + (connection.tls == nil ? "" : "; Secure")
    }

    /// Fields that HTTP/2 forbids (RFC 9113 §8.2.2), dropped even when the upstream did not name them hop-by-hop.
    static let connectionSpecific: Set<String> = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]

    func upstreamResponseBody(_ body: ByteBuffer) {
        log.bytesOut += body.readableBytes
        armReadTimer()
        connection.sendBody(id, body)
    }

    func upstreamResponseEnd(reusable: Bool) {
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
        log.failure = failure.reason
        if started || responseStarted {
            // Part of the response went out: a reset is the only honest end (the client sees it incomplete).
            complete()
            connection.reset(id, errorCode: 2)
            return
        }
        // A reused keep-alive connection the upstream closed as the request went out (its idle timeout, a
        // restart): nothing was answered, so an idempotent request without a body goes again on a new connection.
        if case .closedEarly = failure, let failed, failed.completedExchanges > 0, requestIsIdempotent,
            !requestHasBody, replays < DownstreamConnection.maxReplays, !finished
        {
            replays += 1
            runtime.counters.upstreamReplays &+= 1
            log.failure = ""
            timer.disarm()
            acquireUpstream(from: failed.pool, fresh: true)
            return
        }
        if case .closedEarly = failure, let failed, retry(.reset, from: failed) {
            retries.lastFailure = failure
            return
        }
        finishLocally(status: failure.status, failure: failure.reason)
    }

    /// Sends the request again, to another target, when the route's retry policy and the pool's retry budget
    /// allow it; true when a retry is on its way (after a short jittered backoff).
    private func retry(
        _ reason: RetryPolicy.Reason, from failed: UpstreamConnection, abandoning abandon: () -> Void = {}
    ) -> Bool {
        guard let route, !finished, requestComplete else { return false }
        let pool = failed.pool
        let delay: Double
        switch retries.next(after: reason, policy: route.retryPolicy, idempotent: requestIsIdempotent,
            hasBody: requestHasBody, target: failed.target, pool: pool)
        {
        case .notAllowed:
            return false
        case .budgetExhausted:
            log.failure += "; retry budget exhausted"
            return false
        case .retry(let seconds):
            delay = seconds
        }
        abandon()
        runtime.counters.upstreamRetries &+= 1
        log.failure = ""
        // The response timeout starts again with the next attempt.
        timer.disarm()
        runtime.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(Int64(delay * 1e9))) {
            guard !self.finished, self.upstream == nil else { return }
            self.acquireUpstream(from: pool, fresh: false)
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
            log.failure = errorCode == 8 ? "client cancelled the stream" : "stream reset (error \(errorCode))"
            complete(status: 499)
        }
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
        if status >= 400 { runtime.counters.errors &+= 1 }
        log.failure = failure
        let body = "\(status) \(HTTPStatus.reason(status))\n"
        respond(status: status, fields: [HTTP2Field("content-type", "text/plain; charset=utf-8")], body: ByteBuffer(string: body))
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
        let sendsBody = !requestIsHead && body.readableBytes > 0
        var all = [HTTP2Field(":status", String(status))] + fields
        all.append(HTTP2Field("content-length", String(body.readableBytes)))
        responseStarted = true
        log.status = status
        log.bytesOut = body.readableBytes
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
    private func proxyOverHTTP2(_ pool: UpstreamPool, fields: [HTTP2Field], route: CompiledRoute, hash: UInt64?) {
        usesHTTP2Upstream = true
        let upstreamFields = http2UpstreamFields(fields, route: route, tls: pool.settings.tls != nil)
        pool.acquireHTTP2(hashKey: hash, connectTimeout: route.timeouts.connect, preferring: stickyTarget) { result in
            switch result {
            case .failure(let failure):
                self.finishLocally(status: failure.status, failure: failure.reason)
            case .success(let upstream):
                guard !self.finished,
                    let stream = upstream.open(
                        fields: upstreamFields, hasBody: !self.requestComplete || !self.pendingBody.isEmpty, delegate: self)
                else {
                    pool.http2StreamEnded(upstream, failed: false)
                    self.finishLocally(status: 502, failure: "the HTTP/2 upstream connection refused a new stream")
                    return
                }
                self.h2Upstream = upstream
                self.h2Stream = stream
                self.log.upstreamTarget = pool.targetDescription(upstream.target)
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
        var requestID: String?
        var passed: [HTTP2Field] = []
        let subjectHeader = connection.clientSubjectHeader.map { String(decoding: $0, as: UTF8.self).lowercased() }
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
            case "x-request-id" where !field.value.isEmpty && field.value.utf8.count <= 128:
                requestID = field.value
                passed.append(field)
            default:
                if field.name.contains("_"), runtime.dropsUnderscoredFields { continue }
                if !route.requestEdits.isEmpty,
                    Array(field.name.utf8).withUnsafeBytes({ route.requestEdits.drops($0, 0..<$0.count) })
                {
                    continue
                }
                passed.append(field)
            }
        }
        if let headBytes {
            let rewritten: String? = headBytes.withUnsafeReadableBytes { bytes in
                route.pathRewrite.rewrite(bytes, path: head.path).map { newPath in
                    String(decoding: newPath, as: UTF8.self)
                        + String(decoding: UnsafeRawBufferPointer(rebasing: bytes[head.path.upperBound..<head.target.upperBound]), as: UTF8.self)
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
        out.append(HTTP2Field("x-forwarded-for", (forwardedFor + [connection.clientAddress]).joined(separator: ", ")))
        out.append(HTTP2Field("x-forwarded-proto", connection.tls == nil ? "http" : "https"))
        if !authority.isEmpty { out.append(HTTP2Field("x-forwarded-host", authority)) }
        if let subjectHeader, let subject = connection.tls?.clientCertificateSubject {
            out.append(HTTP2Field(subjectHeader, String(subject.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) })))
        }
        if requestID == nil {
            let id = runtime.requestIDs.withNextID { String(decoding: $0, as: UTF8.self) }
            out.append(HTTP2Field("x-request-id", id))
            requestID = id
        }
        if runtime.accessLog != nil { log.requestID = requestID ?? "" }
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

    /// `read_timeout`: re-armed by every part of the response.
    private func armReadTimer() {
        guard let read = route?.readTimeout, !finished else { return }
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
            // The body matchers waited for a body that stopped coming.
            guard peekedBody != nil else { return }
            peekedBody = nil
            finishLocally(status: 408, failure: "client body timeout")
        default:
            break
        }
    }

    private func timedOut(_ reason: String) {
        guard !finished else { return }
        detachUpstream()
        if responseStarted {
            log.failure = reason
            complete()
            connection.reset(id, errorCode: 2)
        } else {
            finishLocally(status: 504, failure: reason)
        }
    }

    private func complete(status: Int? = nil) {
        guard !finished else { return }
        finished = true
        retries.finish()
        timer.disarm()
        exchangeDeadline?.disarm()
        if let accessLog = runtime.accessLog {
            if let status { log.status = status }
            accessLog.write(log, protocol: "HTTP/2.0", tls: connection.tls)
        }
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
        // An interim (1xx) response carries nothing a client of this proxy needs.
        if status < 200 { return }
        let edits = route?.responseEdits ?? HeaderEdits()
        var out = [HTTP2Field(":status", String(status))]
        for field in fields where !field.name.hasPrefix(":") && !Self.connectionSpecific.contains(field.name) {
            // RFC 9110 §8.6: no Content-Length on a 204, whatever the upstream sent.
            if status == 204, field.name == "content-length" { continue }
            if !edits.isEmpty, Array(field.name.utf8).withUnsafeBytes({ edits.drops($0, 0..<$0.count) }) { continue }
            out.append(field)
        }
        out += edits.appended.map { HTTP2Field($0.name, $0.value) }
        if let h2Upstream, let cookie = stickyCookie(for: h2Upstream.pool, target: h2Upstream.target) {
            out.append(HTTP2Field("set-cookie", cookie))
        }
        responseStarted = true
        responseHasBody = !endStream
        log.status = status
        connection.respond(id, fields: out, hasBody: !endStream)
        if endStream { completeHTTP2Response() }
        connection.scheduleFlush()
    }

    func upstreamData(_ bytes: ByteBuffer) {
        guard !finished else { return }
        log.bytesOut += bytes.readableBytes
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
        h2Upstream = nil
        guard !finished else { return }
        log.failure = reason
        if responseStarted {
            complete()
            connection.reset(id, errorCode: 2)
        } else {
            finishLocally(status: 502, failure: reason)
        }
    }

    func upstreamDrained() {
        guard !finished else { return }
        acknowledgeRequest()
    }

    /// The target's response ended. If the client is still sending the request body, the target has said all it
    /// will: its stream is reset (CANCEL), or it would stay open there, holding one of the connection's stream
    /// slots and this stream as its delegate; the rest of the client's body is read and dropped.
    private func completeHTTP2Response() {
        if !requestComplete, let h2Upstream, let h2Stream { h2Upstream.cancel(h2Stream) }
        h2Upstream = nil
        complete()
    }
}
