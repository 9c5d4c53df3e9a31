// SPDX-License-Identifier: Apache-2.0
internal import CJesterNGTCP2

// What the stream application (HTTP3Session) and ngtcp2's callbacks call on a connection.

extension QUICConnection {
    // MARK: For the stream application

    /// Opens a unidirectional stream of this side's (HTTP/3's control and QPACK streams); nil when the peer allows
    /// no more.
    func openUnidirectionalStream() -> Int64? {
        var stream: Int64 = -1
        return ngtcp2_conn_open_uni_stream(conn, &stream, nil) == 0 ? stream : nil
    }

    /// Opens a bidirectional stream (client role: a request); nil when the peer allows no more now.
    func openBidirectionalStream() -> Int64? {
        var stream: Int64 = -1
        return ngtcp2_conn_open_bidi_stream(conn, &stream, nil) == 0 ? stream : nil
    }

    /// How many unidirectional streams the peer lets this side open in all.
    var peerAllowedUnidirectionalStreams: UInt64 { ngtcp2_conn_get_max_local_streams_uni(conn) }

    /// The bidirectional streams this side allows the peer, as advertised.
    var localMaximumBidirectionalStreams: UInt64 {
        ngtcp2_conn_get_local_transport_params(conn).pointee.initial_max_streams_bidi
    }

    /// `count` received bytes of `stream` were consumed: the peer may send that many more, on the stream and on
    /// the connection.
    func extendStreamLimits(stream: Int64, count: Int) {
        guard count > 0, conn != nil else { return }
        _ = ngtcp2_conn_extend_max_stream_offset(conn, stream, UInt64(count))
        ngtcp2_conn_extend_max_offset(conn, UInt64(count))
    }

    /// Resets the stream both ways (RESET_STREAM and STOP_SENDING) with an application error.
    func shutdownStream(_ stream: Int64, errorCode: UInt64) {
        _ = ngtcp2_conn_shutdown_stream(conn, stream, errorCode)
    }

    /// Resets the stream's sending side (RESET_STREAM) with an application error.
    func shutdownStreamWrite(_ stream: Int64, errorCode: UInt64) {
        _ = ngtcp2_conn_shutdown_stream_write(conn, stream, errorCode)
    }

    /// Lets the peer open `count` more bidirectional streams (one for each of its streams that closed).
    func extendRemoteBidirectionalStreams(by count: Int) {
        ngtcp2_conn_extend_max_streams_bidi(conn, count)
    }

    /// Stops reading the stream (STOP_SENDING) with an application error.
    func shutdownStreamRead(_ stream: Int64, errorCode: UInt64) {
        _ = ngtcp2_conn_shutdown_stream_read(conn, stream, errorCode)
    }

    /// Ends the connection at once, without a word to the peer: its session is going away, and ngtcp2 must not
    /// touch the stream data the session held (it would retransmit from freed memory).
    func discard() {
        guard let conn else { return }
        ngtcp2_conn_del(conn)
        self.conn = nil
        if state != .closed {
            state = .closed
            events.append(.closed)
        }
    }

    /// Sets the application error the connection closes with when a callback fails next.
    func failApplication(code: UInt64, reason: String) {
        pendingApplicationError = QUICCloseError(isApplicationError: true, code: code, reason: reason)
    }

    // MARK: Callback targets (called from the C callbacks in QUICConnection+Callbacks.swift)

    /// The handshake finished: the connection is established; a server sends a NEW_TOKEN for the next time.
    func handshakeCompleted() -> Bool {
        let now = currentTime.nanoseconds
        state = .established
        isHandshakeComplete = true
        events.append(.handshakeCompleted)
        guard role == .server else { return true }
        // A session ticket, for the client's next connection to resume (and send 0-RTT data, where accepted).
        // (Failing to make one costs the client a full handshake next time, not this connection.)
        if resumption != nil { _ = gnutls_session_ticket_send(tls, 1, 0) }
        // A token for the client's next connection, so it can skip a Retry (RFC 9000 §8.1.3).
        var token = [UInt8](repeating: 0, count: CJESTER_NGTCP2_MAX_REGULAR_TOKENLEN)
        let length = peer.bytes.withUnsafeBytes { address in
            keys.tokenSecret.withUnsafeBufferPointer { secret in
                token.withUnsafeMutableBufferPointer { buffer in
                    ngtcp2_crypto_generate_regular_token(
                        buffer.baseAddress,
                        secret.baseAddress,
                        secret.count,
                        address.baseAddress!.assumingMemoryBound(to: ngtcp2_sockaddr.self),
                        ngtcp2_socklen(address.count),
                        now
                    )
                }
            }
        }
        if length > 0 { _ = ngtcp2_conn_submit_new_token(conn, token, Int(length)) }
        return true
    }

    /// ngtcp2 wants another ID for the peer: one from the factory, with its stateless-reset token.
    func newConnectionID(
        _ cid: UnsafeMutablePointer<ngtcp2_cid>,
        token: UnsafeMutablePointer<UInt8>,
        length: Int
    ) -> Bool {
        let id = connectionIDs.makeConnectionID()
        guard id.bytes.count == length else { return false }
        cid.pointee = id.cid
        let made = keys.statelessResetSecret.withUnsafeBufferPointer { secret in
            ngtcp2_crypto_generate_stateless_reset_token(token, secret.baseAddress, secret.count, cid)
        }
        events.append(.connectionIDIssued(id))
        return made == 0
    }

    /// ngtcp2 retired one of this side's IDs.
    func connectionIDRemoved(_ cid: UnsafePointer<ngtcp2_cid>) {
        events.append(.connectionIDRetired(QUICConnectionID(cid: cid.pointee)))
    }

    /// The 1-RTT keys were installed: the stream application, if attached, opens its streams.
    func applicationKeysReady() -> Bool {
        applicationKeysInstalled = true
        guard let application else { return true }
        return application.quicApplicationKeysReady() && deliverHeldStreamData(to: application)
    }

    /// Stream data that arrived before the application was attached: 0-RTT requests in the client's first
    /// datagram, read inside `QUICServerEndpoint.accept` before the listener can attach a session. (Dropping it
    /// would lose those requests for good: ngtcp2 has acknowledged them.) Bounded by the connection's flow
    /// control window, since none of it is consumed until the application takes it.
    func holdStreamData(stream: Int64, _ bytes: UnsafeRawBufferPointer, fin: Bool) {
        streamDataBeforeApplication.append((stream, Array(bytes), fin))
    }

    /// Hands the application what arrived before it, in the order it arrived; false if it failed on it.
    private func deliverHeldStreamData(to application: any QUICStreamApplication) -> Bool {
        let held = streamDataBeforeApplication
        streamDataBeforeApplication = []
        for (stream, bytes, fin) in held {
            let accepted = bytes.withUnsafeBytes { application.quicStreamData(stream: stream, $0, fin: fin) }
            guard accepted else { return false }
        }
        return true
    }

    /// Attaches the stream application; when the 1-RTT keys came before it did (a server's come while its first
    /// Initial is read, inside `accept`), it is told at once. False: it could not start (the connection is
    /// closing).
    func attach(_ application: any QUICStreamApplication, now: QUICInstant) -> Bool {
        self.application = application
        // A connection that failed on its first packet is only closing: nothing to start.
        guard state == .handshaking || state == .established else { return true }
        guard applicationKeysInstalled else { return true }
        if application.quicApplicationKeysReady(), deliverHeldStreamData(to: application) { return true }
        closeAfterError(.application(pendingApplicationError ?? Self.internalError), now: now)
        return false
    }
}
