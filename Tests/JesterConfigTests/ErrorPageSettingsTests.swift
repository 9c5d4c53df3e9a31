// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import Testing

/// `error_pages = { ... }` on listeners and routes: decoding, page files read relative to the configuration file,
/// each error at its place, the route's table replacing the listener's, and the dump round trip.
@Suite struct ErrorPageSettingsTests {
    /// A directory with a configuration file's name in it and two pages beside it.
    static let directory: String = {
        let path = NSTemporaryDirectory() + "jester-error-pages-\(getpid())"
        try? FileManager.default.createDirectory(atPath: path + "/errors", withIntermediateDirectories: true)
        try? Data("<h1>{status}</h1>".utf8).write(to: URL(fileURLWithPath: path + "/errors/404.html"))
        try? Data("down".utf8).write(to: URL(fileURLWithPath: path + "/errors/5xx.txt"))
        try? Data(repeating: 0x61, count: ErrorPageSettings.maxPageSize + 1)
            .write(to: URL(fileURLWithPath: path + "/errors/big.txt"))
        try? Data([0xFF, 0xFE]).write(to: URL(fileURLWithPath: path + "/errors/binary.txt"))
        return path
    }()
    static var file: String { directory + "/jester.toml" }
    static let listener = """
        [[listeners]]
        name = "web"
        address = "127.0.0.1:8080"

        """
    static let rest = """

        [upstreams.app]
        targets = ["127.0.0.1:9000"]

        [[routes]]
        path_prefix = "/"
        upstream = "app"

        """

    static func load(_ text: String) throws -> Configuration {
        try ConfigLoader(environment: [:]).load(text: text, file: file)
    }

    static func expectError(_ text: String, at needle: String, containing message: String,
        sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) {
        do {
            _ = try load(text)
            Issue.record("accepted an invalid configuration", sourceLocation: sourceLocation)
        } catch let error as ConfigError {
            let range = text.range(of: needle)!
            let before = text[..<range.lowerBound]
            let line = before.filter { $0 == "\n" }.count + 1
            #expect(
                error.diagnostics.contains { $0.location.line == line && $0.message.contains(message) },
                "wanted line \(line): …\(message)…; got \(error.diagnostics.map(\.description))",
                sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func pagesAreReadAndTheRoutesTableReplacesTheListeners() throws {
        let configuration = try Self.load(Self.listener + """
            error_pages = { format = "problem+json", pages = { "404" = "errors/404.html", "5xx" = "errors/5xx.txt" } }
            """ + Self.rest + """
            error_pages = { intercept = ["503", "4xx"] }

            [[routes]]
            path_prefix = "/b"
            upstream = "app"
            """)
        let listener = try #require(configuration.listeners.first?.errorPages)
        #expect(listener.format == .problemJSON)
        #expect(listener.pages.map(\.statuses) == [.status(404), .statusClass(5)])
        #expect(listener.pages.map { String(decoding: $0.body, as: UTF8.self) } == ["<h1>{status}</h1>", "down"])
        #expect(listener.pages.map(\.contentType) == ["text/html; charset=utf-8", "text/plain; charset=utf-8"])
        let own = try #require(configuration.errorPages(for: configuration.routes[0], listener: "web"))
        #expect(listener.pages.map(\.path) == [Self.directory + "/errors/404.html", Self.directory + "/errors/5xx.txt"])
        #expect(own.format == .text && own.pages.isEmpty && own.intercept == [.status(503), .statusClass(4)])
        #expect(configuration.errorPages(for: configuration.routes[1], listener: "web") == listener)
    }

    @Test func theDumpReadsBackTheSame() throws {
        let configuration = try Self.load(Self.listener + """
            error_pages = { format = "html", pages = { "404" = "errors/404.html" }, intercept = ["5xx"] }
            """ + Self.rest + "error_pages = { pages = { \"502\" = \"errors/5xx.txt\" } }\n")
        let dumped = configuration.renderTOML()
        #expect(dumped.contains("error_pages = { format = \"html\""))
        // Read from elsewhere, the dump still names the same files.
        let again = try ConfigLoader(environment: [:]).load(text: dumped, file: "/nonexistent/dump.toml")
        #expect(again.listeners.first?.errorPages == configuration.listeners.first?.errorPages)
        #expect(again.routes.first?.errorPages == configuration.routes.first?.errorPages)
    }

    @Test func errorsAreReportedAtTheirPlace() {
        _ = Self.directory
        let cases: [(String, String, String)] = [
            ("error_pages = { format = \"xml\" }", "format", "'format' must be"),
            ("error_pages = { pages = { \"302\" = \"errors/404.html\" } }", "302", "not an error status"),
            ("error_pages = { pages = { \"6xx\" = \"errors/404.html\" } }", "6xx", "not an error status"),
            ("error_pages = { pages = { \"404\" = 3 } }", "404", "must be a file name"),
            ("error_pages = { pages = { \"404\" = \"errors/missing.html\" } }", "404", "cannot read"),
            ("error_pages = { pages = { \"404\" = \"errors/big.txt\" } }", "404", "a page may have at most"),
            ("error_pages = { pages = { \"404\" = \"errors/binary.txt\" } }", "404", "is not UTF-8"),
            ("error_pages = { intercept = [\"200\"] }", "intercept", "'200' in 'intercept' is not an error status"),
            ("error_pages = { pagez = {} }", "pagez", "unknown key 'pagez'"),
        ]
        for (line, needle, message) in cases {
            Self.expectError(Self.listener + Self.rest + line + "\n", at: needle, containing: message)
        }
        Self.expectError(
            "[[listeners]]\nname = \"t\"\naddress = \"127.0.0.1:1\"\nprotocol = \"tcp\"\nupstream = \"app\"\n"
                + "error_pages = {}\n" + Self.rest, at: "error_pages", containing: "needs an http listener")
    }
}
