// SPDX-License-Identifier: Apache-2.0
private import CJesterOpenSSL

/// The TLS side of one listener: its certificates (selected by SNI), protocol versions, ciphers, ALPN, client
/// certificate policy and session-ticket keys, built once per configuration and shared by all its connections.
///
/// One OpenSSL context is made per certificate, all with the same settings; a connection starts on the first
/// (the default) and the server-name callback moves it to the one its SNI selects, which is how OpenSSL serves
/// several certificates on one socket. Used on one event loop (a worker's), like the connections made from it.
public final class TLSServerContext: @unchecked Sendable {
    /// One per certificate, in configuration order; [0] is the default.
    private let contexts: [OpaquePointer]
    /// Lowercased exact names and wildcard suffixes ("example.com" for "*.example.com") → context index.
    private let exactNames: [String: Int]
    private let wildcardSuffixes: [String: Int]
    /// ALPN names in preference order, as bytes.
    private let applicationProtocols: [[UInt8]]
    /// The ticket keys: [0] encrypts new tickets, all decrypt. Empty: no tickets are issued.
    private(set) var ticketKeys: [TLSTicketKey] = []
    /// The names each certificate is selected by (for logs and `config validate`).
    public let certificateNames: [[String]]
    /// Each certificate's stapled OCSP response, if configured.
    private let ocspResponses: [[UInt8]?]

    /// Builds the contexts; fails with the first certificate, key, CA or cipher setting OpenSSL rejects.
    /// The session ID context (32 bytes): what a session must have been made under to resume here. Every listener
    /// shares the ticket keys, so without it a ticket from a listener that asks no client certificate would
    /// resume, certificate-less, on one that requires one (a resumed handshake asks for none). It names the client
    /// certificate policy (mode and CA), so only listeners that would have let the same clients in share sessions.
    static func sessionContext(_ configuration: TLSServerConfiguration) -> [UInt8] {
        var policy = Array("jester client_certificates=\(configuration.clientVerification.rawValue)".utf8)
        if configuration.clientVerification != .off { policy += [0] + (configuration.clientCAPEM ?? []) }
        return MessageDigest.sha256.hash(policy)
    }

    public init(_ configuration: TLSServerConfiguration) throws(TLSError) {
        guard !configuration.certificates.isEmpty else { throw TLSError("a TLS listener needs a certificate") }
        _ = TLSError.drainQueue()
        var contexts: [OpaquePointer] = []
        var names: [[String]] = []
        do throws(TLSError) {
            for certificate in configuration.certificates {
                let context = try Self.makeContext(configuration)
                contexts.append(context)
                names.append(try Self.install(certificate, in: context))
                if let response = certificate.ocspResponse {
                    try Self.checkOCSPResponse(response, origin: certificate.origin)
                    _ = cjester_SSL_CTX_set_tlsext_status_cb(context, ocspCallback)
                }
            }
        } catch {
            contexts.forEach { SSL_CTX_free($0) }
            throw error
        }
        var exact: [String: Int] = [:]
        var wildcards: [String: Int] = [:]
        for (index, list) in names.enumerated() {
            for name in list.map({ $0.lowercased() }) {
                // The first certificate to claim a name keeps it, as the configuration's order says.
                if name.hasPrefix("*.") {
                    if wildcards[String(name.dropFirst(2))] == nil { wildcards[String(name.dropFirst(2))] = index }
                } else if exact[name] == nil {
                    exact[name] = index
                }
            }
        }
        self.contexts = contexts
        exactNames = exact
        wildcardSuffixes = wildcards
        certificateNames = names
        ocspResponses = configuration.certificates.map(\.ocspResponse)
        applicationProtocols = configuration.applicationProtocols.map { Array($0.utf8) }
        let me = Unmanaged.passUnretained(self).toOpaque()
        for context in contexts { _ = cjester_SSL_CTX_set_app_data(context, me) }
    }

    deinit {
        contexts.forEach { SSL_CTX_free($0) }
    }

    /// Replaces the session-ticket keys: the first encrypts new tickets, the others still decrypt (and their
    /// tickets are renewed), so rotation never costs a resumption.
    public func updateTicketKeys(_ keys: [TLSTicketKey]) {
        ticketKeys = keys
    }

    /// A new server-side connection, waiting for the client's hello.
    public func makeConnection() -> TLSConnection {
        TLSConnection(context: self, handle: contexts[0])
    }

    /// The context index serving `serverName`: an exact name, else a wildcard one label deep (RFC 6125 §6.4.3),
    /// else the default.
    func contextIndex(forServerName serverName: String) -> Int {
        let name = serverName.lowercased()
        if let index = exactNames[name] { return index }
        if let dot = name.firstIndex(of: "."), let index = wildcardSuffixes[String(name[name.index(after: dot)...])] {
            return index
        }
        return 0
    }

    // MARK: Building

    private static func makeContext(_ configuration: TLSServerConfiguration) throws(TLSError) -> OpaquePointer {
        guard let context = SSL_CTX_new(TLS_server_method()) else { throw .fromQueue("creating a TLS context") }
        do throws(TLSError) {
            try configure(context, configuration)
        } catch {
            SSL_CTX_free(context)
            throw error
        }
        return context
    }

    private static func configure(_ context: OpaquePointer, _ configuration: TLSServerConfiguration) throws(TLSError) {
        // No compression (CRIME), no renegotiation (a CPU-exhaustion and confusion vector), the server's cipher
        // order; TLS 1.2 at least (RFC 8996 deprecates 1.0 and 1.1).
        SSL_CTX_set_options(context, cjester_server_options())
        let minimum = configuration.minimumVersion == .tls13 ? TLS1_3_VERSION : TLS1_2_VERSION
        guard cjester_SSL_CTX_set_min_proto_version(context, minimum) == 1 else {
            throw .fromQueue("setting the minimum TLS version")
        }
        guard SSL_CTX_set_cipher_list(context, configuration.ciphers) == 1 else {
            throw .fromQueue("ciphers '\(configuration.ciphers)' select no usable cipher")
        }
        guard SSL_CTX_set_ciphersuites(context, configuration.cipherSuites) == 1 else {
            throw .fromQueue("cipher_suites '\(configuration.cipherSuites)' are not valid TLS 1.3 suites")
        }
        // Mozilla intermediate: X25519, P-256, P-384.
        _ = cjester_SSL_CTX_set1_groups_list(context, "X25519:prime256v1:secp384r1")
        // Idle connections give their 34 KiB of record buffers back (many idle keep-alive clients are normal).
        _ = cjester_SSL_CTX_set_mode(context, Int(SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN))
        // Resumption is by stateless tickets only: a per-worker session cache would miss whenever a client
        // reaches another worker, and costs memory.
        _ = cjester_SSL_CTX_set_session_cache_mode(context, Int(SSL_SESS_CACHE_OFF))
        let sessionContext = Self.sessionContext(configuration)
        _ = SSL_CTX_set_session_id_context(context, sessionContext, UInt32(sessionContext.count))
        _ = SSL_CTX_set_timeout(context, Int(configuration.sessionLifetime))
        if configuration.sessionTickets {
            _ = SSL_CTX_set_tlsext_ticket_key_evp_cb(context, ticketKeyCallback)
        } else {
            SSL_CTX_set_options(context, cjester_option_no_ticket())
        }
        _ = cjester_SSL_CTX_set_tlsext_servername_callback(context, serverNameCallback)
        SSL_CTX_set_alpn_select_cb(context, alpnCallback, nil)
        if configuration.clientVerification != .off {
            guard let pem = configuration.clientCAPEM else { throw TLSError("client certificates need client_ca") }
            let authorities = try readCertificates(pem, what: "client_ca")
            guard !authorities.isEmpty else { throw TLSError("client_ca holds no certificate") }
            let store = SSL_CTX_get_cert_store(context)
            for authority in authorities {
                X509_STORE_add_cert(store, authority)
                // Named in the CertificateRequest, so clients with several certificates offer the right one.
                SSL_CTX_add_client_CA(context, authority)
                X509_free(authority)
            }
            let mode = SSL_VERIFY_PEER | (configuration.clientVerification == .required ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0)
            SSL_CTX_set_verify(context, mode, nil)
        }
    }

    /// Installs a certificate chain and key; returns the names it is selected by.
    static func install(
        _ certificate: TLSServerConfiguration.Certificate, in context: OpaquePointer, needsNames: Bool = true
    ) throws(TLSError) -> [String] {
        let chain: [OpaquePointer]
        do {
            chain = try readCertificates(certificate.chainPEM, what: certificate.origin)
        } catch {
            throw error.about(.certificate)
        }
        guard let leaf = chain.first else {
            throw TLSError("\(certificate.origin) holds no PEM certificate", subject: .certificate)
        }
        defer { chain.forEach { X509_free($0) } }
        guard SSL_CTX_use_certificate(context, leaf) == 1 else {
            throw TLSError.fromQueue("\(certificate.origin): the certificate cannot be used").about(.certificate)
        }
        for intermediate in chain.dropFirst() {
            // add0 takes the reference the defer above would otherwise drop.
            X509_up_ref(intermediate)
            guard cjester_SSL_CTX_add0_chain_cert(context, intermediate) == 1 else {
                throw TLSError.fromQueue("\(certificate.origin): an intermediate certificate cannot be used")
                    .about(.certificate)
            }
        }
        // Problems with the key name the key file: an encrypted key is fixed there, not in the certificate.
        let key = try readPrivateKey(certificate.keyPEM, what: certificate.keyOrigin)
        defer { EVP_PKEY_free(key) }
        guard SSL_CTX_use_PrivateKey(context, key) == 1, SSL_CTX_check_private_key(context) == 1 else {
            _ = TLSError.drainQueue()
            throw TLSError("\(certificate.keyOrigin): the private key does not match the certificate "
                + "\(certificate.origin)", subject: .privateKey)
        }
        if !certificate.names.isEmpty || !needsNames { return certificate.names }
        let names = certificateDNSNames(leaf)
        guard !names.isEmpty else {
            throw TLSError("\(certificate.origin): the certificate names no host (no DNS subjectAltName or common "
                + "name); give 'names'", subject: .certificate)
        }
        return names
    }

    /// Every PEM certificate in `pem`, in order (owned references: the caller frees them).
    static func readCertificates(_ pem: [UInt8], what: String) throws(TLSError) -> [OpaquePointer] {
        let result: Result<[OpaquePointer], TLSError> = pem.withUnsafeBytes { bytes in
            guard let bio = BIO_new_mem_buf(bytes.baseAddress, Int32(bytes.count)) else {
                return .failure(.fromQueue("reading \(what)"))
            }
            defer { BIO_free(bio) }
            var certificates: [OpaquePointer] = []
            while let certificate = PEM_read_bio_X509(bio, nil, noPassword, nil) {
                certificates.append(certificate)
            }
            // The loop ends at the end of the data (PEM "no start line"), or at a damaged block.
            let reasons = TLSError.drainQueue()
            if reasons.contains(where: { !$0.contains("no start line") }) {
                certificates.forEach { X509_free($0) }
                return .failure(TLSError("\(what): a certificate cannot be parsed", reasons: reasons))
            }
            return .success(certificates)
        }
        return try result.get()
    }

    private static func readPrivateKey(_ pem: [UInt8], what: String) throws(TLSError) -> OpaquePointer {
        let key: OpaquePointer? = pem.withUnsafeBytes { bytes in
            guard let bio = BIO_new_mem_buf(bytes.baseAddress, Int32(bytes.count)) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_PrivateKey(bio, nil, noPassword, nil)
        }
        guard let key else {
            let reasons = TLSError.drainQueue()
            let encrypted = String(decoding: pem.prefix(4096), as: UTF8.self).contains("ENCRYPTED")
            throw TLSError(encrypted
                ? "\(what): the private key is encrypted (Jester starts unattended; store it decrypted, readable by "
                    + "root only: openssl pkey -in KEY -out KEY.decrypted)"
                : "\(what): no PEM private key can be read",
                // OpenSSL's "bad decrypt" entries only repeat, twice over, that there was no passphrase.
                reasons: encrypted ? [] : reasons, subject: .privateKey)
        }
        return key
    }

    /// The DNS names of a certificate's subjectAltName, or its common name when it has none (RFC 6125 §6.4.4).
    static func certificateDNSNames(_ certificate: OpaquePointer) -> [String] {
        var names: [String] = []
        if let raw = X509_get_ext_d2i(certificate, NID_subject_alt_name, nil, nil) {
            let list = OpaquePointer(raw)
            defer { cjester_general_names_free(list) }
            for index in 0..<cjester_general_names_count(list) {
                guard let entry = cjester_general_names_value(list, index), entry.pointee.type == GEN_DNS,
                    let text = entry.pointee.d.dNSName
                else { continue }
                names.append(asn1Text(text))
            }
        }
        if names.isEmpty, let subject = X509_get_subject_name(certificate) {
            let index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1)
            if index >= 0, let entry = X509_NAME_get_entry(subject, index), let data = X509_NAME_ENTRY_get_data(entry) {
                names.append(asn1Text(data))
            }
        }
        return names
    }

    fileprivate static func asn1Text(_ string: UnsafePointer<ASN1_STRING>) -> String {
        guard let bytes = ASN1_STRING_get0_data(string) else { return "" }
        return String(decoding: UnsafeBufferPointer(start: bytes, count: Int(ASN1_STRING_length(string))), as: UTF8.self)
    }

    // MARK: Callbacks (on the worker's thread, during handshakes)

    fileprivate static func from(_ ssl: OpaquePointer?) -> TLSServerContext? {
        guard let ssl, let context = SSL_get_SSL_CTX(ssl), let raw = cjester_SSL_CTX_get_app_data(context) else {
            return nil
        }
        return Unmanaged<TLSServerContext>.fromOpaque(raw).takeUnretainedValue()
    }

    fileprivate func switchContext(_ ssl: OpaquePointer) {
        guard let raw = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) else { return }
        let index = contextIndex(forServerName: String(cString: raw))
        if index != 0 { SSL_set_SSL_CTX(ssl, contexts[index]) }
    }

    /// The OCSP response of the certificate `ssl` is using now (after SNI), copied for OpenSSL to own.
    fileprivate func staple(_ ssl: OpaquePointer) -> Bool {
        guard let current = SSL_get_SSL_CTX(ssl), let index = contexts.firstIndex(of: current),
            let response = ocspResponses[index], let copy = CRYPTO_malloc(response.count, #fileID, #line)
        else { return false }
        copy.copyMemory(from: response, byteCount: response.count)
        // OpenSSL takes ownership of the copy and frees it with the connection.
        return cjester_SSL_set_tlsext_status_ocsp_resp(ssl, copy.assumingMemoryBound(to: UInt8.self), response.count) == 1
    }

    /// Rejects what is not a DER OCSP response (a PEM file or the request given by mistake).
    private static func checkOCSPResponse(_ bytes: [UInt8], origin: String) throws(TLSError) {
        let parsed: OpaquePointer? = bytes.withUnsafeBufferPointer { buffer in
            var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
            return d2i_OCSP_RESPONSE(nil, &cursor, buffer.count)
        }
        guard let parsed else {
            _ = TLSError.drainQueue()
            throw TLSError("\(origin): ocsp_response is not a DER OCSP response (openssl ocsp -respout writes one)")
        }
        OCSP_RESPONSE_free(parsed)
    }

    /// The first of the server's protocols the client offers (server preference), in the client's list.
    fileprivate func selectProtocol(_ offered: UnsafeBufferPointer<UInt8>) -> Range<Int>? {
        for wanted in applicationProtocols {
            var offset = 0
            while offset < offered.count {
                let length = Int(offered[offset])
                let range = (offset + 1)..<min(offset + 1 + length, offered.count)
                if range.count == wanted.count, offered[range].elementsEqual(wanted) { return range }
                offset = range.upperBound
            }
        }
        return nil
    }
}

private let ocspCallback: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Int32 = { ssl, _ in
    guard let ssl, let context = TLSServerContext.from(ssl) else { return SSL_TLSEXT_ERR_NOACK }
    return context.staple(ssl) ? SSL_TLSEXT_ERR_OK : SSL_TLSEXT_ERR_NOACK
}

/// Keys are stored unencrypted: Jester starts unattended, so there is nobody to type a passphrase.
private let noPassword: @convention(c) (UnsafeMutablePointer<CChar>?, Int32, Int32, UnsafeMutableRawPointer?) -> Int32 = {
    _, _, _, _ in 0
}

private let serverNameCallback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<Int32>?, UnsafeMutableRawPointer?) -> Int32 = {
    ssl, _, _ in
    // An unknown name gets the default certificate (like nginx's default server) rather than an alert.
    if let ssl, let context = TLSServerContext.from(ssl) { context.switchContext(ssl) }
    return SSL_TLSEXT_ERR_OK
}

private let alpnCallback: @convention(c) (
    OpaquePointer?, UnsafeMutablePointer<UnsafePointer<UInt8>?>?, UnsafeMutablePointer<UInt8>?, UnsafePointer<UInt8>?,
    UInt32, UnsafeMutableRawPointer?
) -> Int32 = { ssl, out, outLength, offered, offeredLength, _ in
    guard let context = TLSServerContext.from(ssl), let offered, let out, let outLength else {
        return SSL_TLSEXT_ERR_NOACK
    }
    let list = UnsafeBufferPointer(start: offered, count: Int(offeredLength))
    // No protocol in common: carry on without ALPN (RFC 7301 allows it; a client that needs one will close).
    guard let range = context.selectProtocol(list) else { return SSL_TLSEXT_ERR_NOACK }
    out.pointee = offered + range.lowerBound
    outLength.pointee = UInt8(range.count)
    return SSL_TLSEXT_ERR_OK
}

// An OSSL_PARAM keeps the pointer to its name, so the names must outlive the call that builds the parameter (a
// temporary C string bridged from a Swift String would dangle); static strings live in the binary.
private var macKeyParameter: UnsafePointer<CChar> { cString("key") }
private var macDigestParameter: UnsafePointer<CChar> { cString("digest") }
private func cString(_ text: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(text.utf8Start).assumingMemoryBound(to: CChar.self)
}

/// Encrypts new tickets with the first key and decrypts with whichever key named the ticket (RFC 5077 §4's
/// recommended construction: AES-256-CBC with HMAC-SHA256, as OpenSSL's own default keys use).
private let ticketKeyCallback: @convention(c) (
    OpaquePointer?, UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<UInt8>?, OpaquePointer?, OpaquePointer?, Int32
) -> Int32 = { ssl, keyName, iv, cipherContext, macContext, encrypting in
    guard let context = TLSServerContext.from(ssl), let keyName, let iv, let cipherContext, let macContext else {
        return -1
    }
    let keys = context.ticketKeys
    let index: Int
    if encrypting == 1 {
        guard !keys.isEmpty else { return 0 }  // no keys yet: no ticket
        index = 0
        keyName.update(from: keys[0].name, count: 16)
        guard RAND_bytes(iv, 16) == 1 else { return -1 }
    } else {
        let name = UnsafeBufferPointer(start: keyName, count: 16)
        guard let found = keys.firstIndex(where: { $0.name.elementsEqual(name) }) else { return 0 }  // full handshake
        index = found
    }
    let key = keys[index]
    let initialised = key.aesKey.withUnsafeBufferPointer { aes in
        encrypting == 1
            ? EVP_EncryptInit_ex(cipherContext, EVP_aes_256_cbc(), nil, aes.baseAddress, iv)
            : EVP_DecryptInit_ex(cipherContext, EVP_aes_256_cbc(), nil, aes.baseAddress, iv)
    }
    guard initialised == 1 else { return -1 }
    var secret = key.hmacSecret
    let configured = secret.withUnsafeMutableBytes { secretBytes in
        "sha256".withCString { digest in
            var params = [
                OSSL_PARAM_construct_octet_string(macKeyParameter, secretBytes.baseAddress, secretBytes.count),
                OSSL_PARAM_construct_utf8_string(macDigestParameter, UnsafeMutablePointer(mutating: digest), 0),
                OSSL_PARAM_construct_end(),
            ]
            return EVP_MAC_CTX_set_params(macContext, &params)
        }
    }
    guard configured == 1 else { return -1 }
    // A ticket under an older key still resumes, and is replaced by one under the current key.
    return index == 0 ? 1 : 2
}
