// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterCore
import JesterHTTP2
import NIOCore

/// An HTTP/2 request passed to an HTTP/2 upstream as a stream there (fields and trailers kept, for gRPC); flow
/// control acknowledgements both ways, the stream's timers, and its completion.
extension HTTP2Stream {
    // MARK: HTTP/2 upstreams

    /// Proxies the stream to an HTTP/2 target as a stream there: fields pass as HTTP/2 fields (with the route's
    /// edits and X-Forwarded-*), and trailers pass both ways (gRPC's status travels in them).
    func proxyOverHTTP2(_ pool: UpstreamPool, fields: [HTTP2Field], route: CompiledRoute) {
        usesHTTP2Upstream = true
        // Made once: a retry sends the same fields (the same X-Request-Id) to the next target.
        h2RequestFields = http2UpstreamFields(fields, route: route, tls: pool.settings.tls != nil)
        openHTTP2Stream(pool: pool, route: route)
    }

    /// A stream for the request on a connection to one of the pool's targets (never one that failed it already).
    func openHTTP2Stream(pool: UpstreamPool, route: CompiledRoute) {
        exchange.upstreamEvent(.asked, runtime: runtime)
        // (This attempt's traceparent, with [tracing]: each attempt's span is its upstream request's parent.)
        let upstreamFields = exchange.withUpstreamTraceFields(h2RequestFields ?? [])
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
                self.exchange.upstreamConnected(target: upstream.target, runtime: self.runtime)
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

    func armHTTP2ResponseTimer(pool: UpstreamPool, route: CompiledRoute) {
        guard !finished else { return }
        timer.arm(.response, after: route.responseTimeout ?? pool.responseTimeout)
    }

    /// The request's fields for the target: pseudo-headers (path rewritten, Host overridden as the route says),
    /// the client's fields minus what the route removes and what only Jester may say, then the additions.
    func http2UpstreamFields(_ fields: [HTTP2Field], route: CompiledRoute, tls upstreamTLS: Bool) -> [HTTP2Field] {
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

    func acknowledgeRequest() {
        guard requestUnacknowledged > 0, let h2Upstream, let h2Stream,
            h2Upstream.bufferedBody(h2Stream) < Self.acknowledgeBelow
        else { return }
        connection.consumed(id, count: requestUnacknowledged)
        requestUnacknowledged = 0
        connection.scheduleFlush()
    }

    func acknowledgeResponse() {
        guard responseUnacknowledged > 0, let h2Upstream, let h2Stream,
            connection.bufferedBody(id) < Self.acknowledgeBelow
        else { return }
        h2Upstream.consumed(h2Stream, count: responseUnacknowledged)
        responseUnacknowledged = 0
    }

    /// `timeout`: the whole exchange; a response under way is cut short with a reset, visibly.
    func armRouteTimers(_ route: CompiledRoute) {
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
    func armBodyTimer() {
        guard !requestComplete, !finished, !usesHTTP2Upstream, !responseStarted else { return }
        timer.arm(.body, after: runtime.timeouts.body)
    }

    /// `read_timeout`: re-armed by every part of the response.
    func armReadTimer() {
        guard let read = exchange.route?.readTimeout, !finished else { return }
        timer.arm(.upstreamRead, after: read)
    }

    func timerFired(_ purpose: ConnectionTimer.Purpose) {
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

    func timedOut(_ reason: String) {
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

    func complete(status: Int? = nil) {
        guard !finished else { return }
        finished = true
        timer.disarm()
        exchangeDeadline?.disarm()
        exchange.writeLog(
            status: status, protocol: "HTTP/2.0", tls: connection.tls, runtime: runtime,
            listener: connection.metricsListener)
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
            exchange.upstreamEvent(.responseHead, runtime: runtime)
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
    func completeHTTP2Response() {
        exchange.upstreamEvent(.responseEnd, runtime: runtime)
        if !requestComplete, let h2Upstream, let h2Stream { h2Upstream.cancel(h2Stream) }
        h2Upstream = nil
        complete()
    }
}
