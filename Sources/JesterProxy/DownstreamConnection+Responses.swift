// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterCore
import JesterTLS
import NIOCore

/// Heads rewritten both ways (the request for the upstream, the upstream's response for the client), local
/// answers, the end of an exchange, and the connection's timers.
extension DownstreamConnection {
    // MARK: Head rewriting

    /// Who the client is and what it connected to, for a PROXY header to the upstream (`send_proxy_protocol`).
    func proxyAddresses() -> ProxyProtocol.Addresses? {
        if let proxiedClient { return proxiedClient }
        guard let peer = context.channel.remoteAddress, let local = context.channel.localAddress,
            let source = peer.ipAddress.flatMap({ IPAddressBytes($0) }),
            let destination = local.ipAddress.flatMap({ IPAddressBytes($0) })
        else { return nil }
        return ProxyProtocol.Addresses(
            source: source, sourcePort: peer.port ?? 0, destination: destination, destinationPort: local.port ?? 0)
    }

    /// The request head sent upstream: origin-form target, HTTP/1.1, hop-by-hop fields removed, X-Forwarded-*
    /// and X-Request-Id added, framing re-declared.
    func rewriteRequestHead(_ bytes: UnsafeRawBufferPointer, target: String) -> ByteBuffer {
        let request = UpstreamRequest(
            runtime: runtime, route: exchange.route!, clientAddress: clientAddress, tls: tls,
            clientSubjectHeader: clientSubjectHeader, chunked: isChunkedUpstream, upgrade: isUpgrade,
            filterFields: exchange.upstreamFilterFields)
        exchange.assignRequestID(runtime: runtime)
        return request.renderHead(
            bytes, head: exchange.head, target: target, requestID: exchange.requestID,
            trace: exchange.upstreamTraceContext, allocator: runtime.allocator)
    }

    /// The response head sent to the client: the upstream's status line and end-to-end fields, with this
    /// connection's framing and persistence.
    func rewriteResponseHead(_ response: HTTPHead, _ bytes: UnsafeRawBufferPointer) -> ByteBuffer {
        // Room for a small body too, which `write` then appends: the whole response in one buffer.
        let smallBody = response.contentLength.map { $0 <= 4096 ? Int($0) : 0 } ?? 0
        var out = runtime.allocator.buffer(capacity: bytes.count + 64 + smallBody)
        out.writeStaticString("HTTP/1.1")
        var statusLineEnd = 8
        while statusLineEnd < bytes.count, bytes[statusLineEnd] != ASCII.cr { statusLineEnd += 1 }
        out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[8..<statusLineEnd]))
        out.writeStaticString("\r\n")
        // The request id is written once below, whatever the upstream echoed.
        let echoedID = RequestExchange.fieldWrittenByExchange(in: response, bytes, runtime: runtime)
        let route = exchange.route
        let edit = exchange.responseEdit
        for index in response.fields.indices where index != echoedID {
            let field = response.fields[index]
            guard !field.isHopByHop, field.kind != .contentLength else { continue }
            if RequestExchange.dropsUpstreamField(bytes, name: field.name, route: route) { continue }
            if let edit, edit.drops(index) { continue }
            out.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[field.line]))
            out.writeStaticString("\r\n")
        }
        if let edit {
            for field in edit.addedFields {
                out.writeString(field.name)
                out.writeStaticString(": ")
                out.writeString(field.value)
                out.writeStaticString("\r\n")
            }
        }
        // (The sticky check reads the exchange's pool, not the upstream, an existential, per response.)
        exchange.writeUpstreamResponseAdditions(
            into: &out, target: exchange.pool?.stickyCookie == nil ? 0 : upstream?.target ?? 0, secure: tls != nil,
            runtime: runtime, routes: routes)
        let keepsLength = edit.map { !$0.removesLength && ($0.body == nil || responseFraming == .none) } ?? true
        if !rechunkResponse, keepsLength, let length = response.forwardedContentLength {
            // One canonical value, whatever list form the upstream used.
            out.writeStaticString("Content-Length: ")
            out.writeDecimal(length)
            out.writeStaticString("\r\n")
        }
        if response.status == 101 {
            out.writeStaticString("Connection: upgrade\r\nUpgrade: websocket\r\n\r\n")
            return out
        }
        if rechunkResponse { out.writeStaticString("Transfer-Encoding: chunked\r\n") }
        writeConnectionField(into: &out)
        out.writeStaticString("\r\n")
        return out
    }

    /// `Connection: close` when this response ends the connection; `keep-alive` for HTTP/1.0 clients that asked.
    /// Decided here, as the head goes out: a worker that started draining meanwhile ends the connection.
    func writeConnectionField(into out: inout ByteBuffer) {
        switch persistence.responseHead(draining: runtime.isDraining) {
        case .none: break
        case .close: out.writeStaticString("Connection: close\r\n")
        case .keepAlive: out.writeStaticString("Connection: keep-alive\r\n")
        }
    }

    // MARK: Local answers

    func rejectRequest(_ error: HTTPParseError) {
        exchange.log.failure = error.reason
        respondWithError(error.status, closing: true)
    }

    /// An error answer: the route's (or listener's) error page, else a short plain-text one; nothing about
    /// upstreams or internals either way.
    func respondWithError(_ status: Int, closing: Bool) {
        respond(.error(status), closing: closing)
    }

    /// Answers the current request locally (an error, a filter's answer; a plain error with the error pages' body
    /// when the route has them). `closing`: the connection ends after it (the request's body was not read, or
    /// cannot be trusted).
    func respond(_ response: LocalResponse, closing: Bool) {
        let response = exchange.errorPage(replacing: response, runtime: runtime, routes: routes)
        if closing { persistence.endAfterExchange() }
        if responseStarted {
            // Part of a response went out already: the only honest signal left is closing the connection.
            close()
            return
        }
        if response.status >= 400 { runtime.counters.errors &+= 1 }
        let body = response.body
        var out = runtime.allocator.buffer(capacity: 160 + body.readableBytes)
        out.writeString("HTTP/1.1 \(response.status) \(HTTPStatus.reason(response.status))\r\n")
        for field in response.fields {
            out.writeString(field.name)
            out.writeStaticString(": ")
            out.writeString(field.value)
            out.writeStaticString("\r\n")
        }
        exchange.writeResponseFields(into: &out, runtime: runtime, routes: routes)
        // RFC 9110 §8.6: a 204 (a CORS preflight's answer) has no Content-Length; a 304's would have to be the
        // length of the 200 it stands for, which a local answer does not know.
        if response.status != 204, response.status != 304 {
            out.writeStaticString("Content-Length: ")
            out.writeDecimal(Int64(body.readableBytes))
            out.writeStaticString("\r\n")
        }
        writeConnectionField(into: &out)
        out.writeStaticString("\r\n")
        if !exchange.isHeadRequest { out.writeImmutableBuffer(body) }
        exchange.log.status = response.status
        exchange.log.bytesOut = body.readableBytes
        if let upstream {
            self.upstream = nil
            upstream.close()
        }
        responseStarted = true
        write(out)
        // Before proxying began (a refusal, no route) the request is complete only if it has no body: an unread
        // body cannot be told from the next request.
        let requestComplete = phase == .proxying
            ? requestBody.isComplete : exchange.headBytes != nil && BodyFraming.request(exchange.head) == .none
        finishExchange(requestComplete: requestComplete)
    }

    func write(_ bytes: ByteBuffer) {
        runtime.counters.bytesOut &+= bytes.readableBytes
        unflushed = true
        if unsent != nil {
            if unsent!.writableBytes >= bytes.readableBytes {
                var piece = bytes
                unsent!.writeBuffer(&piece)
                return
            }
            context.write(wrapOutboundOut(unsent.take()!), promise: nil)
        }
        unsent = bytes
    }

    /// Flushes what was written to the client, if anything: a flush with nothing pending still walks the
    /// pipeline and the channel's state checks, several times per request otherwise.
    func flushClient() {
        guard unflushed else { return }
        unflushed = false
        if let piece = unsent.take() { context.write(wrapOutboundOut(piece), promise: nil) }
        context.flush()
    }

    /// Ends the current exchange: logs it, then either waits for the next request or closes.
    func finishExchange(requestComplete: Bool) {
        timer.disarm()
        exchangeDeadline?.disarm()
        finishLog(status: exchange.log.status)
        exchange.end()
        requestHead = nil
        responseStarted = false
        let next = persistence.exchangeFinished(
            requestComplete: requestComplete, bufferedBytes: buffer?.readableBytes ?? 0, draining: runtime.isDraining)
        guard case .awaitNext(let idle, let processBuffered) = next, phase != .closing else {
            close()
            return
        }
        phase = .awaitingHead
        requestBody = BodyReader(.none)
        // An idle connection should not pin the receive buffer its last request arrived in.
        if !processBuffered { buffer = nil }
        flushClient()
        armIdleTimer(idle)
        if processBuffered {
            // A pipelined request is already here.
            process()
        }
        if phase == .awaitingHead { requestRead() }
    }

    func finishLog(status: Int) {
        // (A request refused before its head parsed has a record of the connection's.)
        if exchange.log.client.isEmpty { exchange.log.client = clientAddress }
        exchange.writeLog(
            status: status, protocol: exchange.head.version == .http1_0 ? "HTTP/1.0" : "HTTP/1.1", tls: tls,
            runtime: runtime, listener: metricsListener)
    }

    /// Flushes what was written and closes the connection.
    func close() {
        guard phase != .closing else { return }
        phase = .closing
        exchange.retries.finish()
        exchange.cancelFilters()
        timer.cancel()
        if let upstream {
            self.upstream = nil
            upstream.close()
        }
        if let piece = unsent.take() { context.write(wrapOutboundOut(piece), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(runtime.allocator.buffer(capacity: 0))).assumeIsolated()
            .whenComplete { [context] _ in context?.close(promise: nil) }
    }

    // MARK: Timers

    /// A route's `timeout`: the whole exchange. A second timer, made only for routes that set one.
    func armExchangeDeadline(_ total: TimeAmount) {
        if exchangeDeadline == nil {
            let deadline = ConnectionTimer()
            // Strong, like `timer`: channelInactive cancels it.
            deadline.setup(queue: runtime.timers) { _ in self.exchangeDeadlinePassed() }
            exchangeDeadline = deadline
        }
        exchangeDeadline!.arm(.response, after: total)
    }

    func exchangeDeadlinePassed() {
        guard phase == .proxying else { return }
        exchange.log.failure = "route timeout"
        if responseStarted {
            abortResponse()
        } else {
            respondWithError(504, closing: true)
        }
    }

    /// Ends a response that has begun without finishing it, at once and not after the queued bytes, so the client
    /// sees it cut short (a complete-looking response would be a lie).
    func abortResponse() {
        finishLog(status: exchange.log.status)
        exchange.end()
        phase = .closing
        timer.cancel()
        if let upstream {
            self.upstream = nil
            upstream.close()
        }
        context.close(promise: nil)
    }

    func timerFired(_ purpose: ConnectionTimer.Purpose) {
        switch purpose {
        case .keepalive:
            close()
        case .header:
            exchange.log.failure = "client header timeout"
            respondWithError(408, closing: true)
        case .response:
            exchange.log.failure = UpstreamFailure.responseTimedOut.reason
            respondWithError(504, closing: true)
        case .body:
            // Not reading because the upstream cannot take more is the upstream's pause, not the client's.
            if let upstream, !upstream.isWritable {
                timer.arm(.body, after: runtime.timeouts.body)
                return
            }
            exchange.log.failure = "client body timeout"
            if responseStarted { close() } else { respondWithError(408, closing: true) }
        case .upstreamRead:
            guard phase == .proxying, responseStarted else { return }
            exchange.log.failure = "upstream read timeout"
            abortResponse()
        case .send:
            exchange.log.failure = "client send timeout"
            finishLog(status: exchange.log.status)
            exchange.end()
            close()
        case .none, .quic:
            break
        }
    }
}
