// SPDX-License-Identifier: Apache-2.0
import JesterHTTP2
import JesterHTTP3
import JesterSystem
import JesterTLS
import Testing

/// Each system library is linked now, before its feature lands: these calls fail to link or return nonsense
/// if pkg-config or the module maps are wrong.
@Test func systemLibrariesAreLinked() {
    #expect(OpenSSLLibrary.version.hasPrefix("OpenSSL 3"))
    #expect(OpenSSLLibrary.versionNumber >= 0x3000_0000)
    #expect(NGHTTP2Library.version.split(separator: ".").count == 3)
    #expect(QUICLibraries.ngtcp2Version.split(separator: ".").count == 3)
    #expect(QUICLibraries.nghttp3Version.split(separator: ".").count == 3)
    #expect(QUICLibraries.gnutlsCryptoHelperLinked)
}

@Test func bindsReusePortSocketsPerSlot() throws {
    let first = try ListeningSocket.bind(host: "127.0.0.1", port: 0, backlog: 16)
    #expect(first >= 0)
    #expect(throws: SystemError.self) { try ListeningSocket.bind(host: "not-an-ip", port: 80, backlog: 1) }
}

@Test func decodesExitStatuses() {
    #expect(ExitStatus.exited(code: 0).isSuccess)
    #expect(ExitStatus.signaled(signal: 9, coreDumped: false).description.contains("SIGKILL"))
}
