// SPDX-License-Identifier: Apache-2.0
internal import CJesterNGTCP2

#if canImport(Glibc)
import Glibc
#endif

// The parts of a connection's setup that speak C: its GnuTLS session, its path storage, and the conversions
// between Jester's IDs and addresses and ngtcp2's.

extension QUICConnection {

    /// The connection's GnuTLS session: TLS 1.3, ngtcp2's crypto helper, the credentials, ALPN and (client) SNI.
    func makeTLSSession(serverName: String?, applicationProtocol: String) throws(QUICError) -> OpaquePointer {
        var session: gnutls_session_t?
        let noEndOfEarlyData = UInt32(GNUTLS_NO_END_OF_EARLY_DATA.rawValue)
        // Tickets go out when the handshake completes (`handshakeCompleted`), not at GnuTLS's moment.
        var serverFlags: UInt32 = UInt32(GNUTLS_SERVER.rawValue) | UInt32(GNUTLS_NO_AUTO_SEND_TICKET.rawValue)
        if resumption?.acceptsEarlyData == true { serverFlags |= UInt32(GNUTLS_ENABLE_EARLY_DATA.rawValue) }
        let flags: UInt32 =
            role == .server ? serverFlags | noEndOfEarlyData : UInt32(GNUTLS_CLIENT.rawValue) | noEndOfEarlyData
        guard gnutls_init(&session, flags) == 0, let session else {
            throw QUICError(.tlsConfiguration, "gnutls: cannot create a session")
        }
        var status = gnutls_priority_set_direct(session, Self.tlsPriority, nil)
        if status == 0 {
            status =
                role == .server
                ? ngtcp2_crypto_gnutls_configure_server_session(session)
                : ngtcp2_crypto_gnutls_configure_client_session(session)
        }
        if status == 0, role == .server, let resumption {
            status = resumption.configure(session)
        }
        if status == 0 {
            gnutls_session_set_ptr(session, UnsafeMutableRawPointer(connectionReference))
            status = gnutls_credentials_set(
                session,
                GNUTLS_CRD_CERTIFICATE,
                UnsafeMutableRawPointer(credentials.credentials)
            )
        }
        if status == 0 {
            // ALPN h3 is mandatory (RFC 9114 §3.1); the server also checks the choice after the ClientHello, since
            // GnuTLS lets a ClientHello without ALPN through. (A client may offer another, to test that refusal.)
            var alpn: [UInt8] = Array((role == .server ? "h3" : applicationProtocol).utf8)
            status = alpn.withUnsafeMutableBufferPointer { bytes in
                var datum = gnutls_datum_t(data: bytes.baseAddress, size: UInt32(bytes.count))
                let flags =
                    role == .server
                    ? UInt32(GNUTLS_ALPN_MANDATORY.rawValue | GNUTLS_ALPN_SERVER_PRECEDENCE.rawValue)
                    : UInt32(GNUTLS_ALPN_MANDATORY.rawValue)
                return gnutls_alpn_set_protocols(session, &datum, 1, flags)
            }
            if role == .server {
                // Before GnuTLS picks a certificate: the SNI is noted (routes match on it), and with several
                // certificates the one it names is chosen (see QUICTLSCredentials).
                gnutls_handshake_set_post_client_hello_function(session, selectCertificate)
            }
            if role == .server, credentials.clientCertificates != .off {
                // Ask for the client's certificate; GnuTLS checks any it gets against the client CA during the
                // handshake (a bad one fails it; none passes unless it is required).
                gnutls_certificate_server_set_request(
                    session, credentials.clientCertificates == .required ? GNUTLS_CERT_REQUIRE : GNUTLS_CERT_REQUEST)
                cjester_gnutls_verify_client_certificates(session)
            }
            if role == .server {
                gnutls_handshake_set_hook_function(
                    session,
                    UInt32(GNUTLS_HANDSHAKE_CLIENT_HELLO.rawValue),
                    Int32(GNUTLS_HOOK_POST),
                    checkALPN
                )
            }
        }
        if status == 0, role == .client, let serverName {
            status = gnutls_server_name_set(session, GNUTLS_NAME_DNS, serverName, serverName.utf8.count)
            if credentials.verifiesPeer {
                // GnuTLS keeps the pointer for the session's life: a copy the connection frees in deinit.
                verifiedName = strdup(serverName)
                gnutls_session_set_verify_cert(session, verifiedName, 0)
            }
        }
        guard status == 0 else {
            gnutls_deinit(session)
            throw QUICError(
                .tlsConfiguration,
                "gnutls: cannot configure the QUIC session",
                cause: String(cString: gnutls_strerror(status))
            )
        }
        return session
    }

    /// GnuTLS's priority string: TLS 1.3 only (RFC 9001 §4.2), without middlebox compatibility mode (§8.4), the
    /// AEADs QUIC defines packet protection for, and the common key-exchange groups.
    private static let tlsPriority = """
        %DISABLE_TLS13_COMPAT_MODE:NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:\
        +CHACHA20-POLY1305:+AES-128-CCM:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:+GROUP-SECP521R1
        """

    /// Points a path storage's two addresses at its own buffers (what ngtcp2's examples call zeroing it).
    static func prepare(_ storage: UnsafeMutablePointer<ngtcp2_path_storage>) {
        let localBuffer = UnsafeMutableRawPointer(storage.pointer(to: \.local_addrbuf)!)
        let remoteBuffer = UnsafeMutableRawPointer(storage.pointer(to: \.remote_addrbuf)!)
        let size = ngtcp2_socklen(MemoryLayout<ngtcp2_sockaddr_union>.size)
        storage.pointee.path = ngtcp2_path(
            local: ngtcp2_addr(addr: localBuffer.assumingMemoryBound(to: ngtcp2_sockaddr.self), addrlen: size),
            remote: ngtcp2_addr(addr: remoteBuffer.assumingMemoryBound(to: ngtcp2_sockaddr.self), addrlen: size),
            user_data: nil
        )
    }

    /// Calls `body` with an ngtcp2 path over the two addresses (ngtcp2 copies what it keeps).
    static func withPath<T>(
        local: QUICSocketAddress,
        peer: QUICSocketAddress,
        _ body: (UnsafePointer<ngtcp2_path>) -> T
    ) -> T {
        local.bytes.withUnsafeBytes { localBytes in
            peer.bytes.withUnsafeBytes { peerBytes in
                var path = ngtcp2_path(
                    local: ngtcp2_addr(
                        addr: UnsafeMutablePointer(
                            mutating: localBytes.baseAddress!.assumingMemoryBound(to: ngtcp2_sockaddr.self)
                        ),
                        addrlen: ngtcp2_socklen(localBytes.count)
                    ),
                    remote: ngtcp2_addr(
                        addr: UnsafeMutablePointer(
                            mutating: peerBytes.baseAddress!.assumingMemoryBound(to: ngtcp2_sockaddr.self)
                        ),
                        addrlen: ngtcp2_socklen(peerBytes.count)
                    ),
                    user_data: nil
                )
                return body(&path)
            }
        }
    }
}

extension QUICConnectionID {
    /// The ID of an ngtcp2 CID.
    init(cid: ngtcp2_cid) {
        var cid = cid
        let bytes = withUnsafeBytes(of: &cid.data) {
            Array($0.prefix(min(cid.datalen, QUICConnectionID.maximumLength)))
        }
        self.init(bytes)!
    }

    /// The ngtcp2 CID of this ID.
    var cid: ngtcp2_cid {
        var cid = ngtcp2_cid()
        cid.datalen = bytes.count
        withUnsafeMutableBytes(of: &cid.data) { $0.copyBytes(from: bytes) }
        return cid
    }
}
