// SPDX-License-Identifier: Apache-2.0
import JesterCore

/// `compression = { ... }` of a route, or of a listener for its routes that set none: which responses are
/// compressed, with which codings at which levels, and whether request bodies sent coded are decoded for the
/// upstream. A route's `compression = false` (`off`) turns its listener's off.
///
/// Kept as written (type patterns as text), so the dump writes back what was read; `policy` is the form the data
/// plane uses. Optional where it is used, so an older binary's settings, handed over in a binary upgrade, still
/// decode.
public struct CompressionSettings: Sendable, Codable, Equatable {
    /// False only for a route's `compression = false`: neither its own nor its listener's.
    @DefaultIfMissing<CompressionEnabledDefault> public var enabled: Bool
    /// The codings offered, in the server's order of preference (`algorithms`).
    public var algorithms: [ContentCoding]
    /// Each coding's level (`level`: one number for all, or a table per coding).
    public var levels: CompressionLevels
    /// Responses declaring fewer bytes go as they are (`min_size`).
    public var minSize: Int64
    /// Media types compressed (`types`): `type/subtype`, `type/*` or `*/*`.
    public var types: [String]
    /// Decode request bodies sent with a coding before they go upstream (`decompress_requests`).
    public var decompressRequests: Bool
    /// The most bytes a decoded request body may have; more gets 413 (`max_decompressed_size`).
    public var maxDecompressedSize: Int64

    /// A route's `compression = false`.
    public static let off: CompressionSettings = {
        var settings = CompressionSettings()
        settings.enabled = false
        return settings
    }()

    /// The defaults of `compression = {}`.
    public init() {
        let policy = CompressionPolicy()
        algorithms = policy.codings
        levels = policy.levels
        minSize = policy.minimumSize
        types = CompressionPolicy.defaultTypes
        decompressRequests = policy.decompressRequests
        maxDecompressedSize = policy.maxDecompressedSize
    }

    /// The `compression = { ... }` line of `jester config dump`, every key written (a level per listed coding), so
    /// the dump reads back the same. Every string in it is a token or media range the loader checked: none needs
    /// escapes.
    var renderedTOML: String {
        guard enabled else { return "compression = false" }
        func list(_ items: [String]) -> String { "[" + items.map { "\"\($0)\"" }.joined(separator: ", ") + "]" }
        let levels = algorithms.map { "\($0.token) = \(self.levels[$0])" }.joined(separator: ", ")
        return "compression = { algorithms = " + list(algorithms.map(\.token)) + ", level = { \(levels) }, "
            + "min_size = \(Units.formatSize(minSize)), types = " + list(types) + ", "
            + "decompress_requests = \(decompressRequests)"
            + (decompressRequests ? ", max_decompressed_size = \(Units.formatSize(maxDecompressedSize))" : "") + " }"
    }

    /// The settings as the data plane reads them (the loader checked every type pattern).
    public var policy: CompressionPolicy {
        CompressionPolicy(
            codings: algorithms, levels: levels, minimumSize: minSize, types: types.compactMap(MediaRange.init),
            decompressRequests: decompressRequests, maxDecompressedSize: maxDecompressedSize)
    }
}

/// `CompressionSettings.enabled` of settings written before the key existed.
public enum CompressionEnabledDefault: CodableDefault {
    public static let defaultValue = true
}

extension Configuration {
    /// The compression of requests on `listener` taken by `route`: the route's own, else the listener's; nil when
    /// neither has one, or the route turned it off.
    public func compression(for route: RouteSettings, listener: String) -> CompressionPolicy? {
        guard let settings = route.compression ?? listeners.first(where: { $0.name == listener })?.compression,
            settings.enabled
        else { return nil }
        return settings.policy
    }
}

extension ConfigDecoder {
    /// `compression` of a route: a table, or `false` to turn its listener's off.
    mutating func decodeRouteCompression(_ node: ConfigNode) -> CompressionSettings? {
        switch node.value {
        case .boolean(false): return .off
        case .boolean(true):
            report(node.location, "'compression = true' is not a setting: write compression = {} for the defaults")
            return nil
        default: return decodeCompression(node)
        }
    }

    /// `compression = { ... }` of a route or listener: every key checked, errors at the key's place.
    mutating func decodeCompression(_ node: ConfigNode) -> CompressionSettings? {
        guard var table = TableReader(node, ConfigSchema.compression, decoder: &self) else { return nil }
        var settings = CompressionSettings()
        if let names = table.stringArray("algorithms", decoder: &self) {
            var algorithms: [ContentCoding] = []
            for name in names {
                guard let coding = ContentCoding(rawValue: name) else {
                    let known = ContentCoding.allCases.map(\.token)
                    report(table.location(of: "algorithms"),
                        "'\(name)' in 'algorithms' is not a coding Jester implements (\(known.joined(separator: ", ")))"
                            + (Suggestion.closest(to: name, among: known).map { "; did you mean '\($0)'?" } ?? ""))
                    continue
                }
                if algorithms.contains(coding) {
                    report(table.location(of: "algorithms"), "'\(name)' is listed twice in 'algorithms'")
                }
                algorithms.append(coding)
            }
            if names.isEmpty {
                report(table.location(of: "algorithms"), "'algorithms' needs at least one coding; remove "
                    + "'compression' to compress nothing")
            }
            settings.algorithms = algorithms
        }
        if let level = table.take("level", decoder: &self) {
            decodeLevels(level, algorithms: settings.algorithms, into: &settings.levels)
        }
        if let size = table.size("min_size", decoder: &self) { settings.minSize = size }
        if let types = table.stringArray("types", decoder: &self) {
            for type in types where MediaRange(type) == nil {
                report(table.location(of: "types"),
                    "'\(type)' in 'types' is not a media type (\"text/html\", \"text/*\" or \"*/*\", no parameters)")
            }
            if types.isEmpty {
                report(table.location(of: "types"), "'types' needs at least one media type (\"*/*\" for every type)")
            }
            settings.types = types
        }
        settings.decompressRequests = table.boolean("decompress_requests", decoder: &self) ?? false
        if let size = table.size("max_decompressed_size", decoder: &self) {
            if !settings.decompressRequests {
                report(table.location(of: "max_decompressed_size"),
                    "'max_decompressed_size' needs decompress_requests = true")
            }
            if size < 1 {
                report(table.location(of: "max_decompressed_size"), "'max_decompressed_size' must be at least 1 byte")
            }
            settings.maxDecompressedSize = size
        }
        table.finish(decoder: &self)
        return settings
    }

    /// `level`: one number for every listed coding, or a table with a number per coding.
    private mutating func decodeLevels(
        _ node: ConfigNode, algorithms: [ContentCoding], into levels: inout CompressionLevels
    ) {
        switch node.value {
        case .integer(let level):
            for coding in algorithms where !coding.levelRange.contains(level) {
                let range = coding.levelRange
                report(node.location,
                    "level \(level) is outside \(coding.token)'s \(range.lowerBound) to \(range.upperBound); give a "
                        + "level per coding: level = { \(coding.token) = \(coding.defaultLevel), ... }")
            }
            // Only the listed codings: the others keep their defaults, as the dump (which writes listed ones) reads.
            for coding in algorithms where coding.levelRange.contains(level) { levels[coding] = level }
        case .table:
            guard var reader = TableReader(node, ConfigSchema.compressionLevels, decoder: &self) else { return }
            for coding in ContentCoding.allCases {
                guard let level = reader.integer(coding.token, decoder: &self) else { continue }
                levels[coding] = level
                if !algorithms.contains(coding) {
                    report(reader.location(of: coding.token),
                        "a level for '\(coding.token)', which 'algorithms' does not list")
                }
            }
            reader.finish(decoder: &self)
        default:
            report(node.location, "'level' in compression must be "
                + ConfigSchema.compression.field("level")!.type.summary + ", not \(node.describedValue)")
        }
    }
}

extension ConfigSchema {
    /// A route's `compression` table.
    public static let compression = Table(
        "compression",
        [
            Field("algorithms", .array(.choice(ContentCoding.allCases.map(\.token))),
                default: "[\"br\", \"zstd\", \"gzip\"]",
                "The codings offered, in the server's order of preference: the client's Accept-Encoding weights "
                    + "decide, this order breaks ties (browsers weigh every coding alike)."),
            Field("level", .either([.integer(0...19), .table(compressionLevels)]),
                default: "br 4, zstd 3, gzip and deflate 6",
                "One level for every listed coding (within each one's range), or a table of levels per coding."),
            Field("min_size", .size, default: "\"1KiB\"",
                "Responses that declare fewer bytes in Content-Length go as they are; those of unknown length are "
                    + "compressed."),
            Field("types", .array(.string),
                default: "[" + CompressionPolicy.defaultTypes.map { "\"\($0)\"" }.joined(separator: ", ") + "]",
                "The media types compressed (\"text/html\", \"text/*\", \"*/*\"), parameters ignored; a response "
                    + "without Content-Type is not."),
            Field("decompress_requests", .boolean, default: "false",
                "Decode request bodies sent with a Content-Encoding (gzip, deflate, br, zstd) before they go "
                    + "upstream, which sees a plain body; other or stacked codings get 415."),
            Field("max_decompressed_size", .size, default: "\"10MiB\"",
                "With decompress_requests: the most bytes a decoded body may have; past it the request gets 413, "
                    + "however small the coded body (a zip bomb)."),
        ])

    /// `compression.level` written as a table.
    public static let compressionLevels = Table(
        "level",
        ContentCoding.allCases.map { coding in
            Field(coding.token, .integer(coding.levelRange), default: "\(coding.defaultLevel)",
                "The level of \(coding.token).")
        })
}
