// SPDX-License-Identifier: Apache-2.0
private import CJesterOpenSSL

/// One TLS session over memory buffers: ciphertext from the peer goes in with `feed`, ciphertext for the peer
/// comes out with `takeOutput`, plaintext goes through `read` and `write`. No socket, so the handler decides
/// when to read and write, and tests can connect a client and a server in memory.
public final class TLSConnection {
    /// What a handshake step or a read came to.
    public enum Progress: Equatable {
        /// The handshake is done.
        case complete
        /// Plaintext bytes were read (only from `read`).
        case bytes(Int)
        /// More ciphertext from the peer is needed.
        case needsInput
        /// The peer sent close_notify: no more plaintext will come.
        case closed
        case failed(TLSError)
    }

    private let ssl: OpaquePointer
    /// Ciphertext from the peer; owned by `ssl`.
    private let inbound: OpaquePointer
    /// Ciphertext for the peer; owned by `ssl`.
    private let outbound: OpaquePointer
    /// Kept alive for the callbacks, which find it through the OpenSSL context (server side), or for the
    /// lifetime of the SSL_CTX (client side).
    private let context: AnyObject?
    private var shutdownSent = false

    init(context: TLSServerContext, handle: OpaquePointer) {
        self.context = context
        ssl = SSL_new(handle)!
        inbound = BIO_new(BIO_s_mem())!
        outbound = BIO_new(BIO_s_mem())!
        SSL_set_bio(ssl, inbound, outbound)
        SSL_set_accept_state(ssl)
    }

    /// A client-side connection on `handle` (see `TLSClientContext.makeConnection`).
    init(client handle: OpaquePointer, host: String?, verify: Bool, session: TLSSession?) {
        // SSL_new takes its own reference on the SSL_CTX, so the connection may outlive its TLSClientContext.
        context = nil
        ssl = SSL_new(handle)!
        inbound = BIO_new(BIO_s_mem())!
        outbound = BIO_new(BIO_s_mem())!
        SSL_set_bio(ssl, inbound, outbound)
        if let host {
            let isAddress = host.contains(":") || host.allSatisfy { $0.isNumber || $0 == "." }
            if !isAddress { _ = cjester_SSL_set_tlsext_host_name(ssl, host) }
            if verify {
                if isAddress {
                    _ = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)
                } else {
                    _ = SSL_set1_host(ssl, host)
                }
            }
        }
        if let session { SSL_set_session(ssl, session.handle) }
        SSL_set_connect_state(ssl)
    }

    /// A client-side connection for tests: with `caPEM`, the chain is verified (not the name); without, nothing is.
    public convenience init(clientServerName: String?, applicationProtocols: [String] = [], caPEM: [UInt8]? = nil,
        certificate: TLSServerConfiguration.Certificate? = nil, session: TLSSession? = nil) throws(TLSError)
    {
        let context = try TLSClientContext(caPEM: caPEM, verify: caPEM != nil, certificate: certificate,
            applicationProtocols: applicationProtocols)
        self.init(client: context.handle, host: clientServerName, verify: false, session: session)
    }

    deinit {
        SSL_free(ssl)
    }

    /// Hands ciphertext received from the peer to the session.
    public func feed(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        // A memory BIO takes everything (it grows); the record layer consumes it on the next read.
        _ = BIO_write(inbound, base, Int32(bytes.count))
    }

    /// Advances the handshake as far as the ciphertext fed so far allows.
    public func handshake() -> Progress {
        let result = SSL_do_handshake(ssl)
        if result == 1 { return .complete }
        return progress(after: result, operation: "handshake")
    }

    /// Decrypts into `buffer`: `.bytes(n)`, or why nothing could be read.
    public func read(into buffer: UnsafeMutableRawBufferPointer) -> Progress {
        let result = SSL_read(ssl, buffer.baseAddress, Int32(buffer.count))
        if result > 0 { return .bytes(Int(result)) }
        return progress(after: result, operation: "read")
    }

    /// Encrypts `bytes` into the output (all of them: memory BIOs never push back).
    public func write(_ bytes: UnsafeRawBufferPointer) -> TLSError? {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return nil }
        let result = SSL_write(ssl, base, Int32(bytes.count))
        if result == Int32(bytes.count) { return nil }
        return .fromQueue("write")
    }

    /// Ciphertext waiting to be sent to the peer.
    public var outputCount: Int { Int(BIO_ctrl_pending(outbound)) }

    /// Moves up to `buffer.count` bytes of pending ciphertext into `buffer`; returns how many.
    public func takeOutput(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard buffer.count > 0 else { return 0 }
        return max(0, Int(BIO_read(outbound, buffer.baseAddress, Int32(buffer.count))))
    }

    /// Queues close_notify (once, and only after a handshake: before it there is no session to close).
    public func shutdown() {
        guard !shutdownSent, SSL_is_init_finished(ssl) == 1 else { return }
        shutdownSent = true
        _ = SSL_shutdown(ssl)
        _ = TLSError.drainQueue()
    }

    /// What was negotiated; meaningful once the handshake is complete.
    public var facts: TLSSessionFacts {
        var facts = TLSSessionFacts()
        facts.version = String(cString: SSL_get_version(ssl))
        if let cipher = SSL_get_current_cipher(ssl) { facts.cipher = String(cString: SSL_CIPHER_get_name(cipher)) }
        if let name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) { facts.serverName = String(cString: name) }
        var selected: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &selected, &length)
        if let selected, length > 0 {
            facts.applicationProtocol = String(decoding: UnsafeBufferPointer(start: selected, count: Int(length)), as: UTF8.self)
        }
        facts.resumed = SSL_session_reused(ssl) == 1
        if let peer = SSL_get0_peer_certificate(ssl), SSL_get_verify_result(ssl) == X509_V_OK {
            facts.clientCertificateSubject = Self.distinguishedName(X509_get_subject_name(peer))
        }
        return facts
    }

    /// The DNS names of the certificate the peer presented (client side: which certificate SNI selected).
    public var peerCertificateNames: [String] {
        guard let peer = SSL_get0_peer_certificate(ssl) else { return [] }
        return TLSServerContext.certificateDNSNames(peer)
    }

    /// The session, for resuming it on a new connection (client side).
    public var session: TLSSession? {
        guard let handle = SSL_get1_session(ssl) else { return nil }
        return TLSSession(handle: handle)
    }

    /// The subject of a DER certificate in the same RFC 2253 text as `facts.clientCertificateSubject` (for
    /// certificates another TLS library verified: HTTP/3's, on GnuTLS), so every protocol names a client alike.
    public static func subject(ofDERCertificate der: [UInt8]) -> String? {
        der.withUnsafeBufferPointer { bytes -> String? in
            var cursor: UnsafePointer<UInt8>? = bytes.baseAddress
            guard let certificate = d2i_X509(nil, &cursor, bytes.count) else { return nil }
            defer { X509_free(certificate) }
            return distinguishedName(X509_get_subject_name(certificate))
        }
    }

    /// RFC 2253 text of a name ("CN=alice,O=Example").
    private static func distinguishedName(_ name: OpaquePointer?) -> String? {
        guard let name, let bio = BIO_new(BIO_s_mem()) else { return nil }
        defer { BIO_free(bio) }
        guard X509_NAME_print_ex(bio, name, 0, cjester_name_flags_rfc2253()) >= 0 else { return nil }
        var text = [UInt8](repeating: 0, count: Int(BIO_ctrl_pending(bio)))
        let count = BIO_read(bio, &text, Int32(text.count))
        return String(decoding: text.prefix(Int(max(0, count))), as: UTF8.self)
    }

    private func progress(after result: Int32, operation: String) -> Progress {
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .needsInput
        case SSL_ERROR_ZERO_RETURN:
            return .closed
        default:
            return .failed(.fromQueue(operation))
        }
    }
}

/// A resumable session (client side).
public final class TLSSession: @unchecked Sendable {
    fileprivate let handle: OpaquePointer

    fileprivate init(handle: OpaquePointer) {
        self.handle = handle
    }

    deinit {
        SSL_SESSION_free(handle)
    }
}

/// What a completed handshake negotiated: for logs, the access log, routing and the headers sent upstream.
public struct TLSSessionFacts: Sendable, Equatable {
    /// "TLSv1.3", "TLSv1.2".
    public var version = ""
    public var cipher = ""
    /// The SNI the client sent, if any.
    public var serverName: String?
    /// The ALPN protocol chosen, if any ("http/1.1", "h2").
    public var applicationProtocol: String?
    /// Whether the session was resumed from a ticket.
    public var resumed = false
    /// The subject of a client certificate that was verified (RFC 2253 form); nil without one.
    public var clientCertificateSubject: String?

    public init() {}
}
