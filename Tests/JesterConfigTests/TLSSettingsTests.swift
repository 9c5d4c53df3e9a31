// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import Testing

/// `[listeners.tls]`: decoding, file reading relative to the configuration, and where problems are reported.

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures/tls").path

private func load(
    _ body: String, check: (@Sendable (TLSListenerSettings) -> TLSProblem?)? = nil
) -> Result<Configuration, ConfigError> {
    // The listener takes lines 1-3, so the body starts on line 4.
    let text = """
        [[listeners]]
        name = "https"
        address = "127.0.0.1:8443"

        """ + body
    do {
        // As if the file lived next to the fixtures, so relative paths resolve there.
        return .success(try ConfigLoader(environment: [:], tlsCheck: check).load(text: text, file: fixtures + "/jester.toml"))
    } catch {
        return .failure(error)
    }
}

private func messages(_ result: Result<Configuration, ConfigError>) -> [String] {
    guard case .failure(let error) = result else { return [] }
    return error.diagnostics.map(\.description)
}

@Test func readsCertificatesRelativeToTheConfigurationFile() throws {
    let configuration = try load("""
        [listeners.tls]
        min_version = "1.3"
        client_certificates = "optional"
        client_ca = "ca.pem"
        client_subject_header = "X-Client-Subject"
        [[listeners.tls.certificates]]
        cert = "alpha.pem"
        key = "\(fixtures)/alpha.key"
        names = ["alpha.test", "*.alpha.test"]
        """).get()
    let tls = try #require(configuration.listeners.first?.tls)
    #expect(tls.minVersion == "1.3")
    #expect(tls.certificates.count == 1)
    #expect(String(decoding: tls.certificates[0].certificatePEM, as: UTF8.self).hasPrefix("-----BEGIN CERTIFICATE-----"))
    #expect(String(decoding: tls.certificates[0].keyPEM, as: UTF8.self).contains("PRIVATE KEY"))
    #expect(tls.certificates[0].names == ["alpha.test", "*.alpha.test"])
    #expect(tls.clientCAPEM?.isEmpty == false)
    #expect(tls.alpn == nil)  // h2 and http/1.1, decided with the listener's http2
    // The dump names the files, never their contents.
    let dump = configuration.renderTOML()
    #expect(dump.contains("[[listeners.tls.certificates]]") && dump.contains("cert = \"alpha.pem\""))
    #expect(!dump.contains("PRIVATE KEY"))
}

@Test func reportsTLSMistakesWhereTheyAreWritten() {
    let found = messages(load("""
        [listeners.tls]
        alpn = ["h3"]
        client_certificates = "required"
        client_subject_header = "X Subject"
        [[listeners.tls.certificates]]
        cert = "missing.pem"
        key = "alpha.key"
        names = ["bad name"]
        """))
    #expect(found.contains { $0.contains("jester.toml:5:1") && $0.contains("'h3' is not a protocol Jester serves") })
    #expect(found.contains { $0.contains("jester.toml:6:1") && $0.contains("needs 'client_ca'") })
    #expect(found.contains { $0.contains("jester.toml:7:1") && $0.contains("is not a header name") })
    #expect(found.contains { $0.contains("jester.toml:9:1") && $0.contains("cannot read \(fixtures)/missing.pem") })
    #expect(found.contains { $0.contains("jester.toml:11:1") && $0.contains("'bad name' is not a host name") })
}

@Test func aCertificateTheCheckRejectsIsReportedAtItsEntry() {
    let found = messages(load("""
        [listeners.tls]
        [[listeners.tls.certificates]]
        cert = "alpha.pem"
        key = "alpha.key"
        [[listeners.tls.certificates]]
        cert = "wildcard.pem"
        key = "alpha.key"
        """, check: { settings in
            settings.certificates.contains { $0.certificateFile == "wildcard.pem" }
                ? TLSProblem("wildcard.pem cannot be used", about: .certificate) : nil
        }))
    #expect(found == ["\(fixtures)/jester.toml:9:1: error: wildcard.pem cannot be used"])
}

/// What a problem is about decides where it is reported: a key's at `key` (an encrypted key is fixed in the key
/// file, not the certificate), a certificate's at `cert`, the rest (ciphers, CA) at the listener's `tls` table.
@Test(arguments: [
    (TLSProblem.Subject.privateKey, "jester.toml:10:1"), (.certificate, "jester.toml:9:1"),
    (.settings, "jester.toml:4:1"),
])
func aTLSProblemIsReportedAtTheKeyItIsAbout(subject: TLSProblem.Subject, place: String) {
    let found = messages(load("""
        [listeners.tls]
        [[listeners.tls.certificates]]
        cert = "alpha.pem"
        key = "alpha.key"
        [[listeners.tls.certificates]]
        cert = "wildcard.pem"
        key = "alpha.key"
        """, check: { settings in
            // The per-certificate pass sees one certificate and no cipher settings; the whole-listener pass both.
            guard settings.certificates.contains(where: { $0.certificateFile == "wildcard.pem" }) else { return nil }
            guard subject != .settings || settings.certificates.count == 2 else { return nil }
            return TLSProblem("the problem", about: subject)
        }))
    let prefix = subject == .settings ? "listener 'https': " : ""
    #expect(found == ["\(fixtures)/\(place): error: \(prefix)the problem"])
}

@Test(arguments: [(TLSProblem.Subject.privateKey, 12), (.certificate, 11), (.settings, 9)])
func anUpstreamTLSProblemIsReportedAtTheKeyItIsAbout(subject: TLSProblem.Subject, line: Int) throws {
    let text = """
        [[routes]]
        name = "api"
        upstream = "secure"
        [upstreams.secure]
        targets = ["127.0.0.1:9443"]
        [upstreams.secure.tls]
        ca = "ca.pem"
        cert = "client.pem"
        key = "client.key"
        """
    do {
        let loader = ConfigLoader(environment: [:], upstreamTLSCheck: { _ in TLSProblem("bad", about: subject) })
        _ = try loader.load(text: "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:8080\"\n" + text,
                file: fixtures + "/jester.toml")
        Issue.record("accepted a TLS problem")
    } catch {
        #expect(error.diagnostics.map(\.description)
            == ["\(fixtures)/jester.toml:\(line):1: error: upstream 'secure': bad"])
    }
}

@Test func aTLSListenerNeedsACertificateAndHTTP() {
    #expect(messages(load("[listeners.tls]\nmin_version = \"1.2\"\n")).contains { $0.contains("'certificates'") })
    let tcp = messages(load("""
        protocol = "tcp"
        upstream = "db"
        [listeners.tls]
        [[listeners.tls.certificates]]
        cert = "alpha.pem"
        key = "alpha.key"
        [upstreams.db]
        targets = ["127.0.0.1:5432"]
        """))
    #expect(tcp.contains { $0.contains("http listeners only") })
}

@Test func upstreamTLSIsDecodedAndItsLimitsAreStated() throws {
    let configuration = try load("""
        [[routes]]
        name = "api"
        upstream = "secure"
        [upstreams.secure]
        targets = ["127.0.0.1:9443"]
        [upstreams.secure.tls]
        ca = "ca.pem"
        server_name = "api.internal"
        cert = "client.pem"
        key = "client.key"
        """).get()
    let tls = try #require(configuration.upstreams.first?.tls)
    #expect(tls.verify && tls.sessionReuse)
    #expect(tls.serverName == "api.internal")
    #expect(tls.caPEM?.isEmpty == false && tls.certificate?.keyPEM.isEmpty == false)
    #expect(configuration.renderTOML().contains("[upstreams.secure.tls]"))

    let found = messages(load("""
        [[routes]]
        name = "api"
        upstream = "secure"
        [upstreams.secure]
        targets = ["127.0.0.1:9443"]
        health_check = { path = "/health" }
        [upstreams.secure.tls]
        cert = "client.pem"
        """))
    #expect(found.contains { $0.contains("HTTP health checks over TLS are not implemented yet") })
    #expect(found.contains { $0.contains("needs both 'cert' and 'key'") })
}

/// `http3` and `http3_retry`: QUIC needs the listener's TLS, and what it cannot do is refused where it is said.
@Test func http3NeedsATLSListenerAndAtMost256Workers() throws {
    let tls = """
        [listeners.tls]
        [[listeners.tls.certificates]]
        cert = "alpha.pem"
        key = "alpha.key"
        """
    let configuration = try load("http3 = true\nhttp3_retry = \"always\"\n" + tls).get()
    #expect(configuration.listeners[0].servesHTTP3 && configuration.listeners[0].alwaysRetriesHTTP3)
    let again = try ConfigLoader(environment: [:]).load(text: configuration.renderTOML(), file: fixtures + "/jester.toml")
    #expect(again.hash == configuration.hash && again.listeners[0].alwaysRetriesHTTP3)
    #expect(messages(load("http3 = true\n")).contains { $0.contains(":4:") && $0.contains("needs a TLS listener") })
    #expect(messages(load("http3_retry = \"always\"\n" + tls)).contains { $0.contains("http3_retry needs http3 = true") })
    // Client certificates are verified over QUIC as over TCP.
    let mutual = try load("http3 = true\n" + tls.replacingOccurrences(
        of: "[listeners.tls]", with: "[listeners.tls]\nclient_certificates = \"optional\"\nclient_ca = \"ca.pem\"")).get()
    #expect(mutual.listeners[0].servesHTTP3 && mutual.listeners[0].tls?.clientCertificates == "optional")
    // Connection IDs name the worker slot in one byte.
    let manyWorkers = messages(load("http3 = true\n" + tls + "\n[server]\nworkers = 300\n"))
    #expect(manyWorkers.contains { $0.contains(":10:") && $0.contains("allows at most 256 workers") }, "\(manyWorkers)")
    #expect(try load("http3 = true\n" + tls + "\n[server]\nworkers = 256\n").get().server.workers == 256)
}

@Test func http3EarlyDataNeedsHTTP3AndSessionTickets() throws {
    let tls = """
        [listeners.tls]
        [[listeners.tls.certificates]]
        cert = "alpha.pem"
        key = "alpha.key"
        """
    let configuration = try load("http3 = true\nhttp3_early_data = true\n" + tls).get()
    #expect(configuration.listeners[0].acceptsHTTP3EarlyData)
    #expect(try load("http3 = true\n" + tls).get().listeners[0].acceptsHTTP3EarlyData == false)
    // Rendered and read back the same (`jester config show` prints what `jester` runs).
    let again = try ConfigLoader(environment: [:]).load(text: configuration.renderTOML(), file: fixtures + "/jester.toml")
    #expect(again.hash == configuration.hash && again.listeners[0].acceptsHTTP3EarlyData)
    let withoutHTTP3 = messages(load("http3_early_data = true\n" + tls))
    #expect(withoutHTTP3.contains { $0.contains(":4:") && $0.contains("http3_early_data needs http3 = true") }, "\(withoutHTTP3)")
    let withoutTickets = messages(load(
        "http3 = true\nhttp3_early_data = true\n" + tls.replacingOccurrences(
            of: "[listeners.tls]", with: "[listeners.tls]\nsession_tickets = false")))
    #expect(withoutTickets.contains { $0.contains(":5:") && $0.contains("needs session tickets") }, "\(withoutTickets)")
}
