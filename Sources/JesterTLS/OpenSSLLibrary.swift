// SPDX-License-Identifier: Apache-2.0
// The one importer of the system OpenSSL. TLS termination (listeners with `tls`) and upstream TLS are built here;
// until they land, this module proves the library is found and linked, and reports its version at start-up.
private import CJesterOpenSSL

/// Facts about the system OpenSSL that Jester is linked against (Debian's libssl3, updated by the distribution).
public enum OpenSSLLibrary {
    /// The runtime version string, for example "OpenSSL 3.0.19 ...". Read from the loaded library, not the headers,
    /// so it shows what a security update actually installed.
    public static var version: String {
        String(cString: OpenSSL_version(OPENSSL_VERSION))
    }

    /// The runtime version as OpenSSL's packed number (0xMNN00PP0L).
    public static var versionNumber: UInt { UInt(OpenSSL_version_num()) }
}
