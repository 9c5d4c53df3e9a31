// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterTLS

/// The bridge from a listener's `[listeners.tls]` settings to the TLS wrapper.
public enum TLSListener {
    /// Builds the TLS context of a listener; the ticket lifetime spans the two rotations its key outlives.
    static func makeContext(
        _ settings: TLSListenerSettings, http2: Bool, http2Only: Bool = false, ticketKeyRotation: Duration?
    ) throws(TLSError) -> TLSServerContext {
        var configuration = serverConfiguration(settings)
        configuration.applicationProtocols =
            settings.alpn ?? (http2Only ? ["h2"] : http2 ? ["h2", "http/1.1"] : ["http/1.1"])
        configuration.sessionLifetime = 2 * Int((ticketKeyRotation ?? .seconds(3600)).components.seconds)
        return try TLSServerContext(configuration)
    }

    /// Whether OpenSSL accepts the listener's certificates, keys, CA and ciphers: nil, or the reason it does not.
    /// The configuration loader calls this (given by the `jester` executable), so a bad certificate fails
    /// `config validate` and a reload, with the old configuration still serving.
    public static func problem(_ settings: TLSListenerSettings) -> TLSProblem? {
        do {
            _ = try TLSServerContext(serverConfiguration(settings))
            return nil
        } catch {
            return TLSProblem(error)
        }
    }

    static func serverConfiguration(_ settings: TLSListenerSettings) -> TLSServerConfiguration {
        var configuration = TLSServerConfiguration(certificates: settings.certificates.map { certificate in
            .init(chainPEM: Array(certificate.certificatePEM), keyPEM: Array(certificate.keyPEM),
                names: certificate.names, origin: certificate.certificateFile, keyOrigin: certificate.keyFile,
                ocspResponse: certificate.ocspResponse.map(Array.init))
        })
        configuration.minimumVersion = settings.minVersion == "1.3" ? .tls13 : .tls12
        if let ciphers = settings.ciphers { configuration.ciphers = ciphers }
        if let suites = settings.cipherSuites { configuration.cipherSuites = suites }
        configuration.applicationProtocols = settings.alpn ?? ["h2", "http/1.1"]
        configuration.sessionTickets = settings.sessionTickets
        configuration.clientVerification = .init(rawValue: settings.clientCertificates) ?? .off
        configuration.clientCAPEM = settings.clientCAPEM.map(Array.init)
        return configuration
    }
}

/// The bridge from `[upstreams.NAME.tls]` to the TLS wrapper.
public enum UpstreamTLS {
    /// `http2`: the pool speaks HTTP/2, so ALPN asks for h2 (and only h2).
    static func makeContext(_ settings: UpstreamTLSSettings, http2: Bool = false) throws(TLSError) -> TLSClientContext {
        try TLSClientContext(
            caPEM: settings.caPEM.map(Array.init), verify: settings.verify,
            certificate: settings.certificate.map {
                .init(chainPEM: Array($0.certificatePEM), keyPEM: Array($0.keyPEM), origin: $0.certificateFile,
                    keyOrigin: $0.keyFile)
            },
            applicationProtocols: http2 ? ["h2"] : [])
    }

    /// Whether OpenSSL accepts the CA file and client certificate: nil, or the reason it does not.
    public static func problem(_ settings: UpstreamTLSSettings) -> TLSProblem? {
        do {
            _ = try makeContext(settings)
            return nil
        } catch {
            return TLSProblem(error)
        }
    }
}

extension TLSProblem {
    /// A TLS failure for the loader, with the file it is about (so an encrypted key is reported at `key`).
    init(_ error: TLSError) {
        switch error.subject {
        case .certificate: self.init(error.description, about: .certificate)
        case .privateKey: self.init(error.description, about: .privateKey)
        case nil: self.init(error.description)
        }
    }
}
