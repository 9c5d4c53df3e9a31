// SPDX-License-Identifier: Apache-2.0

/// The stream identifiers an HTTP/2 client has used, as far as a server needs them to enforce RFC 9113 §5.1.1:
/// identifiers only grow, and opening stream N implicitly closes every lower identifier the client skipped, so a
/// HEADERS frame on a skipped one is a connection error (PROTOCOL_ERROR).
///
/// HEADERS on a lower identifier that *was* used stays allowed here: trailers may race an RST_STREAM this side
/// sent, and nghttp2 already answers the other cases (a closed stream) by itself. Skipped identifiers are kept as
/// ranges, the most recent `rangeLimit` of them: clients skip rarely, so this is a few entries, bounded.
public struct ClientStreamIDs: Sendable {
    /// The highest client stream identifier seen.
    public private(set) var highest: Int32 = 0
    private var skipped: [ClosedRange<Int32>] = []
    static let rangeLimit = 16

    public init() {}

    /// A HEADERS frame arrives on client stream `id` (odd): false when `id` is one the client skipped earlier.
    public mutating func headersArrived(on id: Int32) -> Bool {
        if id > highest {
            let next = highest == 0 ? 1 : highest + 2
            if id > next {
                if skipped.count == Self.rangeLimit { skipped.removeFirst() }
                skipped.append(next...(id - 2))
            }
            highest = id
            return true
        }
        return !skipped.contains { $0.contains(id) }
    }
}
