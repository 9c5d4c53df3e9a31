// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterCore
import JesterHTTP2
import JesterTLS
import NIOCore

/// The upstream side of a client connection: getting a connection (or an HTTP/2 stream) for the exchange,
/// sending the request and its body, and what the upstream says back.
extension DownstreamConnection {
    func acquireUpstream(fresh: Bool) {
        // Until the connection is up, the connector's connect timeout guards the exchange.
        timer.disarm()
        // The connection stays alive until the pool answers; upstreamAcquired returns a connection it no longer
        // needs (the client left meanwhile) to the pool.
        exchange.nextAttempt(runtime: runtime).acquire(fresh: fresh, client: proxyAddresses(), for: self)
    }

    /// The exchange's upstream (an HTTP/1.1 connection, or a stream on an HTTP/2 one), or why there is none.
    func upstreamAcquired(_ result: Result<any ExchangeUpstream, UpstreamFailure>, from pool: UpstreamPool) {
        guard phase == .proxying else {
            if case .success(let connection) = result { connection.release(reusable: true) }
            return
        }
        switch result {
        case .failure(let failure):
            respondWithError(exchange.acquisitionFailed(failure).status, closing: !requestBody.isComplete)
        case .success(let connection):
            upstream = connection
            let request = UpstreamRequest(
                runtime: runtime, route: exchange.route!, clientAddress: clientAddress, tls: tls,
                clientSubjectHeader: clientSubjectHeader, chunked: isChunkedUpstream, upgrade: isUpgrade,
                filterFields: exchange.upstreamFilterFields)
            let (head, connection) = exchange.startAttempt(
                on: connection, request: request, clientAddress: clientAddress, runtime: runtime)
            upstream = connection
            connection.startExchange(
                delegate: self, requestHead: head, chunkedBody: isChunkedUpstream,
                isHeadRequest: exchange.isHeadRequest, expectsUpgrade: isUpgrade)
            if requestBody.isComplete {
                // The response timeout runs from the end of the request, however long the upload took.
                timer.arm(.response, after: exchange.responseTimeout(pool: pool))
                connection.flush()
            } else {
                timer.arm(.body, after: runtime.timeouts.body)
                process()
                connection.flush()
                if wantsInput { requestRead() }
            }
        }
    }

    /// Forwards request body bytes from `buffer`; false when it cannot go on now (need bytes, or no upstream yet).
    func forwardRequestBody() -> Bool {
        guard let upstream, !requestBody.isComplete, var current = buffer else {
            // The body is complete: bytes after it are the next pipelined request, handled after the response.
            return false
        }
        var index = 0
        let range: Range<Int>?
        do {
            range = try current.withUnsafeReadableBytes { bytes throws(HTTPParseError) in
                try requestBody.next(bytes, &index)
            }
        } catch {
            exchange.log.failure = error.reason
            if responseStarted { close() } else { respondWithError(400, closing: true) }
            return false
        }
        let consumed = current.readSlice(length: index)!
        buffer = current
        if let range {
            requestBodyBytes += Int64(range.count)
            exchange.log.bytesIn = Int(requestBodyBytes)
            if let route = exchange.route, requestBodyBytes > route.maxBodySize {
                exchange.log.failure = "request body larger than \(route.maxBodySize) bytes"  // as HTTP/2 logs it
                if responseStarted { close() } else { respondWithError(413, closing: true) }
                return false
            }
            upstream.sendBody(consumed.getSlice(at: consumed.readerIndex + range.lowerBound, length: range.count)!)
        }
        if requestBody.isComplete {
            upstream.endRequest(trailers: [])
            upstream.flush()
            if !responseStarted {
                timer.arm(.response, after: exchange.responseTimeout(pool: upstream.pool))
            }
            return false
        }
        // Each piece of body pushes the body deadline out (a lazy re-arm, nothing rescheduled); a pending send
        // deadline (the response already streams) takes precedence.
        if !timer.isArmed(for: .send), range != nil || !timer.isArmed(for: .body) {
            timer.arm(.body, after: runtime.timeouts.body)
        }
        return range != nil
    }

}

// MARK: - Upstream events

extension DownstreamConnection: UpstreamConnectionDelegate {
    func upstreamResponseHead(_ response: HTTPHead, bytes: ByteBuffer) {
        if response.status >= 200 || response.status == 101 {
            exchange.log.upstreamStatus = response.status
            exchange.upstreamAnswered(by: upstream, head: response, bytes: bytes, runtime: runtime)
        }
        if response.status == 101 {
            // (Only when the request asked for it: `UpstreamConnection` refuses any other 101.)
            timer.disarm()
            exchange.log.status = 101
            responseStarted = true
            let out = bytes.withUnsafeReadableBytes { rewriteResponseHead(response, $0) }
            write(out)
            flushClient()
            phase = .tunnel
            if let pending = buffer, pending.readableBytes > 0 {
                buffer = nil
                upstream?.writeTunnel(pending)
                upstream?.flush()
            }
            upstream?.startTunnel()
            requestRead()
            return
        }
        if response.status < 200 {
            // 1xx interim responses (100 Continue) go to HTTP/1.1 clients only (RFC 9110 §15.2).
            if exchange.head.version == .http1_1 {
                write(ByteBuffer(string: "HTTP/1.1 \(response.status) \(HTTPStatus.reason(response.status))\r\n\r\n"))
                flushClient()
            }
            return
        }
        if let upstream, !responseStarted, let delay = exchange.retryDelay(
            afterStatus: response.status, on: upstream, requestComplete: requestBody.isComplete, runtime: runtime)
        {
            // Not forwarded: the answer is thrown away with its connection, and the request goes elsewhere.
            upstream.finished(failed: (502...504).contains(response.status))
            self.upstream = nil
            upstream.close()
            retry(after: delay)
            return
        }
        if !responseStarted, exchange.intercepts(upstreamStatus: response.status) {
            // `error_pages.intercept`: the page goes instead, and the upstream's unread body with its connection.
            respondWithError(response.status, closing: !requestBody.isComplete)
            return
        }
        timer.disarm()
        if let read = exchange.route?.readTimeout { timer.arm(.upstreamRead, after: read) }
        responseFraming = BodyFraming.response(response, requestWasHead: exchange.isHeadRequest)
        if exchange.hasResponsePhase {
            bytes.withUnsafeReadableBytes { exchange.decideResponse(response, $0) }
        }
        if responseFraming != .none, exchange.responseEdit?.body != nil {
            // The response filters change the body's length: chunks, or (HTTP/1.0) the close, end it.
            rechunkResponse = exchange.head.version == .http1_1
            if !rechunkResponse { persistence.endAfterExchange() }
        } else {
            frameAsUpstreamDid()
        }
        if !requestBody.isComplete { persistence.endAfterExchange() }
        exchange.log.status = response.status
        responseStarted = true
        let out = bytes.withUnsafeReadableBytes { rewriteResponseHead(response, $0) }
        write(out)
    }

    /// The client's framing of a response whose body passes as it is: chunks stay chunks for HTTP/1.1 clients,
    /// everything else is framed as the upstream framed it.
    private func frameAsUpstreamDid() {
        switch responseFraming {
        case .chunked:
            // HTTP/1.0 clients cannot take chunks: send the decoded body and close to end it.
            rechunkResponse = exchange.head.version == .http1_1
            if !rechunkResponse { persistence.endAfterExchange() }
        case .untilClose:
            rechunkResponse = false
            persistence.endAfterExchange()
        default:
            rechunkResponse = false
        }
    }

    func upstreamResponseBody(_ body: ByteBuffer) {
        if let read = exchange.route?.readTimeout, timer.isArmed(for: .upstreamRead) {
            timer.arm(.upstreamRead, after: read)
        }
        var body = body
        if let transform = exchange.responseEdit?.body {
            guard let transformed = transform.transform(body, allocator: runtime.allocator) else { return }
            body = transformed
        }
        exchange.log.bytesOut += body.readableBytes
        if rechunkResponse {
            write(runtime.allocator.chunkSizeLine(body.readableBytes))
            write(body)
            write(ByteBuffer(staticString: "\r\n"))
        } else {
            write(body)
        }
    }

    func upstreamResponseEnd(reusable: Bool) {
        exchange.upstreamEvent(.responseEnd, runtime: runtime)
        if responseFraming != .none, let transform = exchange.responseEdit?.body,
            let rest = transform.finish(allocator: runtime.allocator), rest.readableBytes > 0
        {
            exchange.log.bytesOut += rest.readableBytes
            if rechunkResponse {
                write(runtime.allocator.chunkSizeLine(rest.readableBytes))
                write(rest)
                write(ByteBuffer(staticString: "\r\n"))
            } else {
                write(rest)
            }
        }
        if rechunkResponse { write(ByteBuffer(staticString: "0\r\n\r\n")) }
        let requestComplete = requestBody.isComplete
        if let upstream {
            self.upstream = nil
            upstream.release(reusable: reusable && requestComplete)
        }
        finishExchange(requestComplete: requestComplete)
    }

    func upstreamTunnelData(_ bytes: ByteBuffer) {
        write(bytes)
    }

    func upstreamResponseTrailers(_ fields: [HTTP2Field]) {
        // Dropped: an HTTP/1.1 client was not asked whether it takes trailers (RFC 9110 §6.5.1).
    }

    func upstreamFailed(_ failure: UpstreamFailure, responseStarted started: Bool) {
        let failed = upstream
        upstream = nil
        if phase == .tunnel {
            exchange.log.failure = failure.reason
            flushClient()
            close()
            return
        }
        switch exchange.afterAttemptFailed(
            failure, on: phase == .proxying ? failed : nil, responseStarted: started || responseStarted,
            requestComplete: requestBody.isComplete, runtime: runtime)
        {
        case .cut:
            flushClient()
            close()
        case .replay:
            acquireUpstream(fresh: true)
        case .retry(let delay):
            retry(after: delay)
        case .answer(let status):
            respondWithError(status, closing: true)
        }
    }

    /// Sends the current request again, to another target, after `delay` (a short jittered backoff that the
    /// route's retry policy chose, `RequestExchange.retryDelay`).
    func retry(after delay: TimeAmount) {
        context.eventLoop.assumeIsolated().scheduleTask(in: delay) {
            guard self.phase == .proxying, self.upstream == nil else { return }
            self.acquireUpstream(fresh: false)
        }
    }

    func upstreamReadComplete() {
        if let transform = exchange.responseEdit?.body, responseStarted,
            let held = transform.flush(allocator: runtime.allocator)
        {
            exchange.log.bytesOut += held.readableBytes
            if rechunkResponse {
                write(runtime.allocator.chunkSizeLine(held.readableBytes))
                write(held)
                write(ByteBuffer(staticString: "\r\n"))
            } else {
                write(held)
            }
        }
        flushClient()
        if clientIsWritable, phase == .proxying || phase == .tunnel { upstream?.read() }
    }

    func upstreamWritabilityChanged(isWritable: Bool) {
        if isWritable, wantsInput { requestRead() }
    }
}
