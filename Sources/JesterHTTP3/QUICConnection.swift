// SPDX-License-Identifier: Apache-2.0
internal import CJesterNGTCP2

#if canImport(Glibc)
import Glibc
#endif

/// One QUIC connection on libngtcp2 with TLS 1.3 from GnuTLS, sans I/O: datagrams go in with `receive`, datagrams
/// to send come out of `writeDatagram` / `pendingDatagrams`, and time is the caller's (`nextDeadline`,
/// `handleExpiry`). Nothing here opens a socket or reads a clock, so the UDP loop below it can be anything and
/// the tests drive two connections by hand.
///
/// A server connection is made by `QUICServerEndpoint.accept` from a client's first Initial; a client connection
/// (tests, later HTTP/3 upstreams) by `QUICConnection.connect`. Streams belong to the session above
/// (`HTTP3Session`), which attaches itself as the stream application; its flow control is manual: received bytes
/// raise the peer's limits only once `extendStreamLimits` says they were consumed. Used on one thread.
public final class QUICConnection {
    /// Which end of the connection this is.
    public enum Role: Sendable, Equatable { case server, client }

    /// Server (made by `QUICServerEndpoint.accept`) or client (made by `connect`).
    public let role: Role
    /// Where the connection is in its life.
    public internal(set) var state: QUICConnectionState = .handshaking
    /// The CONNECTION_CLOSE this side sent, when it closed the connection.
    public private(set) var localCloseError: QUICCloseError?
    /// The CONNECTION_CLOSE the peer sent, when it closed the connection.
    public private(set) var peerCloseError: QUICCloseError?
    /// The peer's address as last seen: where the closing packet goes.
    public private(set) var peer: QUICSocketAddress
    /// The server name the client's ClientHello asked for (SNI), once it arrived (server role).
    public internal(set) var requestedServerName: String?
    /// The certificate the peer presented and the handshake verified (its leaf, DER), nil without one. (Its
    /// subject is printed by JesterTLS, as TCP listeners print theirs, so both name a client alike.)
    public var peerCertificateDER: [UInt8]? {
        guard let tls, gnutls_certificate_type_get(tls) == GNUTLS_CRT_X509 else { return nil }
        var count: UInt32 = 0
        guard let chain = gnutls_certificate_get_peers(tls, &count), count > 0, let data = chain[0].data else {
            return nil
        }
        return Array(UnsafeBufferPointer(start: data, count: Int(chain[0].size)))
    }

    /// The TLS cipher suite agreed, by its IANA name ("TLS_AES_128_GCM_SHA256", as OpenSSL names TLS 1.3 suites
    /// for TCP listeners); nil before the handshake chose one.
    public var cipherSuite: String? {
        guard let tls, let name = gnutls_ciphersuite_get(tls) else { return nil }
        let text = String(cString: name)
        return text.isEmpty || text == "(NONE)" ? nil : text
    }
    /// The handshake completed (the client's Finished arrived: it holds the keys, so it is no replay). Set once,
    /// never cleared: a connection that closes before it never completed it, whatever its state says.
    public internal(set) var isHandshakeComplete = false
    /// The handshake resumed a session from a ticket (one round trip, no certificate).
    public var isResumed: Bool { tls.map { gnutls_session_is_resumed($0) != 0 } ?? false }
    /// The server accepted the client's 0-RTT data (server role; known once the ClientHello is processed).
    public var acceptedEarlyData: Bool {
        guard let tls else { return false }
        return gnutls_session_get_flags(tls) & UInt32(GNUTLS_SFLAGS_EARLY_DATA.rawValue) != 0
    }
    /// The address-validation token the server sent in NEW_TOKEN (client role): give it to the next `connect` to
    /// the same server, which then need not send a Retry (RFC 9000 §8.1.3).
    public internal(set) var addressValidationToken: [UInt8]?
    /// The ID the client put in its first Initial (server role): the owner routes it here too, because the
    /// client keeps using it until it learns the server's own ID (RFC 9000 §7.2).
    public let originalDestinationConnectionID: QUICConnectionID

    /// The ngtcp2 connection (`ngtcp2_conn *`); nil once `discard`ed.
    var conn: OpaquePointer!
    private(set) var tls: OpaquePointer!
    /// The certificate (server) or trust (client) the TLS session uses; kept alive with it.
    let credentials: QUICTLSCredentials
    /// What the GnuTLS session points at so the crypto helper finds this connection (stable memory).
    let connectionReference: UnsafeMutablePointer<ngtcp2_crypto_conn_ref>
    /// Where ngtcp2 writes the path of each packet it builds (its addresses point into this same storage).
    private let pathStorage: UnsafeMutablePointer<ngtcp2_path_storage>
    /// Makes the IDs this side hands the peer (the worker's slot and generation go in them later).
    let connectionIDs: any QUICConnectionIDFactory
    /// The stateless-reset and token secrets shared by every worker.
    let keys: QUICKeys
    /// Session tickets and 0-RTT (server role; nil: neither).
    let resumption: QUICSessionResumption?
    private let local: QUICSocketAddress
    /// Events not yet taken by the owner.
    var events: [QUICConnectionEvent] = []
    /// The session above (HTTP/3), which owns this connection; weak, so the two do not keep each other alive.
    weak var application: (any QUICStreamApplication)?
    /// The 1-RTT keys are in place (the stream application may open its streams).
    var applicationKeysInstalled = false
    /// Stream data received before the application was attached (`holdStreamData`).
    var streamDataBeforeApplication: [(stream: Int64, bytes: [UInt8], fin: Bool)] = []
    /// The name a client checks the server's certificate against (owned here; GnuTLS points at it).
    var verifiedName: UnsafeMutablePointer<CChar>?
    /// An application error to close with, set by the application before it fails a callback.
    var pendingApplicationError: QUICCloseError?
    /// The CONNECTION_CLOSE packet, kept to repeat while closing (RFC 9000 §10.2.1).
    private var closePacket: [UInt8] = []
    private var closePacketDue = false
    private var packetsWhileClosing = 0
    private var closeDeadline: QUICInstant?
    /// The time of the call being served: callbacks that need it (a token's timestamp) run inside that call.
    var currentTime: QUICInstant
    /// Token lifetime for the NEW_TOKEN frame sent after the handshake (server role).
    private let newTokenLifetimeMilliseconds: UInt64

    // MARK: Creation

    /// The parameters of a new connection, gathered so the two roles share one initializer.
    struct Setup {
        var role: Role
        var destinationID: ngtcp2_cid
        var sourceID: ngtcp2_cid
        var originalDestinationID: ngtcp2_cid
        var retrySourceID: ngtcp2_cid?
        var token: [UInt8]
        var version: UInt32
        var local: QUICSocketAddress
        var peer: QUICSocketAddress
        var settings: QUICTransportSettings
        var now: QUICInstant
        var serverName: String?
        /// The ALPN protocol a client offers; a server takes only h3.
        var applicationProtocol = "h3"
    }

    /// Creates the ngtcp2 connection and its GnuTLS session for either role.
    init(
        _ setup: Setup,
        credentials: QUICTLSCredentials,
        connectionIDs: any QUICConnectionIDFactory,
        keys: QUICKeys,
        resumption: QUICSessionResumption? = nil
    ) throws(QUICError) {
        role = setup.role
        self.resumption = setup.role == .server ? resumption : nil
        currentTime = setup.now
        peer = setup.peer
        local = setup.local
        self.credentials = credentials
        self.connectionIDs = connectionIDs
        self.keys = keys
        newTokenLifetimeMilliseconds = setup.settings.newTokenLifetimeMilliseconds
        originalDestinationConnectionID = QUICConnectionID(cid: setup.originalDestinationID)
        connectionReference = .allocate(capacity: 1)
        connectionReference.initialize(to: ngtcp2_crypto_conn_ref(get_conn: getConnection, user_data: nil))
        pathStorage = .allocate(capacity: 1)
        pathStorage.initialize(to: ngtcp2_path_storage())
        Self.prepare(pathStorage)
        connectionReference.pointee.user_data = Unmanaged.passUnretained(self).toOpaque()

        var callbacks = Self.callbacks(for: setup.role)
        var settings = ngtcp2_settings()
        cjester_ngtcp2_settings_default(&settings)
        settings.initial_ts = setup.now.nanoseconds
        settings.handshake_timeout = setup.settings.handshakeTimeoutMilliseconds * 1_000_000
        settings.rand_ctx = ngtcp2_rand_ctx(native_handle: nil)
        var params = ngtcp2_transport_params()
        cjester_ngtcp2_transport_params_default(&params)
        params.initial_max_stream_data_bidi_local = setup.settings.maxStreamData
        params.initial_max_stream_data_bidi_remote = setup.settings.maxStreamData
        params.initial_max_stream_data_uni = setup.settings.maxUnidirectionalStreamData
        params.initial_max_data = setup.settings.maxData
        params.initial_max_streams_bidi = setup.role == .server ? setup.settings.maxBidirectionalStreams : 0
        params.initial_max_streams_uni = setup.settings.maxUnidirectionalStreams
        params.max_idle_timeout = setup.settings.idleTimeoutMilliseconds * 1_000_000
        params.active_connection_id_limit = setup.settings.activeConnectionIDLimit
        if setup.role == .server {
            params.original_dcid = setup.originalDestinationID
            if let retry = setup.retrySourceID {
                params.retry_scid = retry
                params.retry_scid_present = 1
            }
            // The token follows from the ID and the shared secret, so any worker can reset this connection.
            var source = setup.sourceID
            params.stateless_reset_token_present = 1
            withUnsafeMutableBytes(of: &params.stateless_reset_token) { token in
                keys.statelessResetSecret.withUnsafeBufferPointer { secret in
                    _ = ngtcp2_crypto_generate_stateless_reset_token(
                        token.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        secret.baseAddress,
                        secret.count,
                        &source
                    )
                }
            }
        }

        var created: OpaquePointer?
        var destination = setup.destinationID
        var source = setup.sourceID
        let result = setup.token.withUnsafeBufferPointer { token in
            settings.token = ngtcp2_vec(base: UnsafeMutablePointer(mutating: token.baseAddress), len: token.count)
            return Self.withPath(local: setup.local, peer: setup.peer) { path in
                setup.role == .server
                    ? cjester_ngtcp2_conn_server_new(
                        &created,
                        &destination,
                        &source,
                        path,
                        setup.version,
                        &callbacks,
                        &settings,
                        &params,
                        connectionReference.pointee.user_data
                    )
                    : cjester_ngtcp2_conn_client_new(
                        &created,
                        &destination,
                        &source,
                        path,
                        setup.version,
                        &callbacks,
                        &settings,
                        &params,
                        connectionReference.pointee.user_data
                    )
            }
        }
        guard result == 0, let created else {
            throw QUICError(
                .library,
                "ngtcp2: cannot create a connection",
                cause: String(cString: ngtcp2_strerror(result))
            )
        }
        conn = created
        tls = try makeTLSSession(serverName: setup.serverName, applicationProtocol: setup.applicationProtocol)
        ngtcp2_conn_set_tls_native_handle(conn, UnsafeMutableRawPointer(tls))
        events.append(.connectionIDIssued(QUICConnectionID(cid: setup.sourceID)))
    }

    /// A client connection to `peer` (tests; HTTP/3 upstreams later): its first datagrams come out of
    /// `pendingDatagrams`. `serverName` is sent as SNI and, with trusted certificates, checked;
    /// `applicationProtocol` is the ALPN offered (h3; anything else is for testing a server's refusal); `token` is
    /// an `addressValidationToken` from an earlier connection.
    public static func connect(
        from local: QUICSocketAddress,
        to peer: QUICSocketAddress,
        serverName: String,
        credentials: QUICTLSCredentials,
        settings: QUICTransportSettings = QUICTransportSettings(),
        connectionIDs: any QUICConnectionIDFactory = RandomConnectionIDFactory(),
        applicationProtocol: String = "h3",
        token: [UInt8] = [],
        now: QUICInstant
    ) throws(QUICError) -> QUICConnection {
        let destination = RandomConnectionIDFactory(length: 18).makeConnectionID()
        var setup = Setup(
            role: .client,
            destinationID: destination.cid,
            sourceID: connectionIDs.makeConnectionID().cid,
            originalDestinationID: destination.cid,
            retrySourceID: nil,
            token: token,
            version: CJESTER_NGTCP2_PROTO_VER_V1,
            local: local,
            peer: peer,
            settings: settings,
            now: now,
            serverName: serverName
        )
        setup.applicationProtocol = applicationProtocol
        return try QUICConnection(setup, credentials: credentials, connectionIDs: connectionIDs, keys: .random())
    }

    deinit {
        if let conn { ngtcp2_conn_del(conn) }
        if let tls { gnutls_deinit(tls) }
        free(verifiedName)
        connectionReference.deallocate()
        pathStorage.deallocate()
    }

    // MARK: Input

    /// How the first datagram of a server connection went, for `QUICServerEndpoint.accept`.
    enum FirstPacketOutcome { case accepted, retry, failed }

    /// Processes one datagram from `peer` arriving at `local`. Afterwards read `state`, `takeEvents()`, the
    /// application's events, and write what `pendingDatagrams` gives (acknowledgements, answers, a close).
    public func receive(
        datagram: UnsafeRawBufferPointer,
        local: QUICSocketAddress,
        peer: QUICSocketAddress,
        ecn: UInt8 = 0,
        now: QUICInstant
    ) {
        _ = read(datagram, local: local, peer: peer, ecn: ecn, now: now)
    }

    /// `receive` for a datagram held in an array.
    public func receive(
        datagram: [UInt8],
        local: QUICSocketAddress,
        peer: QUICSocketAddress,
        ecn: UInt8 = 0,
        now: QUICInstant
    ) {
        datagram.withUnsafeBytes { receive(datagram: $0, local: local, peer: peer, ecn: ecn, now: now) }
    }

    /// `receive`, telling `QUICServerEndpoint.accept` how the first datagram went.
    func read(
        _ datagram: UnsafeRawBufferPointer,
        local: QUICSocketAddress,
        peer: QUICSocketAddress,
        ecn: UInt8,
        now: QUICInstant
    ) -> FirstPacketOutcome {
        currentTime = now
        switch state {
        case .closed, .draining:
            return .failed
        case .closing:
            // Repeat the close, less often as more arrives (RFC 9000 §10.2.1): on the 1st, 2nd, 4th, 8th packet.
            packetsWhileClosing += 1
            if packetsWhileClosing & (packetsWhileClosing - 1) == 0 { closePacketDue = true }
            return .failed
        case .handshaking, .established:
            break
        }
        let result = Self.withPath(local: local, peer: peer) { path in
            cjester_ngtcp2_conn_read_pkt(
                conn,
                path,
                UInt32(ecn),
                datagram.baseAddress?.assumingMemoryBound(to: UInt8.self),
                datagram.count,
                now.nanoseconds
            )
        }
        if result == 0 {
            self.peer = peer
            return .accepted
        }
        switch result {
        case NGTCP2_ERR_DRAINING:
            enterDraining(now: now)
        case NGTCP2_ERR_RETRY:
            // 0-RTT data the server cannot take without address validation: the endpoint answers with Retry.
            finish()
            return .retry
        case NGTCP2_ERR_DROP_CONN:
            finish()
        case NGTCP2_ERR_CRYPTO:
            closeAfterError(.transportTLSAlert(ngtcp2_conn_get_tls_alert(conn)), now: now)
        case NGTCP2_ERR_CALLBACK_FAILURE where pendingApplicationError != nil:
            closeAfterError(.application(pendingApplicationError!), now: now)
        default:
            closeAfterError(.library(result), now: now)
        }
        return .failed
    }

    // MARK: Output

    /// The largest datagram this connection writes: the buffer size `writeDatagram` needs.
    public var maximumDatagramSize: Int {
        switch state {
        case .handshaking, .established: Int(ngtcp2_conn_get_max_tx_udp_payload_size(conn))
        case .closing, .draining, .closed: max(closePacket.count, 1200)
        }
    }

    /// Writes the next datagram into `buffer` (at least `maximumDatagramSize` bytes) and returns its length and
    /// destination, or nil when there is nothing to send now (congestion control or pacing may hold data back
    /// until `nextDeadline`).
    public func writeDatagram(
        into buffer: UnsafeMutableRawBufferPointer,
        now: QUICInstant
    ) -> (count: Int, peer: QUICSocketAddress, ecn: UInt8)? {
        currentTime = now
        switch state {
        case .closing:
            guard closePacketDue, closePacket.count <= buffer.count else { return nil }
            closePacketDue = false
            buffer.copyBytes(from: closePacket)
            return (closePacket.count, peer, 0)
        case .draining, .closed:
            return nil
        case .handshaking, .established:
            break
        }
        let destination = buffer.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let path = pathStorage.pointer(to: \.path)!
        let vectorCapacity = 16
        return withUnsafeTemporaryAllocation(of: ngtcp2_vec.self, capacity: vectorCapacity) { vectors in
            while true {
                var stream: Int64 = -1
                var fin = false
                var count = 0
                if let application, ngtcp2_conn_get_max_data_left(conn) > 0 {
                    guard let next = application.quicNextStreamData(vectors) else {
                        closeAfterError(.application(pendingApplicationError ?? Self.internalError), now: now)
                        return writeDatagram(into: buffer, now: now)
                    }
                    (stream, fin, count) = next
                }
                var flags = UInt32(NGTCP2_WRITE_STREAM_FLAG_MORE)
                if fin { flags |= UInt32(NGTCP2_WRITE_STREAM_FLAG_FIN) }
                var written: ngtcp2_ssize = -1
                var ecn: UInt32 = 0
                let result = cjester_ngtcp2_conn_writev_stream(
                    conn,
                    path,
                    &ecn,
                    destination,
                    buffer.count,
                    &written,
                    flags,
                    stream,
                    UnsafePointer(vectors.baseAddress),
                    count,
                    now.nanoseconds
                )
                if result < 0 {
                    switch Int32(result) {
                    case NGTCP2_ERR_STREAM_DATA_BLOCKED:
                        application?.quicStreamBlocked(stream: stream)
                        continue
                    case NGTCP2_ERR_STREAM_SHUT_WR:
                        application?.quicStreamWriteShut(stream: stream)
                        continue
                    case NGTCP2_ERR_WRITE_MORE:
                        if application?.quicStreamDataWritten(stream: stream, count: Int(written)) == false {
                            closeAfterError(.application(pendingApplicationError ?? Self.internalError), now: now)
                            return writeDatagram(into: buffer, now: now)
                        }
                        continue
                    default:
                        closeAfterError(.library(Int32(result)), now: now)
                        return writeDatagram(into: buffer, now: now)
                    }
                }
                if written >= 0, application?.quicStreamDataWritten(stream: stream, count: Int(written)) == false {
                    closeAfterError(.application(pendingApplicationError ?? Self.internalError), now: now)
                    return writeDatagram(into: buffer, now: now)
                }
                guard result > 0 else {
                    ngtcp2_conn_update_pkt_tx_time(conn, now.nanoseconds)
                    return nil
                }
                let remote = path.pointee.remote
                let to =
                    QUICSocketAddress(
                        sockaddrBytes: UnsafeRawBufferPointer(start: remote.addr, count: Int(remote.addrlen))
                    ) ?? peer
                return (Int(result), to, UInt8(truncatingIfNeeded: ecn))
            }
        }
    }

    /// Every datagram ready now (at most `limit`), copied out: for callers that do not write in place.
    public func pendingDatagrams(now: QUICInstant, limit: Int = 64) -> [QUICDatagram] {
        var datagrams: [QUICDatagram] = []
        var buffer = [UInt8](repeating: 0, count: max(maximumDatagramSize, 1500))
        while datagrams.count < limit {
            let written = buffer.withUnsafeMutableBytes { writeDatagram(into: $0, now: now) }
            guard let written else { break }
            datagrams.append(QUICDatagram(bytes: Array(buffer[..<written.count]), peer: written.peer, ecn: written.ecn))
            if buffer.count < maximumDatagramSize { buffer = [UInt8](repeating: 0, count: maximumDatagramSize) }
        }
        return datagrams
    }

    /// What happened since the last call.
    public func takeEvents() -> [QUICConnectionEvent] {
        defer { events = [] }
        return events
    }

    // MARK: Time

    /// When `handleExpiry` must run next (retransmission, acknowledgement delay, idle or closing timeout), or nil.
    public var nextDeadline: QUICInstant? {
        switch state {
        case .closing, .draining: return closeDeadline
        case .closed: return nil
        case .handshaking, .established:
            let expiry = ngtcp2_conn_get_expiry(conn)
            return expiry == UInt64.max ? nil : QUICInstant(nanoseconds: expiry)
        }
    }

    /// Runs the timers due at `now`; afterwards write `pendingDatagrams` (a retransmission, a probe).
    public func handleExpiry(now: QUICInstant) {
        currentTime = now
        switch state {
        case .closed: return
        case .closing, .draining:
            if let closeDeadline, now >= closeDeadline { finish() }
            return
        case .handshaking, .established:
            break
        }
        let result = ngtcp2_conn_handle_expiry(conn, now.nanoseconds)
        if result == NGTCP2_ERR_IDLE_CLOSE || result == NGTCP2_ERR_HANDSHAKE_TIMEOUT {
            // RFC 9000 §10.1: an idle connection is discarded without a word.
            finish()
        } else if result != 0 {
            closeAfterError(.library(result), now: now)
        }
    }

    // MARK: Closing

    /// Closes the connection with an application error (HTTP/3: H3_NO_ERROR 0x100 for a clean close): the
    /// CONNECTION_CLOSE comes out of `pendingDatagrams`, then the connection stays `closing` until `nextDeadline`.
    public func close(applicationError code: UInt64, reason: String = "", now: QUICInstant) {
        guard state == .handshaking || state == .established else { return }
        closeAfterError(.application(QUICCloseError(isApplicationError: true, code: code, reason: reason)), now: now)
    }

    /// Why a connection fails, in the forms ngtcp2 takes.
    enum Failure {
        case library(Int32)
        case transportTLSAlert(UInt8)
        case application(QUICCloseError)
    }

    /// The close used when a stream application fails without saying why: H3_INTERNAL_ERROR.
    static let internalError = QUICCloseError(isApplicationError: true, code: 0x102, reason: "internal error")

    /// Enters the closing period (RFC 9000 §10.2.1): the CONNECTION_CLOSE is written once and kept to repeat.
    func closeAfterError(_ failure: Failure, now: QUICInstant) {
        guard state == .handshaking || state == .established else { return }
        var error = ngtcp2_connection_close_error()
        ngtcp2_connection_close_error_default(&error)
        var reasonBytes: [UInt8] = []
        switch failure {
        case .library(let code):
            ngtcp2_connection_close_error_set_transport_error_liberr(&error, code, nil, 0)
        case .transportTLSAlert(let alert):
            ngtcp2_connection_close_error_set_transport_error_tls_alert(&error, alert, nil, 0)
        case .application(let close):
            reasonBytes = Array(close.reason.utf8.prefix(1024))
            ngtcp2_connection_close_error_set_application_error(&error, close.code, nil, 0)
        }
        localCloseError = QUICCloseError(
            isApplicationError: error.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION,
            code: error.error_code,
            reason: String(decoding: reasonBytes, as: UTF8.self)
        )
        if ngtcp2_conn_is_in_draining_period(conn) != 0 {
            enterDraining(now: now)
            return
        }
        var packet = [UInt8](repeating: 0, count: 1500)
        let written = reasonBytes.withUnsafeMutableBufferPointer { reason in
            error.reason = reason.baseAddress
            error.reasonlen = reason.count
            return packet.withUnsafeMutableBufferPointer { buffer in
                cjester_ngtcp2_conn_write_connection_close(
                    conn,
                    pathStorage.pointer(to: \.path)!,
                    buffer.baseAddress,
                    buffer.count,
                    &error,
                    now.nanoseconds
                )
            }
        }
        closePacket = written > 0 ? Array(packet[..<Int(written)]) : []
        closePacketDue = written > 0
        state = .closing
        closeDeadline = QUICInstant(nanoseconds: now.nanoseconds &+ 3 * ngtcp2_conn_get_pto(conn))
    }

    private func enterDraining(now: QUICInstant) {
        guard state != .draining, state != .closed else { return }
        if localCloseError == nil {
            var error = ngtcp2_connection_close_error()
            ngtcp2_conn_get_connection_close_error(conn, &error)
            let received = QUICCloseError(
                isApplicationError: error.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION,
                code: error.error_code,
                reason: String(
                    decoding: UnsafeRawBufferPointer(start: error.reason, count: error.reasonlen),
                    as: UTF8.self
                )
            )
            peerCloseError = received
            events.append(.peerClosed(received))
        }
        state = .draining
        closeDeadline = QUICInstant(nanoseconds: now.nanoseconds &+ 3 * ngtcp2_conn_get_pto(conn))
    }

    private func finish() {
        guard state != .closed else { return }
        state = .closed
        closeDeadline = nil
        events.append(.closed)
    }
}
