// SPDX-License-Identifier: Apache-2.0
import Foundation

/// A listener's TLS: what `[listeners.tls]` says, plus the certificate and key bytes the loader read (the master
/// reads them as root; workers get the bytes and never need access to the files).
public struct TLSListenerSettings: Sendable, Codable, Equatable {
    public var certificates: [TLSCertificateSettings] = []
    /// "1.2" or "1.3".
    public var minVersion = "1.2"
    /// The TLS 1.2 cipher list; nil: Mozilla "intermediate".
    public var ciphers: String?
    /// The TLS 1.3 suites; nil: OpenSSL's three AEAD suites.
    public var cipherSuites: String?
    /// ALPN protocols offered, in preference order; nil: "h2" and "http/1.1" (or only "http/1.1" when the
    /// listener does not serve HTTP/2).
    public var alpn: [String]?
    public var sessionTickets = true
    /// "off", "optional" or "required".
    public var clientCertificates = "off"
    public var clientCA: String?
    public var clientCAPEM: Data?
    /// The request header that carries a verified client certificate's subject upstream (a client's own copy of
    /// it is always removed).
    public var clientSubjectHeader: String?

    public init() {}
}

/// `[upstreams.NAME.tls]`: connections to the pool's targets use TLS.
public struct UpstreamTLSSettings: Sendable, Codable, Equatable {
    /// Check the target's certificate chain and name (on unless the operator turns it off).
    public var verify = true
    /// PEM CAs to trust instead of the system's bundle.
    public var ca: String?
    public var caPEM: Data?
    /// The name sent as SNI and checked against the certificate; nil: the target's host.
    public var serverName: String?
    /// A client certificate for targets that require one (mTLS).
    public var certificate: TLSCertificateSettings?
    /// Resume TLS sessions with each target (saves a full handshake per new connection).
    public var sessionReuse = true

    public init() {}
}

/// One certificate chain and key of a TLS listener.
public struct TLSCertificateSettings: Sendable, Codable, Equatable {
    public var certificateFile: String
    public var keyFile: String
    /// Names that select it (SNI); empty: the names in the certificate.
    public var names: [String]
    public var certificatePEM: Data
    public var keyPEM: Data
    /// A DER OCSP response to staple (`ocsp_response`), read with the certificate.
    public var ocspResponseFile: String?
    public var ocspResponse: Data?

    public init(certificateFile: String, keyFile: String, names: [String] = [], certificatePEM: Data = Data(),
        keyPEM: Data = Data())
    {
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.names = names
        self.certificatePEM = certificatePEM
        self.keyPEM = keyPEM
    }
}

/// What the TLS library finds wrong with a listener's or upstream's TLS settings, and which file it is about.
///
/// The check lives outside this module (the `jester` executable gives it to `ConfigLoader`, which stays free of
/// TLS code); saying what the problem is about lets the loader point at the key to fix: an encrypted key at
/// `key`, an unreadable chain at `cert`, a cipher list at the `tls` table.
public struct TLSProblem: Sendable, Equatable, CustomStringConvertible {
    /// The part of the settings a problem is about.
    public enum Subject: Sendable, Equatable {
        /// A certificate entry's `cert` file.
        case certificate
        /// A certificate entry's `key` file.
        case privateKey
        /// Anything else (ciphers, CA, versions): reported at the `tls` table.
        case settings
    }

    public var subject: Subject
    /// The explanation, naming the file it is about.
    public var message: String

    public init(_ message: String, about subject: Subject = .settings) {
        self.message = message
        self.subject = subject
    }

    public var description: String { message }
}
