// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterCore
import Testing

/// A route's `compression = { ... }`: decoding, defaults, each error at its place, the compiled policy and the dump
/// round trip.
@Suite struct CompressionSettingsTests {
    static let file = "/etc/jester/jester.toml"
    static let head = """
        [[listeners]]
        name = "web"
        address = "127.0.0.1:8080"

        [upstreams.app]
        targets = ["127.0.0.1:9000"]

        [[routes]]
        path_prefix = "/"
        upstream = "app"

        """

    static func load(_ text: String) throws -> Configuration {
        try ConfigLoader(environment: [:]).load(text: text, file: file)
    }

    /// The compression settings of the one route of `head` followed by `route`.
    static func settings(_ route: String) throws -> CompressionSettings? {
        try load(head + route).routes.first?.compression
    }

    /// `route` (lines after the route's others) must be refused with `message` on the line and column of `needle`.
    static func expectError(
        _ route: String, at needle: String, containing message: String,
        sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) {
        let text = head + route
        do {
            _ = try load(text)
            Issue.record("accepted an invalid configuration", sourceLocation: sourceLocation)
        } catch let error as ConfigError {
            let range = text.range(of: needle)!
            let before = text[..<range.lowerBound]
            let lineStart = before.lastIndex(of: "\n").map { text.index(after: $0) } ?? text.startIndex
            let expected = JesterConfig.SourceLocation(
                file: file, line: before.filter { $0 == "\n" }.count + 1,
                column: text.distance(from: lineStart, to: range.lowerBound) + 1)
            #expect(
                error.diagnostics.contains { $0.location == expected && $0.message.contains(message) },
                "wanted \(expected): …\(message)…; got \(error.diagnostics.map(\.description))",
                sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func aRouteWithoutTheTableCompressesNothing() throws {
        #expect(try Self.settings("") == nil)
    }

    @Test func anEmptyTableMeansTheDefaults() throws {
        let settings = try #require(try Self.settings("compression = {}\n"))
        #expect(settings == CompressionSettings())
        #expect(settings.algorithms == [.br, .zstd, .gzip])
        #expect(settings.levels == CompressionLevels())
        #expect(settings.minSize == 1024 && !settings.decompressRequests && settings.maxDecompressedSize == 10 << 20)
        #expect(settings.types.contains("text/html") && settings.types.contains("image/svg+xml"))
        #expect(settings.policy == CompressionPolicy())
    }

    @Test func everyKeyIsRead() throws {
        let settings = try #require(try Self.settings("""
            [routes.compression]
            algorithms = ["gzip", "br", "deflate"]
            level = { gzip = 9, br = 11, deflate = 1 }
            min_size = "256B"
            types = ["text/*", "application/wasm"]
            decompress_requests = true
            max_decompressed_size = "1MiB"
            """))
        #expect(settings.algorithms == [.gzip, .br, .deflate])
        #expect(settings.levels.gzip == 9 && settings.levels.br == 11 && settings.levels.deflate == 1)
        #expect(settings.levels.zstd == ContentCoding.zstd.defaultLevel)
        #expect(settings.minSize == 256 && settings.types == ["text/*", "application/wasm"])
        #expect(settings.decompressRequests && settings.maxDecompressedSize == 1 << 20)
        let policy = settings.policy
        #expect(policy.codings == [.gzip, .br, .deflate] && policy.minimumSize == 256)
        #expect(policy.types == [MediaRange("text/*")!, MediaRange("application/wasm")!])
        #expect(policy.compresses(contentType: "text/csv") && !policy.compresses(contentType: "image/png"))
    }

    @Test func oneLevelAppliesToEveryCoding() throws {
        let route = "compression = { algorithms = [\"gzip\", \"zstd\"], level = 5 }\n"
        let settings = try #require(try Self.settings(route))
        #expect(settings.levels.gzip == 5 && settings.levels.zstd == 5)
        #expect(settings.levels.br == ContentCoding.br.defaultLevel, "a coding not listed keeps its default")
        // And the dump, which writes a level per listed coding, reads back the same.
        let configuration = try Self.load(Self.head + route)
        #expect(try Self.load(configuration.renderTOML()).routes == configuration.routes)
    }

    @Test func valuesAreCheckedWhereTheyAreWritten() {
        Self.expectError("compression = { algorithms = [\"gzip\", \"lzma\"] }\n", at: "algorithms",
            containing: "'lzma' in 'algorithms' is not a coding Jester implements")
        Self.expectError("compression = { algorithms = [\"gzip\", \"gzip\"] }\n", at: "algorithms",
            containing: "'gzip' is listed twice")
        Self.expectError("compression = { algorithms = [] }\n", at: "algorithms",
            containing: "'algorithms' needs at least one coding")
        Self.expectError("compression = { algorithms = [\"gzip\", \"br\"], level = 11 }\n", at: "level",
            containing: "level 11 is outside gzip's 1 to 9")
        Self.expectError("compression = { level = { gzip = 10 } }\n", at: "gzip",
            containing: "'gzip' must be from 1 to 9, not 10")
        Self.expectError("compression = { level = { deflate = 3 } }\n", at: "deflate",
            containing: "a level for 'deflate', which 'algorithms' does not list")
        Self.expectError("compression = { level = { gzp = 3 } }\n", at: "gzp",
            containing: "unknown key 'gzp' in level; did you mean 'gzip'?")
        Self.expectError("compression = { level = \"high\" }\n", at: "level",
            containing: "'level' in compression must be an integer from 0 to 19, or a table")
        Self.expectError("compression = { min_size = \"1 kilobyte\" }\n", at: "min_size", containing: "must be a size")
        Self.expectError("compression = { types = [\"text/html; charset=utf-8\"] }\n", at: "types",
            containing: "is not a media type")
        Self.expectError("compression = { types = [\"*/html\"] }\n", at: "types", containing: "is not a media type")
        Self.expectError("compression = { types = [] }\n", at: "types", containing: "'types' needs at least one")
        Self.expectError("compression = { max_decompressed_size = \"1MiB\" }\n", at: "max_decompressed_size",
            containing: "needs decompress_requests = true")
        Self.expectError("compression = { decompress_requests = true, max_decompressed_size = 0 }\n",
            at: "max_decompressed_size", containing: "must be at least 1 byte")
        Self.expectError("compression = { gzip = true }\n", at: "gzip",
            containing: "unknown key 'gzip' in compression")
        Self.expectError("compression = \"gzip\"\n", at: "compression", containing: "compression must be a table")
    }

    @Test func theDumpWritesEveryKeyAndReadsBackTheSame() throws {
        let configuration = try Self.load(Self.head + """
            compression = { algorithms = ["zstd", "gzip"], level = { zstd = 7 }, min_size = 2048, \
            decompress_requests = true, types = ["text/*"] }

            [[routes]]
            path_prefix = "/plain/"
            upstream = "app"
            """)
        let dump = configuration.renderTOML()
        #expect(dump.contains("""
            compression = { algorithms = ["zstd", "gzip"], level = { zstd = 7, gzip = 6 }, min_size = "2KiB", \
            types = ["text/*"], decompress_requests = true, max_decompressed_size = "10MiB" }
            """), "\(dump)")
        #expect(dump.contains("# compression = none"))
        let dumped = try Self.load(dump)
        #expect(dumped.routes == configuration.routes)
        #expect(dumped.routes.map(\.compression?.levels.zstd) == [7, nil])
    }

    /// Two listeners, one with a compression default, and routes that inherit it, replace it or turn it off.
    static let listenerDefaults = """
        [[listeners]]
        name = "web"
        address = "127.0.0.1:8080"
        compression = { algorithms = ["gzip"], level = 9 }

        [[listeners]]
        name = "plain"
        address = "127.0.0.1:8081"

        [upstreams.app]
        targets = ["127.0.0.1:9000"]

        [[routes]]
        name = "inherits"
        path_prefix = "/"
        upstream = "app"

        [[routes]]
        name = "own"
        path_prefix = "/own/"
        upstream = "app"
        compression = { algorithms = ["br"] }

        [[routes]]
        name = "off"
        path_prefix = "/off/"
        upstream = "app"
        compression = false

        """

    @Test func aListenersCompressionServesItsRoutesThatSetNone() throws {
        let configuration = try Self.load(Self.listenerDefaults)
        let routes = Dictionary(uniqueKeysWithValues: configuration.routes.map { ($0.name, $0) })
        let inherited = try #require(configuration.compression(for: routes["inherits"]!, listener: "web"))
        #expect(inherited.codings == [.gzip] && inherited.levels.gzip == 9)
        // A route's own table replaces the listener's whole (its level is br's default, not 9).
        let own = try #require(configuration.compression(for: routes["own"]!, listener: "web"))
        #expect(own.codings == [.br] && own.levels.br == ContentCoding.br.defaultLevel)
        #expect(configuration.compression(for: routes["off"]!, listener: "web") == nil)
        // The other listener has none: only the route's own applies.
        #expect(configuration.compression(for: routes["inherits"]!, listener: "plain") == nil)
        #expect(configuration.compression(for: routes["own"]!, listener: "plain")?.codings == [.br])
        #expect(configuration.compression(for: routes["off"]!, listener: "plain") == nil)
        // The dump keeps all three kinds.
        let dump = configuration.renderTOML()
        #expect(dump.contains("compression = false"))
        #expect(dump.contains("compression = { algorithms = [\"gzip\"], level = { gzip = 9 }"))
        let dumped = try Self.load(dump)
        #expect(dumped.routes == configuration.routes && dumped.listeners == configuration.listeners)
    }

    @Test func listenerAndRouteValuesAreChecked() {
        Self.expectError("compression = true\n", at: "compression",
            containing: "write compression = {} for the defaults")
        let tcp = """
            [[listeners]]
            name = "db"
            address = "127.0.0.1:5432"
            protocol = "tcp"
            upstream = "app"
            compression = {}

            """
        Self.expectError(tcp, at: "compression = {}", containing: "'compression' needs an http listener")
        do {
            _ = try Self.load(Self.head.replacingOccurrences(
                of: "address = \"127.0.0.1:8080\"\n", with: "address = \"127.0.0.1:8080\"\ncompression = false\n"))
            Issue.record("accepted compression = false on a listener")
        } catch let error as ConfigError {
            #expect(error.diagnostics.contains { $0.message.contains("compression must be a table") },
                "\(error.diagnostics.map(\.description))")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func settingsOfAnOlderBinaryWithoutTheKeyStillDecode() throws {
        var route = try Self.load(Self.head + "compression = {}\n").routes[0]
        var json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(route)) as! [String: Any]
        #expect(json["compression"] != nil)
        json.removeValue(forKey: "compression")
        let decoded = try JSONDecoder().decode(RouteSettings.self, from: JSONSerialization.data(withJSONObject: json))
        route.compression = nil
        #expect(decoded == route)
    }
}
