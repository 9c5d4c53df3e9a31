// SPDX-License-Identifier: Apache-2.0
private import CJesterOpenSSL

/// The TLS side of connections Jester opens (to upstream targets): which CAs it trusts, whether it verifies, the
/// client certificate it presents. Built once per pool and configuration; one event loop uses it.
public final class TLSClientContext: @unchecked Sendable {
    let handle: OpaquePointer
    private let verifies: Bool

    /// - Parameters:
    ///   - caPEM: the CAs to trust; nil: the system's bundle (/etc/ssl/certs, Debian's ca-certificates).
    ///   - verify: check the peer's chain and name; off only for tests and targets the operator vouches for.
    ///   - certificate: a client certificate for targets that ask for one (mTLS).
    public init(caPEM: [UInt8]?, verify: Bool = true, certificate: TLSServerConfiguration.Certificate? = nil,
        applicationProtocols: [String] = []) throws(TLSError)
    {
        _ = TLSError.drainQueue()
        guard let handle = SSL_CTX_new(TLS_client_method()) else { throw .fromQueue("creating a TLS context") }
        self.handle = handle
        verifies = verify
        do throws(TLSError) {
            guard cjester_SSL_CTX_set_min_proto_version(handle, TLS1_2_VERSION) == 1 else {
                throw .fromQueue("setting the minimum TLS version")
            }
            _ = cjester_SSL_CTX_set_mode(handle, Int(SSL_MODE_RELEASE_BUFFERS))
            if let caPEM {
                let store = SSL_CTX_get_cert_store(handle)
                let authorities = try TLSServerContext.readCertificates(caPEM, what: "ca")
                guard !authorities.isEmpty else { throw TLSError("ca holds no PEM certificate") }
                for authority in authorities {
                    X509_STORE_add_cert(store, authority)
                    X509_free(authority)
                }
            } else if verify, SSL_CTX_set_default_verify_paths(handle) != 1 {
                throw .fromQueue("loading the system's CA certificates")
            }
            if let certificate { _ = try TLSServerContext.install(certificate, in: handle, needsNames: false) }
            if !applicationProtocols.isEmpty {
                var wire: [UInt8] = []
                for name in applicationProtocols { wire.append(UInt8(name.utf8.count)); wire += name.utf8 }
                _ = SSL_CTX_set_alpn_protos(handle, wire, UInt32(wire.count))
            }
            SSL_CTX_set_verify(handle, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nil)
        } catch {
            SSL_CTX_free(handle)
            throw error
        }
    }

    deinit {
        SSL_CTX_free(handle)
    }

    /// A connection to `host` (a DNS name or an IP address): a DNS name is sent as SNI (RFC 6066 allows no IP
    /// literal there) and the certificate must name it; an address must appear among its IP subjectAltNames.
    /// `session` resumes an earlier session with the same target.
    public func makeConnection(host: String?, session: TLSSession? = nil) -> TLSConnection {
        TLSConnection(client: handle, host: host, verify: verifies, session: session)
    }
}
