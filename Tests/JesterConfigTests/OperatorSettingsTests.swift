// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import Testing

/// The settings of issue 19's operator experience: access-log file and fields, the request-id field, the
/// HTTP→HTTPS redirect listener and HSTS.

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures/tls").path

private func load(_ text: String) -> Result<Configuration, ConfigError> {
    do {
        return .success(try ConfigLoader(environment: [:]).load(text: text, file: fixtures + "/jester.toml"))
    } catch {
        return .failure(error)
    }
}

private func messages(_ text: String) -> [String] {
    guard case .failure(let error) = load(text) else { return [] }
    return error.diagnostics.map(\.description)
}

private let plain = """
    [[listeners]]
    name = "web"
    address = "127.0.0.1:8080"

    """

private let tlsListener = """
    [[listeners]]
    name = "https"
    address = "127.0.0.1:8443"
    [listeners.tls]
    [[listeners.tls.certificates]]
    cert = "alpha.pem"
    key = "alpha.key"

    """

@Test func accessLogFileAndFieldsAreRead() throws {
    let configuration = try load(plain + """
        [log]
        access_log_file = "/var/log/jester/access.log"
        access_log_fields = ["time", "status", "request_id", "upstream_first_byte_ms"]
        """).get()
    #expect(configuration.log.accessLogFile == "/var/log/jester/access.log")
    #expect(configuration.log.accessLogFields == [.time, .status, .requestID, .upstreamFirstByteMs])
    let defaults = try load(plain).get()
    #expect(defaults.log.accessLogFile == nil && defaults.log.accessLogFields == nil)
    // The dump writes them back, and what it writes means the same.
    let dumped = try ConfigLoader(environment: [:]).load(text: configuration.renderTOML(), file: "dump.toml")
    #expect(dumped.log == configuration.log)
}

@Test func accessLogMistakesAreLocated() {
    let found = messages(plain + """
        [log]
        access_log_file = "access.log"
        access_log_fields = ["time", "stauts"]
        """)
    #expect(found.contains { $0.contains("jester.toml:5:1") && $0.contains("must be an absolute path") })
    #expect(found.contains { $0.contains("jester.toml:6:") && $0.contains("did you mean \"status\"") })
    #expect(found.count == 2)
}

@Test func theAccessLogFieldsAreTheContractsKeys() {
    // The 27 of issue 19, trace_id with [tracing], tls_early_data with HTTP/3 0-RTT.
    #expect(AccessLogField.allCases.count == 29)
    #expect(AccessLogField.allCases.first?.rawValue == "time" && AccessLogField.allCases.last?.rawValue == "error")
    #expect(AccessLogField.userAgent.rawValue == "user_agent")
}

@Test func theRequestIDHeaderIsAFieldName() throws {
    #expect(try load(plain).get().http.requestIDHeader == "X-Request-Id")
    let set = try load(plain + "[http]\nrequest_id_header = \"X-Correlation-Id\"\n").get()
    #expect(set.http.requestIDHeader == "X-Correlation-Id")
    let found = messages(plain + "[http]\nrequest_id_header = \"X Request\"\n")
    #expect(found == ["\(fixtures)/jester.toml:5:1: error: 'X Request' is not a header field name"])
}

@Test func settingsOfAnOlderBinaryStillDecode() throws {
    // What a binary from before these keys sends in a binary upgrade: no request id field, no listener options.
    var encoded = try JSONSerialization.jsonObject(with: JSONEncoder().encode(try load(tlsListener).get()))
        as! [String: Any]
    var http = encoded["http"] as! [String: Any]
    http.removeValue(forKey: "requestIDHeader")
    encoded["http"] = http
    let data = try JSONSerialization.data(withJSONObject: encoded)
    let decoded = try JSONDecoder().decode(Configuration.self, from: data)
    #expect(decoded.http.requestIDHeader == "X-Request-Id")
    #expect(decoded.listeners.first?.redirectToHTTPS == nil && decoded.listeners.first?.hsts == nil)
}

@Test func redirectToHTTPSTakesTrueOrAPort() throws {
    let on = try load(plain + "redirect_to_https = true\n").get()
    #expect(on.listeners.first?.redirectToHTTPS == 443)
    let port = try load(plain + "redirect_to_https = 8443\n").get()
    #expect(port.listeners.first?.redirectToHTTPS == 8443)
    #expect(try load(plain + "redirect_to_https = false\n").get().listeners.first?.redirectToHTTPS == nil)
    let dumped = try ConfigLoader(environment: [:]).load(text: port.renderTOML(), file: "dump.toml")
    #expect(dumped.listeners == port.listeners)
}

@Test(arguments: [
    ("redirect_to_https = \"yes\"\n", "must be true (port 443) or a port from 1 to 65535, not \"yes\""),
    ("redirect_to_https = 70000\n", "must be true (port 443) or a port from 1 to 65535, not 70000"),
    ("protocol = \"tcp\"\nupstream = \"u\"\nredirect_to_https = true\n[upstreams.u]\ntargets = [\"127.0.0.1:1\"]\n",
        "needs an http listener"),
])
func redirectToHTTPSMistakes(body: String, expected: String) {
    let found = messages(plain + body)
    #expect(found.contains { $0.contains(expected) }, "\(found)")
}

@Test func aTLSListenerCannotRedirectToHTTPS() {
    let found = messages(tlsListener.replacingOccurrences(of: "[listeners.tls]", with: "redirect_to_https = true\n[listeners.tls]"))
    #expect(found.contains { $0.contains("jester.toml:4:1") && $0.contains("this one is TLS already") }, "\(found)")
}

@Test func hstsOnATLSListener() throws {
    let configuration = try load(tlsListener + """
        [listeners.hsts]
        max_age = "365d"
        include_subdomains = true
        preload = true
        """).get()
    let hsts = try #require(configuration.listeners.first?.hsts)
    #expect(hsts.maxAgeSeconds == 31_536_000)
    #expect(hsts.fieldValue == "max-age=31536000; includeSubDomains; preload")
    #expect(HSTSSettings(maxAgeSeconds: 600).fieldValue == "max-age=600")
    let dumped = try ConfigLoader(environment: [:]).load(text: configuration.renderTOML(), file: fixtures + "/d.toml")
    #expect(dumped.listeners.first?.hsts == hsts)
}

@Test func hstsMistakesSayWhy() {
    let plainHSTS = messages(plain + "[listeners.hsts]\nmax_age = \"1d\"\n")
    #expect(plainHSTS.contains { $0.contains("jester.toml:4:1") && $0.contains("'hsts' needs a TLS listener") },
        "\(plainHSTS)")
    let short = messages(tlsListener + "[listeners.hsts]\nmax_age = \"30d\"\ninclude_subdomains = true\npreload = true\n")
    #expect(short.contains { $0.contains("jester.toml:11:1") && $0.contains("at least 1 year") }, "\(short)")
    let narrow = messages(tlsListener + "[listeners.hsts]\nmax_age = \"400d\"\npreload = true\n")
    #expect(narrow.contains { $0.contains("needs include_subdomains = true") }, "\(narrow)")
    let missing = messages(tlsListener + "[listeners.hsts]\ninclude_subdomains = true\n")
    #expect(missing.contains { $0.contains("hsts is missing 'max_age'") }, "\(missing)")
}

@Test func tracingIsOffUnlessItsTableIsThere() throws {
    #expect(try load(plain).get().tracing == nil)
    let on = try load(plain + """
        [tracing]
        endpoint = "http://127.0.0.1:4318/v1/traces"
        sample_ratio = 0.25
        schedule_delay = "100ms"
        """).get()
    let tracing = try #require(on.tracing)
    #expect(tracing.sampleRatio == 0.25 && tracing.parentBased && tracing.scheduleDelay == .milliseconds(100))
    #expect(try load(plain + "[tracing]\nendpoint = \"http://c:4318\"\nsample_ratio = 1\n").get().tracing?.sampleRatio == 1)
    // The dump writes it back, and what it writes means the same.
    let dumped = try ConfigLoader(environment: [:]).load(text: on.renderTOML(), file: "dump.toml")
    #expect(dumped.tracing == on.tracing)
}

@Test func tracingMistakesAreLocated() {
    #expect(messages(plain + "[tracing]\nendpoint = \"https://c:4318/v1/traces\"\n").contains {
        $0.contains("jester.toml:5:") && $0.contains("https is not supported")
    })
    #expect(messages(plain + "[tracing]\nendpoint = \"http://c\"\nsample_ratio = 1.5\n").contains {
        $0.contains("'sample_ratio' must be from 0.0 to 1.0, not 1.5")
    })
    #expect(messages(plain + "[tracing]\nsample_ratio = 0.5\n").contains { $0.contains("missing 'endpoint'") })
}
