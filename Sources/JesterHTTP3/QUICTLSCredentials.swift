// SPDX-License-Identifier: Apache-2.0
internal import CJesterNGTCP2

/// The certificates a QUIC listener serves (each chain with its private key), or the certificates a client
/// trusts, loaded into GnuTLS once and shared by every connection. QUIC's TLS 1.3 runs on GnuTLS because ngtcp2
/// 0.12 has no QUIC API for OpenSSL 3.0 (Jester's TCP TLS); the master reads the PEM files and hands workers the
/// bytes, so a worker never opens a key file.
public final class QUICTLSCredentials: @unchecked Sendable {
    // @unchecked: GnuTLS credentials are read-only once loaded and documented safe to share between sessions.

    /// One certificate of a server and the DNS names it is for (its subjectAltName entries, lowercase).
    struct Site {
        let credentials: OpaquePointer
        let names: [String]
    }

    /// The credentials a session starts with: the first certificate (server), or the trust store (client).
    let credentials: OpaquePointer
    /// The server's certificates in the order given; a handshake switches to the one its SNI names.
    private(set) var sites: [Site] = []
    /// Whether a client session checks the server's certificate (against `trustedCertificatesPEM`).
    let verifiesPeer: Bool
    /// Whether a server asks clients for a certificate (a TLS listener's `client_certificates`), checked against
    /// the client CA given with it: `optional` lets a client without one in, never one with a bad one.
    public enum ClientCertificates: Sendable, Equatable {
        case off, optional, required
    }
    let clientCertificates: ClientCertificates
    /// Every GnuTLS object to free.
    private var owned: [OpaquePointer] = []

    /// Server credentials: a PEM certificate chain (leaf first) and its PEM private key.
    public convenience init(certificateChainPEM: [UInt8], privateKeyPEM: [UInt8]) throws(QUICError) {
        try self.init(certificates: [(certificateChainPEM, privateKeyPEM)])
    }

    /// Server credentials with several certificates, as a TLS listener has: each handshake gets the one whose
    /// names match the client's SNI exactly, else one whose wildcard (`*.example.com`) covers it, else the first.
    /// With `clientCertificates` other than `off`, clients are asked for a certificate that chains to one in
    /// `clientCAPEM` (every certificate's credentials trust it, whichever SNI picks).
    public init(
        certificates: [(chainPEM: [UInt8], privateKeyPEM: [UInt8])], clientCertificates: ClientCertificates = .off,
        clientCAPEM: [UInt8]? = nil
    ) throws(QUICError) {
        credentials = try Self.allocate()
        owned = [credentials]
        verifiesPeer = false
        self.clientCertificates = clientCertificates
        // (A throw after every property is set still runs deinit, which frees what was allocated.)
        guard !certificates.isEmpty else { throw QUICError(.tlsConfiguration, "no QUIC certificate given") }
        for (index, certificate) in certificates.enumerated() {
            let target = index == 0 ? credentials : try Self.allocate()
            if index > 0 { owned.append(target) }
            let status = Self.add(certificate.chainPEM, certificate.privateKeyPEM, to: target)
            guard status >= 0 else {
                throw QUICError(
                    .tlsConfiguration,
                    "cannot load QUIC certificate \(index + 1) and its key",
                    cause: String(cString: gnutls_strerror(status))
                )
            }
            sites.append(Site(credentials: target, names: Self.dnsNames(of: certificate.chainPEM)))
            if clientCertificates != .off {
                guard let clientCAPEM, try Self.trust(clientCAPEM, in: target) > 0 else {
                    throw QUICError(.tlsConfiguration, "client certificates need a client CA")
                }
            }
        }
    }

    /// Client credentials (tests, and later HTTP/3 upstreams): with `trustedCertificatesPEM` the server's
    /// certificate must chain to one of them; without, it is not checked (loopback tests only).
    public init(trustedCertificatesPEM: [UInt8]?) throws(QUICError) {
        credentials = try Self.allocate()
        owned = [credentials]
        verifiesPeer = trustedCertificatesPEM != nil
        clientCertificates = .off
        guard let trustedCertificatesPEM else { return }
        guard try Self.trust(trustedCertificatesPEM, in: credentials) > 0 else {
            throw QUICError(.tlsConfiguration, "no trusted certificate could be loaded")
        }
    }

    /// Client credentials with a certificate of their own (mutual TLS; tests, and later HTTP/3 upstreams).
    public convenience init(
        trustedCertificatesPEM: [UInt8]?, certificateChainPEM: [UInt8], privateKeyPEM: [UInt8]
    ) throws(QUICError) {
        try self.init(trustedCertificatesPEM: trustedCertificatesPEM)
        let status = Self.add(certificateChainPEM, privateKeyPEM, to: credentials)
        guard status >= 0 else {
            throw QUICError(.tlsConfiguration, "cannot load the client certificate and its key",
                cause: String(cString: gnutls_strerror(status)))
        }
    }

    /// Adds the PEM certificates of `pem` to what `credentials` trust; how many were added.
    private static func trust(_ pem: [UInt8], in credentials: OpaquePointer) throws(QUICError) -> Int32 {
        let status = pem.withUnsafeBufferPointer { pem in
            var datum = gnutls_datum_t(data: UnsafeMutablePointer(mutating: pem.baseAddress), size: UInt32(pem.count))
            return gnutls_certificate_set_x509_trust_mem(credentials, &datum, GNUTLS_X509_FMT_PEM)
        }
        guard status >= 0 else {
            throw QUICError(.tlsConfiguration, "cannot load trusted certificates", cause: String(cString: gnutls_strerror(status)))
        }
        return status
    }

    deinit {
        for credentials in owned { gnutls_certificate_free_credentials(credentials) }
    }

    /// The credentials for a handshake whose client asked for `serverName` (SNI): an exact name first, then a
    /// wildcard covering one label (RFC 6125 §6.4.3), then the first certificate.
    func credentials(forServerName serverName: String?) -> OpaquePointer {
        guard sites.count > 1, let name = serverName?.lowercased() else { return credentials }
        if let exact = sites.first(where: { $0.names.contains(name) }) { return exact.credentials }
        if let dot = name.firstIndex(of: ".") {
            let wildcard = "*" + name[dot...]
            if let covered = sites.first(where: { $0.names.contains(wildcard) }) { return covered.credentials }
        }
        return credentials
    }

    // MARK: Internals

    private static func allocate() throws(QUICError) -> OpaquePointer {
        var created: gnutls_certificate_credentials_t?
        guard gnutls_certificate_allocate_credentials(&created) == 0, let created else {
            throw QUICError(.library, "gnutls: cannot allocate credentials")
        }
        return created
    }

    /// Adds one chain and key; the index of the pair (0 for the first) or a negative GnuTLS error.
    private static func add(_ chainPEM: [UInt8], _ keyPEM: [UInt8], to credentials: OpaquePointer) -> Int32 {
        chainPEM.withUnsafeBufferPointer { chain in
            keyPEM.withUnsafeBufferPointer { key in
                var chainDatum = gnutls_datum_t(
                    data: UnsafeMutablePointer(mutating: chain.baseAddress),
                    size: UInt32(chain.count)
                )
                var keyDatum = gnutls_datum_t(
                    data: UnsafeMutablePointer(mutating: key.baseAddress),
                    size: UInt32(key.count)
                )
                return gnutls_certificate_set_x509_key_mem2(
                    credentials,
                    &chainDatum,
                    &keyDatum,
                    GNUTLS_X509_FMT_PEM,
                    nil,
                    0
                )
            }
        }
    }

    /// The DNS names in the leaf certificate's subjectAltName, lowercase (empty when it cannot be read: that
    /// certificate is then only ever the default).
    private static func dnsNames(of chainPEM: [UInt8]) -> [String] {
        var certificate: gnutls_x509_crt_t?
        guard gnutls_x509_crt_init(&certificate) == 0, let certificate else { return [] }
        defer { gnutls_x509_crt_deinit(certificate) }
        let imported = chainPEM.withUnsafeBufferPointer { pem in
            var datum = gnutls_datum_t(data: UnsafeMutablePointer(mutating: pem.baseAddress), size: UInt32(pem.count))
            return gnutls_x509_crt_import(certificate, &datum, GNUTLS_X509_FMT_PEM)
        }
        guard imported == 0 else { return [] }
        var names: [String] = []
        var buffer = [UInt8](repeating: 0, count: 256)
        for sequence in UInt32(0)..<64 {
            var size = buffer.count
            let type = gnutls_x509_crt_get_subject_alt_name(certificate, sequence, &buffer, &size, nil)
            if type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE { break }
            if type == Int32(GNUTLS_SAN_DNSNAME.rawValue) {
                names.append(String(decoding: buffer.prefix(size), as: UTF8.self).lowercased())
            }
        }
        return names
    }
}
