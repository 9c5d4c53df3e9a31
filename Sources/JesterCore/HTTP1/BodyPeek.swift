// SPDX-License-Identifier: Apache-2.0
/// The start of a request body, decoded (chunked framing removed) without consuming it: what body matchers of
/// routes look at before the route is chosen.
public struct BodyPeek: Sendable, Equatable {
    /// The decoded body, at most the peek limit.
    public var bytes: [UInt8]
    /// Whether `bytes` is the whole body (not cut at the limit).
    public var isComplete: Bool

    public init(bytes: [UInt8], isComplete: Bool) {
        self.bytes = bytes
        self.isComplete = isComplete
    }

    public static let empty = BodyPeek(bytes: [], isComplete: true)

    /// Peeks at the body framed by `framing` at the start of `raw` (the bytes after the head): nil while more
    /// bytes are needed to see either the whole body or `limit` bytes of it. Framing overhead is bounded too: a
    /// body in tiny chunks stops being read once its raw bytes pass `limit` plus 64 KiB.
    public static func peek(
        _ raw: UnsafeRawBufferPointer, framing: BodyFraming, limit: Int
    ) throws(HTTPParseError) -> BodyPeek? {
        var reader = BodyReader(framing)
        var index = 0
        var bytes: [UInt8] = []
        while bytes.count < limit, let range = try reader.next(raw, &index) {
            bytes += UnsafeRawBufferPointer(rebasing: raw[range.lowerBound..<min(range.upperBound, range.lowerBound + limit - bytes.count)])
        }
        if reader.isComplete, bytes.count <= limit { return BodyPeek(bytes: bytes, isComplete: true) }
        if bytes.count >= limit || raw.count > limit + 64 * 1024 {
            return BodyPeek(bytes: Array(bytes.prefix(limit)), isComplete: false)
        }
        return nil
    }
}
