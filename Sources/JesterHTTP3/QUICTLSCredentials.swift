// SPDX-License-Identifier: Apache-2.0
internal import CJesterNGTCP2

/// A certificate chain and its private key, or the certificates a client trusts, loaded into GnuTLS once and
/// shared by every QUIC connection of a listener. QUIC's TLS 1.3 runs on GnuTLS because ngtcp2 0.12 has no QUIC
/// API for OpenSSL 3.0 (Jester's TCP TLS); the master reads the PEM files and hands workers the bytes, so a worker
/// never opens a key file.
public final class QUICTLSCredentials: @unchecked Sendable {
    // @unchecked: GnuTLS credentials are read-only once loaded and documented safe to share between sessions.
    let credentials: OpaquePointer
    /// Whether a client session checks the server's certificate (against `trustedCertificatesPEM`).
    let verifiesPeer: Bool

    /// Server credentials: a PEM certificate chain (leaf first) and its PEM private key.
    public init(certificateChainPEM: [UInt8], privateKeyPEM: [UInt8]) throws(QUICError) {
        credentials = try Self.allocate()
        verifiesPeer = false
        var status: Int32 = 0
        certificateChainPEM.withUnsafeBufferPointer { chain in
            privateKeyPEM.withUnsafeBufferPointer { key in
                var chainDatum = gnutls_datum_t(
                    data: UnsafeMutablePointer(mutating: chain.baseAddress),
                    size: UInt32(chain.count)
                )
                var keyDatum = gnutls_datum_t(
                    data: UnsafeMutablePointer(mutating: key.baseAddress),
                    size: UInt32(key.count)
                )
                status = gnutls_certificate_set_x509_key_mem2(
                    credentials,
                    &chainDatum,
                    &keyDatum,
                    GNUTLS_X509_FMT_PEM,
                    nil,
                    0
                )
            }
        }
        // set_x509_key_mem2 returns the index of the pair (0 for the first) or a negative error.
        // (A throw after every property is set still runs deinit, which frees the credentials.)
        guard status >= 0 else {
            throw QUICError(
                .tlsConfiguration,
                "cannot load the QUIC certificate and key",
                cause: String(cString: gnutls_strerror(status))
            )
        }
    }

    /// Client credentials (tests, and later HTTP/3 upstreams): with `trustedCertificatesPEM` the server's
    /// certificate must chain to one of them; without, it is not checked (loopback tests only).
    public init(trustedCertificatesPEM: [UInt8]?) throws(QUICError) {
        credentials = try Self.allocate()
        verifiesPeer = trustedCertificatesPEM != nil
        guard let trustedCertificatesPEM else { return }
        let status = trustedCertificatesPEM.withUnsafeBufferPointer { pem in
            var datum = gnutls_datum_t(data: UnsafeMutablePointer(mutating: pem.baseAddress), size: UInt32(pem.count))
            return gnutls_certificate_set_x509_trust_mem(credentials, &datum, GNUTLS_X509_FMT_PEM)
        }
        guard status > 0 else {
            throw QUICError(
                .tlsConfiguration,
                "no trusted certificate could be loaded",
                cause: status < 0 ? String(cString: gnutls_strerror(status)) : nil
            )
        }
    }

    deinit {
        gnutls_certificate_free_credentials(credentials)
    }

    private static func allocate() throws(QUICError) -> OpaquePointer {
        var created: gnutls_certificate_credentials_t?
        guard gnutls_certificate_allocate_credentials(&created) == 0, let created else {
            throw QUICError(.library, "gnutls: cannot allocate credentials")
        }
        return created
    }
}
