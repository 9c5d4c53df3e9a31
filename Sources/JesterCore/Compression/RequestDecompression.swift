// SPDX-License-Identifier: Apache-2.0
/// What becomes of a request body sent with a `Content-Encoding`, on a route with `decompress_requests`: decoded
/// before it goes upstream (which then sees a plain body without the field), refused with 415, or left alone.
///
/// Decoded bodies are bounded by `max_decompressed_size`, checked as bytes come out of the decoder, never by the
/// coded size: a few KiB of gzip can expand to gigabytes.
public enum RequestDecompression: Sendable, Equatable {
    /// Forward the body as it came: the route does not decode, or the body has no coding.
    case forward
    /// Decode the body with this coding; past `limit` decoded bytes, answer 413.
    case decode(ContentCoding, limit: Int64)
    /// A coding Jester cannot remove (unknown, or several stacked): answer 415 with `Accept-Encoding:
    /// acceptedCodings` (RFC 9110 §15.5.16 and §12.5.3 say a server may list what it takes there), since the
    /// route promised its upstream plain bodies.
    case unsupported

    /// The `Accept-Encoding` value of a 415: every coding the decoders implement.
    public static let acceptedCodings = ContentCoding.allCases.map(\.token).joined(separator: ", ")

    /// The decision for a request with `contentEncoding` (its field lines joined with ", "; nil when absent)
    /// on a route with `policy` (nil: no `compression` table).
    public init(policy: CompressionPolicy?, contentEncoding: String?) {
        guard let policy, policy.decompressRequests, let contentEncoding else {
            self = .forward
            return
        }
        let codings = contentEncoding.split(separator: ",").map { $0.trimmingBlanks().lowercased() }
            .filter { !$0.isEmpty && $0 != "identity" }
        switch codings.count {
        case 0:
            self = .forward
        case 1:
            if let coding = ContentCoding(token: codings[0]) {
                self = .decode(coding, limit: policy.maxDecompressedSize)
            } else {
                self = .unsupported
            }
        default:
            self = .unsupported
        }
    }
}
