// SPDX-License-Identifier: Apache-2.0
// The one importer of libngtcp2 (with its GnuTLS crypto helper) and libnghttp3. HTTP/3 over QUIC is built here;
// until it lands, this module proves the libraries are found and linked, and reports their versions.
private import CJesterNGHTTP3
private import CJesterNGTCP2

/// Facts about the QUIC and HTTP/3 libraries Jester is linked against.
public enum QUICLibraries {
    /// The runtime version of libngtcp2, for example "0.12.1".
    public static var ngtcp2Version: String {
        guard let info = ngtcp2_version(0) else { return "unknown" }
        return String(cString: info.pointee.version_str)
    }

    /// The runtime version of libnghttp3.
    public static var nghttp3Version: String {
        guard let info = nghttp3_version(0) else { return "unknown" }
        return String(cString: info.pointee.version_str)
    }

    /// Whether the GnuTLS crypto helper is linked: it maps GnuTLS record levels to ngtcp2's encryption levels, a
    /// pure function whose answer proves the symbol resolved.
    public static var gnutlsCryptoHelperLinked: Bool {
        ngtcp2_crypto_gnutls_from_ngtcp2_level(NGTCP2_CRYPTO_LEVEL_INITIAL) == GNUTLS_ENCRYPTION_LEVEL_INITIAL
    }
}
