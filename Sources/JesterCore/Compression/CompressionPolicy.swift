// SPDX-License-Identifier: Apache-2.0
/// A route's compression settings as the data plane uses them: compiled once per configuration from the route's
/// `compression` table, read by `CompressionDecision` for every response and by `RequestDecompression` for every
/// request body.
public struct CompressionPolicy: Sendable, Equatable {
    /// The codings the route may send, in the server's order of preference (`algorithms`).
    public var codings: [ContentCoding]
    /// The level of each coding (`level`).
    public var levels: CompressionLevels
    /// Responses that declare fewer bytes than this go as they are (`min_size`): below a few hundred bytes the
    /// coding's framing outweighs what it saves. Responses of unknown length are compressed.
    public var minimumSize: Int64
    /// The media types compressed (`types`); other types (images, video, archives: compressed already) pass.
    public var types: [MediaRange]
    /// Whether request bodies sent with a content coding are decoded before they go upstream
    /// (`decompress_requests`).
    public var decompressRequests: Bool
    /// The most bytes a decoded request body may have (`max_decompressed_size`): past it the request gets 413,
    /// however small the coded body was, so a zip bomb costs no more memory than this.
    public var maxDecompressedSize: Int64

    /// The media types compressed by default: text formats that compress well and that browsers fetch most.
    public static let defaultTypes = [
        "text/html", "text/css", "text/plain", "text/javascript", "application/javascript", "application/json",
        "application/xml", "image/svg+xml",
    ]

    /// The defaults of the `compression` table: br, zstd and gzip at their default levels, 1 KiB and up, the
    /// default types, request bodies left coded.
    public init(
        codings: [ContentCoding] = [.br, .zstd, .gzip], levels: CompressionLevels = CompressionLevels(),
        minimumSize: Int64 = 1024, types: [MediaRange] = CompressionPolicy.defaultTypes.compactMap(MediaRange.init),
        decompressRequests: Bool = false, maxDecompressedSize: Int64 = 10 << 20
    ) {
        self.codings = codings
        self.levels = levels
        self.minimumSize = minimumSize
        self.types = types
        self.decompressRequests = decompressRequests
        self.maxDecompressedSize = maxDecompressedSize
    }

    /// Whether a response's `Content-Type` is among `types`; a response without one is not compressed (nothing
    /// says it is text).
    public func compresses(contentType: String?) -> Bool {
        guard let contentType, let type = MediaRange.mediaType(of: contentType) else { return false }
        return types.contains { $0.matches(type) }
    }
}

/// A media type pattern of the `types` list: `text/html`, `text/*` or `*/*` (RFC 9110 §12.5.1's media-range,
/// without parameters), compared ignoring case.
public struct MediaRange: Sendable, Equatable, CustomStringConvertible {
    /// The type, lowercased; `*` for any.
    public let type: String
    /// The subtype, lowercased; `*` for any.
    public let subtype: String

    /// Nil when `text` is not `token/token`, or is `*/subtype` (a range that names a subtype of any type means
    /// nothing), or carries parameters.
    public init?(_ text: String) {
        let parts = text.lowercased().split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty,
            parts.allSatisfy({ $0.utf8.allSatisfy(ASCII.isToken) }), !(parts[0] == "*" && parts[1] != "*")
        else { return nil }
        type = String(parts[0])
        subtype = String(parts[1])
    }

    public var description: String { "\(type)/\(subtype)" }

    /// Whether the media type `mediaType` (`type/subtype`, lowercased, as `mediaType(of:)` returns) is in range.
    public func matches(_ mediaType: (type: Substring, subtype: Substring)) -> Bool {
        (type == "*" || mediaType.type == type) && (subtype == "*" || mediaType.subtype == subtype)
    }

    /// The type and subtype of a `Content-Type` value, lowercased, parameters and whitespace dropped
    /// (`Text/HTML; charset=utf-8` → text, html); nil when it is not `type/subtype`.
    public static func mediaType(of contentType: String) -> (type: Substring, subtype: Substring)? {
        var essence = Substring(contentType.lowercased())
        if let semicolon = essence.firstIndex(of: ";") { essence = essence[..<semicolon] }
        while let first = essence.first, first == " " || first == "\t" { essence.removeFirst() }
        while let last = essence.last, last == " " || last == "\t" { essence.removeLast() }
        guard let slash = essence.firstIndex(of: "/") else { return nil }
        let type = essence[..<slash]
        let subtype = essence[essence.index(after: slash)...]
        // tchar has no "/", so a second slash fails here too.
        guard !type.isEmpty, !subtype.isEmpty, type.utf8.allSatisfy(ASCII.isToken),
            subtype.utf8.allSatisfy(ASCII.isToken)
        else { return nil }
        return (type, subtype)
    }
}
