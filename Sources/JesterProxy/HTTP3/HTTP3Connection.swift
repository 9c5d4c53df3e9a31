// SPDX-License-Identifier: Apache-2.0
import JesterCore
import JesterHTTP2
import JesterHTTP3
import JesterMetrics
import JesterTLS
import NIOCore

/// A client connection that speaks HTTP/3 over QUIC: one `HTTP3Session` (ngtcp2 and nghttp3, sans I/O), one
/// `RequestStream` per request, exactly as an HTTP/2 connection has. Its datagrams come from and go out through
/// its listener (`HTTP3Listener`, the worker's UDP socket); its single timer follows the session's next deadline
/// (loss recovery, acknowledgements, idle and handshake timeouts). Loop-confined, like everything in a worker.
final class HTTP3Connection: RequestStreamConnection, ClientConnection {
    let runtime: WorkerRuntime
    let routes: ListenerRoutes
    let metricsListener: ListenerMetricIDs?
    /// The handshake's facts: TLS 1.3 and h3 always, the SNI once the whole ClientHello arrived (it may span
    /// datagrams), the suite and a verified client certificate's subject; read when a request starts rather than
    /// when the connection is accepted, and kept once the handshake is complete (they no longer change).
    var tls: TLSSessionFacts? {
        if let establishedTLS { return establishedTLS }
        var facts = TLSSessionFacts()
        facts.version = "TLSv1.3"
        facts.applicationProtocol = "h3"
        facts.serverName = session.connection.requestedServerName
        facts.cipher = session.connection.cipherSuite ?? ""
        facts.clientCertificateSubject = session.connection.peerCertificateDER.flatMap {
            TLSConnection.subject(ofDERCertificate: $0)
        }
        if isEstablished { establishedTLS = facts }
        return facts
    }
    private var establishedTLS: TLSSessionFacts?
    let clientSubjectHeader: [UInt8]?
    let clientAddress: String
    let clientIP: IPAddressBytes?
    var proxyAddresses: ProxyProtocol.Addresses? { nil }
    var streamProtocol: StreamProtocol { .http3 }
    /// Before this, requests arrive in 0-RTT data (`http3_early_data`). (The connection's flag, set in the
    /// callback, not `isEstablished`: a request read in the datagram that completes the handshake is no longer
    /// early; nor its state: a connection closing before its handshake completed is no less unproven.)
    var handshakeComplete: Bool { session.connection.isHandshakeComplete }
    /// Requests that arrived in 0-RTT data and wait for the handshake before going upstream, by stream (a stream
    /// that ends meanwhile leaves).
    private var awaitingHandshake: [Int64: () -> Void] = [:]
    let session: HTTP3Session
    /// The listener that owns this connection (it outlives every connection it holds).
    unowned let listener: HTTP3Listener
    private var streams: [Int64: RequestStream] = [:]
    /// The session's next deadline, in the worker's timer queue (re-armed on nearly every packet: the queue moves
    /// a deadline without touching the event loop's scheduled tasks). It holds the connection strongly until
    /// `close` cancels it.
    private let timer = ConnectionTimer()
    /// Every connection ID the listener routes to this connection, so closing forgets exactly those.
    var connectionIDs: Set<QUICConnectionID> = []
    /// The handshake completed (the listener counts connections still handshaking, to ask for Retry under load).
    private(set) var isEstablished = false
    private var flushScheduled = false
    private var draining = false
    /// The connection is over: forgotten by its listener and its worker.
    private(set) var isClosed = false
    /// Datagrams arrived in the listener's current read batch (`readComplete` follows).
    var isTouched = false
    /// `http.connection_request_rate`, over all of the connection's streams.
    private lazy var requestBucket = runtime.makeRequestBucket()

    init(session: HTTP3Session, listener: HTTP3Listener, runtime: WorkerRuntime, listenerName: String) {
        self.session = session
        self.listener = listener
        self.runtime = runtime
        routes = runtime.routeTables[listenerName] ?? .empty
        metricsListener = runtime.metrics?.ids.listeners[listenerName]
        clientSubjectHeader = runtime.clientSubjectHeaders[listenerName]
        let peer = session.connection.peer
        clientAddress = peer.ipText
        clientIP = IPAddressBytes(clientAddress)
        timer.setup(queue: runtime.timers) { [self] _ in
            let now = HTTP3Listener.now()
            self.session.connection.handleExpiry(now: now)
            self.service(now: now)
        }
    }

    // MARK: Datagrams and time

    /// A datagram for this connection arrived.
    func received(_ datagram: UnsafeRawBufferPointer, from peer: QUICSocketAddress, now: QUICInstant) {
        session.connection.receive(datagram: datagram, local: listener.localAddress, peer: peer, now: now)
        service(now: now)
    }

    /// The listener's read batch ended: the request bytes the streams handed their upstreams go out, and what
    /// was passed on is acknowledged to the client (flow control), once per batch rather than per datagram.
    func readComplete() {
        isTouched = false
        guard !isClosed else { return }
        for stream in streams.values { stream.flushUpstream() }
        service()
    }

    /// Hands the session's events to the streams, sends what the connection has to send, follows its new
    /// connection IDs, re-arms the timer, and lets go of a connection that closed. Every path that changed the
    /// session ends here.
    func service(now: QUICInstant = HTTP3Listener.now()) {
        guard !isClosed else { return }
        handle(session.takeEvents())
        listener.send(from: session.connection, now: now)
        handle(session.takeEvents())
        // (Handling events may have closed the connection: a drained one ends with its last stream.)
        guard !isClosed else {
            listener.flushUnlessReading()
            return
        }
        for event in session.connection.takeEvents() {
            switch event {
            case .connectionIDIssued(let id): listener.adopt(id, for: self)
            case .connectionIDRetired(let id): listener.forget(id, of: self)
            case .handshakeCompleted:
                isEstablished = true
                listener.handshakeCompleted(resumed: session.connection.isResumed,
                    earlyData: session.connection.acceptedEarlyData)
                if let metricsListener { runtime.metrics?.tlsHandshake(listener: metricsListener, failed: false) }
                let waiting = awaitingHandshake
                awaitingHandshake = [:]
                for (_, resume) in waiting.sorted(by: { $0.key < $1.key }) { resume() }
            case .peerClosed, .closed: break
            }
        }
        for stream in streams.values { stream.resumeUpstreamIfRoom() }
        if session.connection.state == .closed {
            close()
        } else if let deadline = session.connection.nextDeadline {
            timer.arm(.quic, after: .nanoseconds(deadline > now ? Int64(deadline.nanoseconds - now.nanoseconds) : 0))
        } else {
            timer.disarm()
        }
        listener.flushUnlessReading()
    }

    private func close() {
        guard !isClosed else { return }
        isClosed = true
        timer.cancel()
        awaitingHandshake = [:]
        if !isEstablished { handshakeEnded() }
        for stream in streams.values { stream.clientGone() }
        if let metricsListener, !streams.isEmpty {
            runtime.metrics?.streamClosed(listener: metricsListener, protocol: .http3, count: streams.count)
        }
        streams = [:]
        listener.remove(self)
    }

    /// The connection closed before its handshake completed: when TLS ended it (a CRYPTO_ERROR, RFC 9001 §4.8:
    /// a refused client certificate, no common ALPN), counted and logged as TCP listeners count and log theirs.
    private func handshakeEnded() {
        let connection = session.connection
        guard let error = [connection.localCloseError, connection.peerCloseError].compactMap({ $0 }).first(where: {
            !$0.isApplicationError && (0x100...0x1ff).contains($0.code)
        }) else { return }
        let alert = Int(error.code - 0x100)
        let reason = Self.alertNames[alert] ?? "TLS alert \(alert)"
        runtime.counters.tlsHandshakeFailures &+= 1
        runtime.handshakeFailures.failed(client: clientAddress, reason: reason,
            detail: "QUIC CRYPTO_ERROR 0x\(String(error.code, radix: 16)) (\(reason))"
                + (error.reason.isEmpty ? "" : ": \(error.reason)"))
        if let metricsListener { runtime.metrics?.tlsHandshake(listener: metricsListener, failed: true) }
    }

    /// The TLS alerts a QUIC handshake ends with most (RFC 8446 §6), by number.
    private static let alertNames: [Int: String] = [
        10: "unexpected message", 40: "handshake failure", 42: "bad certificate", 43: "unsupported certificate",
        44: "certificate revoked", 45: "certificate expired", 46: "certificate unknown", 47: "illegal parameter",
        48: "unknown CA", 50: "decode error", 51: "decrypt error", 70: "protocol version",
        80: "internal error", 109: "missing extension", 110: "unsupported extension",
        116: "certificate required", 120: "no application protocol",
    ]

    /// The connection was never taken on (the worker is at its connection limit): its timer lets go of it.
    func abandon() {
        isClosed = true
        timer.cancel()
    }

    // MARK: Session events

    private func handle(_ events: [HTTP3Event]) {
        for event in events {
            switch event {
            case .headers(let id, let fields, let endStream):
                let stream = RequestStream(connection: self, id: id)
                streams[id] = stream
                if let metricsListener { runtime.metrics?.streamOpened(listener: metricsListener, protocol: .http3) }
                stream.start(fields: fields.map { HTTP2Field($0.name, $0.value) }, endStream: endStream)
            case .data(let id, let bytes):
                if let stream = streams[id] {
                    stream.requestData(bytes)
                } else {
                    session.consumed(stream: id, count: bytes.readableBytes)
                }
            case .endStream(let id):
                streams[id]?.requestEnded()
            case .trailers(let id, let fields):
                streams[id]?.requestEnded(trailers: fields.map { HTTP2Field($0.name, $0.value) })
            case .streamReset(let id, let errorCode), .streamClosed(let id, let errorCode):
                if case .streamReset = event {
                    // The client abandoned the request (or the session refused it): the response side goes too, so
                    // the stream closes and its credit returns to the client (HTTP/2's RST_STREAM ends both ways).
                    session.reset(stream: id, errorCode: HTTP3ErrorCode.requestCancelled)
                }
                awaitingHandshake[id] = nil
                if let stream = streams.removeValue(forKey: id) {
                    if let metricsListener { runtime.metrics?.streamClosed(listener: metricsListener, protocol: .http3) }
                    stream.closed(errorCode: errorCode == HTTP3ErrorCode.noError ? 0 : errorCode)
                }
                closeIfDrained()
            case .goAway:
                break
            }
        }
    }

    // MARK: Draining

    /// A graceful GOAWAY now (streams in flight finish), the final one a second later; the connection closes
    /// when its last stream ends (RFC 9114 §5.2).
    func drain() {
        guard !draining, !isClosed else { return }
        draining = true
        // A connection still in its handshake has no control stream for GOAWAY and no request to finish.
        guard session.controlStreamBound, session.connection.state == .established else {
            closeNow(errorCode: HTTP3ErrorCode.noError)
            return
        }
        session.announceShutdown()
        service()
        runtime.eventLoop.assumeIsolated().scheduleTask(in: .seconds(1)) { [self] in
            guard !self.isClosed else { return }
            self.session.goAway()
            self.service()
            self.closeIfDrained()
        }
    }

    /// The drain timeout passed: every stream still under way is logged as cut, and the connection closes.
    func cut() -> Int {
        let cut = streams.values.reduce(0) { $0 + $1.cut() }
        if let metricsListener, !streams.isEmpty {
            runtime.metrics?.streamClosed(listener: metricsListener, protocol: .http3, count: streams.count)
        }
        streams = [:]
        // Closed on the next tick, as a channel closes: the worker counts what was cut before it learns that its
        // last connection is gone.
        runtime.eventLoop.assumeIsolated().execute { [self] in self.closeNow(errorCode: HTTP3ErrorCode.noError) }
        return cut
    }

    private func closeIfDrained() {
        guard draining, streams.isEmpty, !isClosed else { return }
        closeNow(errorCode: HTTP3ErrorCode.noError)
    }

    /// Closes the QUIC connection (CONNECTION_CLOSE with `errorCode`) and forgets it.
    func closeNow(errorCode: UInt64) {
        guard !isClosed else { return }
        let now = HTTP3Listener.now()
        session.connection.close(applicationError: errorCode, now: now)
        listener.send(from: session.connection, now: now)
        close()
    }

    // MARK: For streams

    func awaitHandshake(stream id: Int64, _ resume: @escaping () -> Void) {
        guard !isClosed else { return }
        if handshakeComplete { resume() } else { awaitingHandshake[id] = resume }
    }

    func takeRequestToken() -> Bool {
        guard requestBucket != nil else { return true }
        if requestBucket!.take(now: runtime.monotonicSeconds) { return true }
        runtime.logWarning("request rate limit", metadata: ["client": "\(clientAddress)"])
        return false
    }

    /// Services the connection at the end of this event-loop tick: the events of one upstream read and of many
    /// streams then leave in as few datagrams as the session packs them into.
    func scheduleFlush() {
        guard !flushScheduled, !isClosed else { return }
        flushScheduled = true
        runtime.eventLoop.assumeIsolated().execute { [self] in
            self.flushScheduled = false
            self.service()
        }
    }

    func respond(_ id: Int64, fields: [HTTP2Field], hasBody: Bool) {
        do {
            try session.respond(stream: id, fields: fields.map { HTTP3Field($0.name, $0.value) }, hasBody: hasBody)
        } catch {
            session.reset(stream: id, errorCode: HTTP3ErrorCode.internalError)
        }
        scheduleFlush()
    }

    func respond(_ id: Int64, headers: HTTP2HeaderBlock, hasBody: Bool) {
        respond(id, fields: headers.fields, hasBody: hasBody)
    }

    func respondInterim(_ id: Int64, status: Int) {
        session.respondInterim(stream: id, status: status)
        scheduleFlush()
    }

    func sendBody(_ id: Int64, _ bytes: ByteBuffer) {
        session.sendBody(stream: id, bytes)
        scheduleFlush()
    }

    func finishBody(_ id: Int64, trailers: [HTTP2Field]) {
        session.finishBody(stream: id, trailers: trailers.map { HTTP3Field($0.name, $0.value) })
        scheduleFlush()
    }

    func bufferedBody(_ id: Int64) -> Int {
        session.bufferedBody(stream: id)
    }

    func consumed(_ id: Int64, count: Int) {
        session.consumed(stream: id, count: count)
        scheduleFlush()
    }

    /// nghttp3 cannot end a body early but cleanly: the stream is reset, so the client sees that the response
    /// is incomplete.
    func abortResponse(_ id: Int64) {
        session.reset(stream: id, errorCode: HTTP3ErrorCode.internalError)
        scheduleFlush()
    }

    func resetWithInternalError(_ id: Int64) {
        session.reset(stream: id, errorCode: HTTP3ErrorCode.internalError)
        scheduleFlush()
    }
}
