// SPDX-License-Identifier: Apache-2.0
/// What a TLS listener serves, in Swift types only: the worker builds it from the configuration, the
/// configuration check builds it to validate certificates and keys before a reload is accepted.
public struct TLSServerConfiguration: Sendable {
    /// A certificate chain and its key, for the names it is selected by.
    public struct Certificate: Sendable {
        /// PEM: the leaf certificate first, then its intermediates.
        public var chainPEM: [UInt8]
        /// PEM: the private key (RSA, ECDSA or Ed25519; PKCS#8 or traditional).
        public var keyPEM: [UInt8]
        /// The server names (SNI) that select this certificate: exact or `*.example.com`. Empty: the names the
        /// certificate itself carries (subjectAltName DNS entries, else its common name).
        public var names: [String]
        /// Where the chain came from, for error messages.
        public var origin: String
        /// Where the key came from: a problem with the key names the key file, not the certificate.
        public var keyOrigin: String
        /// A DER OCSP response for the leaf, stapled to handshakes of clients that ask (RFC 6066 §8).
        public var ocspResponse: [UInt8]?

        public init(
            chainPEM: [UInt8], keyPEM: [UInt8], names: [String] = [], origin: String = "certificate",
            keyOrigin: String = "private key", ocspResponse: [UInt8]? = nil
        ) {
            self.chainPEM = chainPEM
            self.keyPEM = keyPEM
            self.names = names
            self.origin = origin
            self.keyOrigin = keyOrigin
            self.ocspResponse = ocspResponse
        }
    }

    public enum Version: String, Sendable {
        case tls12 = "1.2"
        case tls13 = "1.3"
    }

    public enum ClientVerification: String, Sendable {
        /// No client certificate is asked for.
        case off
        /// One is asked for; a client without one is let in, one with an invalid one is refused.
        case optional
        /// A valid client certificate is required.
        case required
    }

    /// The first is the default: served to clients that send no server name or one no certificate matches.
    public var certificates: [Certificate]
    public var minimumVersion: Version = .tls12
    /// The TLS 1.2 cipher list (OpenSSL syntax). Default: Mozilla's "intermediate" profile, forward-secret AEAD
    /// ciphers only.
    public var ciphers: String = TLSServerConfiguration.intermediateCiphers
    /// The TLS 1.3 cipher suites (OpenSSL syntax).
    public var cipherSuites: String = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
    /// ALPN protocol names in the server's order of preference.
    public var applicationProtocols: [String] = ["http/1.1"]
    public var clientVerification: ClientVerification = .off
    /// PEM certificates of the CAs that client certificates must chain to.
    public var clientCAPEM: [UInt8]? = nil
    /// Whether resumption by session tickets is offered (with keys from `updateTicketKeys`).
    public var sessionTickets = true
    /// How long a ticket is valid, in seconds (told to clients as the ticket lifetime hint).
    public var sessionLifetime = 7200

    /// Mozilla's "intermediate" TLS 1.2 ciphers (version 5.7): ECDHE or DHE key exchange, AEAD only.
    public static let intermediateCiphers =
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
        + "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
        + "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"

    public init(certificates: [Certificate]) {
        self.certificates = certificates
    }
}
