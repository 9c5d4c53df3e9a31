// SPDX-License-Identifier: Apache-2.0
/// A content coding Jester can apply to a response body or remove from a request body (RFC 9110 §8.4.1).
///
/// Pure: the names, level ranges and defaults live here so that the configuration, the negotiation and the
/// decision rules agree on them without linking any compression library; JesterCompression adds the encoders.
public enum ContentCoding: String, Sendable, Codable, CaseIterable, Hashable {
    /// gzip (RFC 1952), from zlib.
    case gzip
    /// The zlib format (RFC 1950) carrying deflate data (RFC 1951), as RFC 9110 §8.4.1.2 names it.
    case deflate
    /// Brotli (RFC 7932).
    case br
    /// Zstandard (RFC 8878).
    case zstd

    /// The default server preference: the densest coding first, gzip before deflate because every client decodes
    /// gzip alike, while "deflate" was sent raw by some servers and so is read two ways.
    public static let preferenceOrder: [ContentCoding] = [.br, .zstd, .gzip, .deflate]

    /// The token as sent in `Content-Encoding` and read in `Accept-Encoding`.
    public var token: String { rawValue }

    /// The coding a token names, ignoring case; `x-gzip` is gzip (RFC 9110 §8.4.1.3). Nil for identity, `*` and
    /// codings Jester does not implement (compress, exi, ...).
    public init?(token: some StringProtocol) {
        switch token.lowercased() {
        case "gzip", "x-gzip": self = .gzip
        case "deflate": self = .deflate
        case "br": self = .br
        case "zstd": self = .zstd
        default: return nil
        }
    }

    /// The levels the library takes. zstd stops at 19: the levels above use windows past the 8 MiB that HTTP's
    /// zstd coding is limited to (RFC 9659 §3: decoders may refuse more), and memory a proxy cannot afford per stream.
    public var levelRange: ClosedRange<Int> {
        switch self {
        case .gzip, .deflate: 1...9
        case .br: 0...11
        case .zstd: 1...19
        }
    }

    /// The level used when the configuration names none: ones that compress on the fly at a speed near a
    /// proxy's throughput (zlib's own default 6, brotli 4, zstd's own default 3), not the densest.
    public var defaultLevel: Int {
        switch self {
        case .gzip, .deflate: 6
        case .br: 4
        case .zstd: 3
        }
    }
}

/// A compression level for each coding, so one route can ask for brotli 5 and gzip 6 alike.
public struct CompressionLevels: Sendable, Codable, Equatable {
    public var gzip: Int
    public var deflate: Int
    public var br: Int
    public var zstd: Int

    /// Each coding's `defaultLevel`.
    public init() {
        gzip = ContentCoding.gzip.defaultLevel
        deflate = ContentCoding.deflate.defaultLevel
        br = ContentCoding.br.defaultLevel
        zstd = ContentCoding.zstd.defaultLevel
    }

    /// The level of one coding.
    public subscript(coding: ContentCoding) -> Int {
        get {
            switch coding {
            case .gzip: gzip
            case .deflate: deflate
            case .br: br
            case .zstd: zstd
            }
        }
        set {
            switch coding {
            case .gzip: gzip = newValue
            case .deflate: deflate = newValue
            case .br: br = newValue
            case .zstd: zstd = newValue
            }
        }
    }
}
