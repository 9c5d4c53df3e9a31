// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterCore
import JesterHTTP2
import NIOCore

/// An HTTP/2 request's answer: an HTTP/1.1 upstream's response translated back (and retries after it), local
/// answers, and how the stream ends early (reset by the client, cut at the drain timeout).
extension RequestStream {
    // MARK: Response

    func upstreamResponseHead(_ response: HTTPHead, bytes: ByteBuffer) {
        if response.status >= 200 || response.status == 101 {
            exchange.log.upstreamStatus = response.status
            exchange.upstreamAnswered(by: upstream, head: response, bytes: bytes, runtime: runtime)
        }
        if response.status < 200 {
            // 1xx goes on as an interim HEADERS frame, as to HTTP/1.1 clients: a client that sent
            // `expect: 100-continue` waits for the 100 before it sends its body. A 101 never arrives (no upgrade is
            // forwarded, and `UpstreamConnection` refuses one nobody asked for).
            // (The response timeout keeps running: an interim answer is not the answer.)
            connection.respondInterim(id, status: response.status)
            connection.scheduleFlush()
            return
        }
        timer.disarm()
        if let upstream, !responseStarted, let delay = exchange.retryDelay(
            afterStatus: response.status, on: upstream, requestComplete: requestComplete, runtime: runtime)
        {
            // Not forwarded: the answer is thrown away with its upstream, and the request goes elsewhere.
            upstream.finished(failed: (502...504).contains(response.status))
            self.upstream = nil
            upstream.close()
            retry(after: delay)
            return
        }
        if !responseStarted, exchange.intercepts(upstreamStatus: response.status) {
            // `error_pages.intercept`: the page goes instead, and the upstream's unread body with its stream.
            detachUpstream()
            respond(.error(response.status))
            return
        }
        let route = exchange.route
        responseHasBody = BodyFraming.response(response, requestWasHead: exchange.isHeadRequest) != .none
        if exchange.hasResponsePhase {
            bytes.withUnsafeReadableBytes { exchange.decideResponse(response, $0) }
        }
        let edit = exchange.responseEdit
        // The response filters change the body's length: no content-length (the stream's end ends it).
        let lengthChanges = (responseHasBody && edit?.body != nil) || edit?.removesLength == true
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
                if let edit, edit.drops(index) { continue }
                fields.append(
                    lowercasing: UnsafeRawBufferPointer(rebasing: raw[field.name]),
                    value: UnsafeRawBufferPointer(rebasing: raw[field.value]))
            }
        }
        if let edit {
            for field in edit.addedFields { fields.append(field.name.lowercased(), field.value) }
        }
        if let length = response.forwardedContentLength, upstream?.responseFramingIsSynthesized != true,
            !lengthChanges
        {
            fields.append("content-length", String(length))
        }
        exchange.forEachLowercasedUpstreamResponseAddition(
            target: upstream?.target ?? 0, secure: tls != nil, runtime: runtime, routes: routes
        ) { name, value, unique in
            fields.append(lowercasing: name, value: value, neverIndexed: unique)
        }
        armReadTimer()
        responseStarted = true
        exchange.log.status = response.status
        connection.respond(id, headers: fields, hasBody: responseHasBody)
        connection.scheduleFlush()
    }

    /// Fields that HTTP/2 forbids (RFC 9113 §8.2.2), dropped even when the upstream did not name them hop-by-hop.
    static let connectionSpecific: Set<String> = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]

    func upstreamResponseBody(_ body: ByteBuffer) {
        // (A body to a HEAD request, from an HTTP/2 target that sent one anyway, has no stream left to go on.)
        guard responseHasBody else { return }
        armReadTimer()
        var body = body
        if let transform = exchange.responseEdit?.body {
            guard let transformed = transform.transform(body, allocator: runtime.allocator) else { return }
            body = transformed
        }
        exchange.log.bytesOut += body.readableBytes
        connection.sendBody(id, body)
    }

    func upstreamResponseEnd(reusable: Bool) {
        exchange.upstreamEvent(.responseEnd, runtime: runtime)
        if responseHasBody, let transform = exchange.responseEdit?.body,
            let rest = transform.finish(allocator: runtime.allocator), rest.readableBytes > 0
        {
            exchange.log.bytesOut += rest.readableBytes
            connection.sendBody(id, rest)
        }
        if responseHasBody { connection.finishBody(id, trailers: responseTrailers) }
        if let upstream {
            self.upstream = nil
            upstream.release(reusable: reusable && requestComplete)
        }
        complete()
        connection.scheduleFlush()
    }

    func upstreamTunnelData(_ bytes: ByteBuffer) {}

    func upstreamResponseTrailers(_ fields: [HTTP2Field]) {
        responseTrailers = fields
    }

    func upstreamFailed(_ failure: UpstreamFailure, responseStarted started: Bool) {
        let failed = upstream
        upstream = nil
        // An exchange that is over (the client left, a timeout answered) has nothing left to say, and its
        // connection may be gone.
        guard !finished else { return }
        switch exchange.afterAttemptFailed(
            failure, on: failed, responseStarted: started || responseStarted, requestComplete: requestComplete,
            runtime: runtime)
        {
        case .cut:
            // Part of the response went out: a reset is the only honest end (the client sees it incomplete).
            complete()
            connection.abortResponse(id)
        case .replay:
            timer.disarm()
            acquireUpstream(fresh: true)
        case .retry(let delay):
            retry(after: delay)
        case .answer(let status):
            finishLocally(status: status, failure: failure.reason)
        }
    }

    /// Sends the request again, to another target, after `delay` (the route's retry policy chose it,
    /// `RequestExchange.retryDelay`); the next attempt is an HTTP/1.1 connection or an HTTP/2 stream, as the pool
    /// speaks.
    func retry(after delay: TimeAmount) {
        // The response timeout starts again with the next attempt.
        timer.disarm()
        runtime.eventLoop.assumeIsolated().scheduleTask(in: delay) {
            guard !self.finished, self.upstream == nil else { return }
            self.acquireUpstream(fresh: false)
        }
    }

    func upstreamReadComplete() {
        if responseHasBody, !finished, let transform = exchange.responseEdit?.body,
            let held = transform.flush(allocator: runtime.allocator)
        {
            exchange.log.bytesOut += held.readableBytes
            connection.sendBody(id, held)
        }
        connection.scheduleFlush()
        if connection.bufferedBody(id) < RequestStream.outgoingBufferLimit {
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
        guard upstreamPaused, connection.bufferedBody(id) < RequestStream.outgoingBufferLimit / 2 else { return }
        upstreamPaused = false
        upstream?.read()
    }

    // MARK: Ends

    /// The client reset the stream, or it completed: an upstream still busy with it is closed (out of step).
    func closed(errorCode: UInt64) {
        deferredStart = nil
        timer.cancel()
        exchangeDeadline?.cancel()
        // The client gave up (or the exchange is over): so does the target.
        detachUpstream()
        if !finished {
            exchange.log.failure = connection.streamProtocol.isCancellation(errorCode)
                ? "client cancelled the stream" : "stream reset (error \(errorCode))"
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
        closed(errorCode: connection.streamProtocol.cancelCode)
    }

    /// Lets go of whatever upstream still works on this request: an HTTP/1.1 connection is closed (which detaches
    /// its delegate), an HTTP/2 stream reset with CANCEL (nothing for a stream that already ended).
    /// Called wherever the exchange ends early, so that no upstream keeps this stream as its delegate: a stream
    /// outlives its `unowned` connection only while something else holds it, and an upstream that did could call
    /// it after the client's connection was gone.
    func detachUpstream() {
        if let upstream {
            self.upstream = nil
            upstream.close()
        }
    }

    func finishLocally(status: Int, failure: String) {
        guard !finished else { return }
        detachUpstream()
        if responseStarted {
            complete()
            connection.abortResponse(id)
            return
        }
        exchange.log.failure = failure
        respond(.error(status))
    }

    /// Answers the request locally (an error, a filter's answer; a plain error with the error pages' body when the
    /// route has them).
    func respond(_ response: LocalResponse) {
        let response = exchange.errorPage(replacing: response, runtime: runtime, routes: routes)
        if response.status >= 400 { runtime.counters.errors &+= 1 }
        respond(
            status: response.status, fields: response.fields.map { HTTP2Field($0.name.lowercased(), $0.value) },
            body: response.body)
    }

    /// A route's fixed response (rendered as HTTP/1.1 text once per configuration).
    func respondWithRendered(_ rendered: ByteBuffer, body: ByteBuffer) {
        // (Split on the string "\r\n": to Swift, CR LF is one Character.)
        let lines = String(buffer: rendered).components(separatedBy: "\r\n")
        let status = Int(lines[0].dropFirst(9).prefix(3)) ?? 200
        let fields = Self.fields(ofRendered: lines.dropFirst().joined(separator: "\r\n"))
            .filter { $0.name != "content-length" }
        respond(status: status, fields: fields, body: body)
    }

    func respond(status: Int, fields: [HTTP2Field], body: ByteBuffer) {
        let sendsBody = !exchange.isHeadRequest && body.readableBytes > 0
        var all = [HTTP2Field(":status", String(status))] + fields
        exchange.forEachLowercasedResponseField(runtime: runtime, routes: routes) { name, value, unique in
            all.append(HTTP2Field(
                String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self), neverIndexed: unique))
        }
        // RFC 9110 §8.6: none on a 204, nor on a 304 (it would have to be the length of the 200 it stands for).
        if status != 204, status != 304 { all.append(HTTP2Field("content-length", String(body.readableBytes))) }
        responseStarted = true
        exchange.log.status = status
        exchange.log.bytesOut = body.readableBytes
        connection.respond(id, fields: all, hasBody: sendsBody)
        if sendsBody {
            connection.sendBody(id, body)
            connection.finishBody(id, trailers: [])
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

}
