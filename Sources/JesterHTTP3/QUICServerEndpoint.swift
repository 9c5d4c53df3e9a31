// SPDX-License-Identifier: Apache-2.0
internal import CJesterNGTCP2

/// Where a datagram belongs, read from its header before any connection state is touched.
public enum QUICPacketRoute: Sendable, Equatable {
    /// To the connection named by this destination ID, if the owner has one; otherwise `accept` (a long-header
    /// Initial) or `statelessReset` (anything else).
    case connection(QUICConnectionID, isLongHeader: Bool)
    /// A version this server does not speak: send this Version Negotiation packet (RFC 9000 §6).
    case versionNegotiation(QUICDatagram)
    /// Not a QUIC packet this server can parse: drop it.
    case invalid
}

/// What to do with a datagram that names no known connection. The endpoint decides; the caller performs it,
/// so the decisions (Retry under load, version negotiation) can be tested without sockets.
public enum QUICAcceptDecision {
    /// A new connection: add it under its IDs (its events name them) and send its `pendingDatagrams`.
    case accepted(QUICConnection)
    /// Send this Retry (RFC 9000 §8.1.2): the client proves its address by echoing the token.
    case retry(QUICDatagram)
    /// Send this CONNECTION_CLOSE (INVALID_TOKEN) in an Initial packet: the token was forged or expired.
    case refuse(QUICDatagram)
    /// Drop the datagram: not an acceptable first packet (too short, not an Initial, unparsable).
    case ignore
}

/// The server side of a QUIC listener, without the socket: it reads packet headers, accepts new connections
/// (TLS credentials, transport settings, connection IDs from the caller's factory, keys from the master), and
/// writes the packets that need no connection: Version Negotiation, Retry, stateless reset.
public final class QUICServerEndpoint {
    /// The transport limits every accepted connection gets.
    public let settings: QUICTransportSettings
    /// Makes every server connection ID; its fixed length is how short headers are read.
    public let connectionIDs: any QUICConnectionIDFactory
    private let credentials: QUICTLSCredentials
    private let keys: QUICKeys
    /// Session tickets and 0-RTT for the connections this endpoint accepts (nil: a full handshake every time).
    private let resumption: QUICSessionResumption?

    /// An endpoint serving with `credentials`, keys shared by all workers, and the caller's connection IDs;
    /// with `resumption`, clients resume with tickets (and may send 0-RTT data, if it accepts early data).
    public init(
        credentials: QUICTLSCredentials,
        keys: QUICKeys,
        connectionIDs: any QUICConnectionIDFactory,
        settings: QUICTransportSettings = QUICTransportSettings(),
        resumption: QUICSessionResumption? = nil
    ) {
        self.credentials = credentials
        self.keys = keys
        self.resumption = resumption
        self.connectionIDs = connectionIDs
        self.settings = settings
    }

    /// Reads the version and destination ID of a datagram from `peer`.
    public func route(datagram: UnsafeRawBufferPointer, peer: QUICSocketAddress) -> QUICPacketRoute {
        guard let base = datagram.baseAddress?.assumingMemoryBound(to: UInt8.self), datagram.count > 0 else {
            return .invalid
        }
        var header = ngtcp2_version_cid()
        let result = ngtcp2_pkt_decode_version_cid(&header, base, datagram.count, connectionIDs.connectionIDLength)
        let isLong = base[0] & 0x80 != 0
        switch result {
        case 0:
            guard let id = QUICConnectionID(UnsafeBufferPointer(start: header.dcid, count: header.dcidlen)) else {
                return .invalid
            }
            return .connection(id, isLongHeader: isLong)
        case NGTCP2_ERR_VERSION_NEGOTIATION:
            // RFC 9000 §6.1: only in answer to a datagram that could be an Initial (at least 1200 bytes).
            guard datagram.count >= 1200 else { return .invalid }
            var versions: [UInt32] = [CJESTER_NGTCP2_PROTO_VER_V1]
            var packet = [UInt8](repeating: 0, count: 256 + 2 * QUICConnectionID.maximumLength)
            let written = packet.withUnsafeMutableBufferPointer { buffer in
                // The answer swaps the IDs: its destination is the client's source (§17.2.1).
                ngtcp2_pkt_write_version_negotiation(
                    buffer.baseAddress,
                    buffer.count,
                    UInt8.random(in: 0...255),
                    header.scid,
                    header.scidlen,
                    header.dcid,
                    header.dcidlen,
                    &versions,
                    versions.count
                )
            }
            guard written > 0 else { return .invalid }
            return .versionNegotiation(QUICDatagram(bytes: Array(packet[..<written]), peer: peer))
        default:
            return .invalid
        }
    }

    /// Decides what to do with a datagram whose destination ID names no connection: accept it as a new
    /// connection, ask for address validation with a Retry, refuse a bad token, or ignore it.
    /// `requireAddressValidation` (under load, or forced by configuration) makes every client without a valid
    /// token go through a Retry first (RFC 9000 §8.1.2), which costs a round trip and protects against spoofed
    /// sources.
    public func accept(
        datagram: UnsafeRawBufferPointer,
        local: QUICSocketAddress,
        peer: QUICSocketAddress,
        requireAddressValidation: Bool = false,
        now: QUICInstant
    ) -> QUICAcceptDecision {
        guard let base = datagram.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return .ignore }
        var header = ngtcp2_pkt_hd()
        switch ngtcp2_accept(&header, base, datagram.count) {
        case 0: break
        case NGTCP2_ERR_RETRY:
            // A 0-RTT packet that overtook its Initial (ngtcp2 0.12 suggests a Retry; 1.x drops it, as here): a
            // Retry would discard the client's early data and cost a round trip, while the client sends again
            // whatever this packet carried once the handshake is under way.
            return .ignore
        default: return .ignore
        }
        let token = Array(UnsafeBufferPointer(start: header.token.base, count: header.token.len))
        var originalDestination: ngtcp2_cid?
        var acceptedToken: [UInt8] = []
        if requireAddressValidation || !token.isEmpty {
            switch token.first {
            case nil:
                return retry(header, peer: peer, received: datagram.count, now: now)
            case UInt8(NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY):
                guard let original = verifyRetryToken(token, header: header, peer: peer, now: now) else {
                    return refuse(header, peer: peer)
                }
                originalDestination = original
                acceptedToken = token
            case UInt8(NGTCP2_CRYPTO_TOKEN_MAGIC_REGULAR):
                if verifyRegularToken(token, peer: peer, now: now) {
                    acceptedToken = token
                } else if requireAddressValidation {
                    return retry(header, peer: peer, received: datagram.count, now: now)
                }
            default:
                // A token from someone else's server (or garbage): validate afresh, or go on without one.
                if requireAddressValidation { return retry(header, peer: peer, received: datagram.count, now: now) }
            }
        }
        let source = connectionIDs.makeConnectionID()
        let setup = QUICConnection.Setup(
            role: .server,
            destinationID: header.scid,
            sourceID: source.cid,
            originalDestinationID: originalDestination ?? header.dcid,
            retrySourceID: originalDestination == nil ? nil : header.dcid,
            token: acceptedToken,
            version: header.version,
            local: local,
            peer: peer,
            settings: settings,
            now: now,
            serverName: nil
        )
        guard
            let connection = try? QUICConnection(
                setup,
                credentials: credentials,
                connectionIDs: connectionIDs,
                keys: keys,
                resumption: resumption
            )
        else { return .ignore }
        switch connection.read(datagram, local: local, peer: peer, ecn: 0, now: now) {
        case .accepted: return .accepted(connection)
        case .retry: return retry(header, peer: peer, received: datagram.count, now: now)
        case .failed: return connection.state == .closing ? .accepted(connection) : .ignore
        }
    }

    /// A stateless reset (RFC 9000 §10.3) for a short-header datagram naming no connection this server holds:
    /// the client learns at once that its connection is gone (a worker restarted), instead of waiting for its
    /// idle timeout. Nil when the datagram is too short to answer without risking a loop (§10.3.3).
    public func statelessReset(datagram: UnsafeRawBufferPointer, peer: QUICSocketAddress) -> QUICDatagram? {
        guard case .connection(let id, isLongHeader: false) = route(datagram: datagram, peer: peer) else { return nil }
        // Smaller than what arrived, so two endpoints cannot reset each other forever; at least 21 bytes (§10.3).
        let size = min(datagram.count - 1, 43)
        guard size >= 21 else { return nil }
        var token = [UInt8](repeating: 0, count: Int(NGTCP2_STATELESS_RESET_TOKENLEN))
        var cid = id.cid
        let made = keys.statelessResetSecret.withUnsafeBufferPointer { secret in
            ngtcp2_crypto_generate_stateless_reset_token(&token, secret.baseAddress, secret.count, &cid)
        }
        guard made == 0 else { return nil }
        var random = (0..<(size - token.count)).map { _ in UInt8.random(in: 0...255) }
        var packet = [UInt8](repeating: 0, count: size)
        let written = ngtcp2_pkt_write_stateless_reset(&packet, packet.count, &token, &random, random.count)
        guard written > 0 else { return nil }
        return QUICDatagram(bytes: Array(packet[..<written]), peer: peer)
    }

    // MARK: Internals

    private func retry(
        _ header: ngtcp2_pkt_hd,
        peer: QUICSocketAddress,
        received: Int,
        now: QUICInstant
    )
        -> QUICAcceptDecision
    {
        var header = header
        var retrySource = connectionIDs.makeRetryConnectionID().cid
        var token = [UInt8](repeating: 0, count: CJESTER_NGTCP2_MAX_RETRY_TOKENLEN)
        let tokenLength = withSockaddr(peer) { address, length in
            keys.tokenSecret.withUnsafeBufferPointer { secret in
                ngtcp2_crypto_generate_retry_token(
                    &token,
                    secret.baseAddress,
                    secret.count,
                    header.version,
                    address,
                    length,
                    &retrySource,
                    &header.dcid,
                    now.nanoseconds
                )
            }
        }
        guard tokenLength > 0 else { return .ignore }
        // RFC 9000 §8.1: before validation, send at most three times what arrived.
        var packet = [UInt8](repeating: 0, count: min(1200, received * 3))
        let written = ngtcp2_crypto_write_retry(
            &packet,
            packet.count,
            header.version,
            &header.scid,
            &retrySource,
            &header.dcid,
            token,
            Int(tokenLength)
        )
        guard written > 0 else { return .ignore }
        return .retry(QUICDatagram(bytes: Array(packet[..<written]), peer: peer))
    }

    private func refuse(_ header: ngtcp2_pkt_hd, peer: QUICSocketAddress) -> QUICAcceptDecision {
        var header = header
        var packet = [UInt8](repeating: 0, count: 1200)
        let written = ngtcp2_crypto_write_connection_close(
            &packet,
            packet.count,
            header.version,
            &header.scid,
            &header.dcid,
            UInt64(NGTCP2_INVALID_TOKEN),
            nil,
            0
        )
        guard written > 0 else { return .ignore }
        return .refuse(QUICDatagram(bytes: Array(packet[..<written]), peer: peer))
    }

    private func verifyRetryToken(
        _ token: [UInt8],
        header: ngtcp2_pkt_hd,
        peer: QUICSocketAddress,
        now: QUICInstant
    )
        -> ngtcp2_cid?
    {
        var header = header
        var original = ngtcp2_cid()
        let result = withSockaddr(peer) { address, length in
            keys.tokenSecret.withUnsafeBufferPointer { secret in
                ngtcp2_crypto_verify_retry_token(
                    &original,
                    token,
                    token.count,
                    secret.baseAddress,
                    secret.count,
                    header.version,
                    address,
                    length,
                    &header.dcid,
                    settings.retryTokenLifetimeMilliseconds * 1_000_000,
                    now.nanoseconds
                )
            }
        }
        return result == 0 ? original : nil
    }

    private func verifyRegularToken(_ token: [UInt8], peer: QUICSocketAddress, now: QUICInstant) -> Bool {
        withSockaddr(peer) { address, length in
            keys.tokenSecret.withUnsafeBufferPointer { secret in
                ngtcp2_crypto_verify_regular_token(
                    token,
                    token.count,
                    secret.baseAddress,
                    secret.count,
                    address,
                    length,
                    settings.newTokenLifetimeMilliseconds * 1_000_000,
                    now.nanoseconds
                ) == 0
            }
        }
    }

    private func withSockaddr<T>(
        _ address: QUICSocketAddress,
        _ body: (UnsafePointer<ngtcp2_sockaddr>, ngtcp2_socklen) -> T
    ) -> T {
        address.bytes.withUnsafeBytes { raw in
            body(raw.baseAddress!.assumingMemoryBound(to: ngtcp2_sockaddr.self), ngtcp2_socklen(raw.count))
        }
    }
}
