// SPDX-License-Identifier: Apache-2.0
/// A header block to send: every name and value back to back in one byte array.
///
/// A response translated from HTTP/1.1 goes from the upstream's bytes into this block and from it to nghttp2
/// (which copies it while submitting) without a String per field: building two Strings per field, lowercasing
/// one and then copying both again into nghttp2's list was a tenth of an HTTP/2 request's CPU. Names must be
/// lowercase (RFC 9113 §8.2.1): `append(lowercasing:value:)` takes care of that for bytes from HTTP/1.
public struct HTTP2HeaderBlock: Sendable, Equatable {
    /// Names and values, each value right after its name.
    private(set) var bytes: [UInt8] = []
    /// Where each field's name starts in `bytes`, and the lengths of the name and of the value that follows.
    private(set) var spans: [Span] = []

    struct Span: Sendable, Equatable {
        var start: Int
        var nameLength: Int
        var valueLength: Int
        /// See `HTTP2Field.neverIndexed`.
        var neverIndexed = false
    }

    /// `bytes`: about how many bytes the names and values take; `fields`: about how many there are.
    public init(reservingBytes bytes: Int = 0, fields: Int = 0) {
        self.bytes.reserveCapacity(bytes)
        spans.reserveCapacity(fields)
    }

    public init(_ fields: [HTTP2Field]) {
        self.init(reservingBytes: fields.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count }, fields: fields.count)
        for field in fields { append(field.name, field.value, neverIndexed: field.neverIndexed) }
    }

    public var count: Int { spans.count }

    /// The fields, as values (for tests and for the rare path that needs to inspect them).
    public var fields: [HTTP2Field] {
        spans.map { span in
            let valueStart = span.start + span.nameLength
            return HTTP2Field(
                String(decoding: bytes[span.start..<valueStart], as: UTF8.self),
                String(decoding: bytes[valueStart..<valueStart + span.valueLength], as: UTF8.self),
                neverIndexed: span.neverIndexed)
        }
    }

    /// Appends a field whose name is already lowercase (`neverIndexed`: see `HTTP2Field.neverIndexed`).
    public mutating func append(_ name: String, _ value: String, neverIndexed: Bool = false) {
        let start = bytes.count
        bytes.append(contentsOf: name.utf8)
        let nameLength = bytes.count - start
        bytes.append(contentsOf: value.utf8)
        spans.append(Span(
            start: start, nameLength: nameLength, valueLength: bytes.count - start - nameLength,
            neverIndexed: neverIndexed))
    }

    /// Appends a field from HTTP/1 bytes, lowercasing its name (HTTP/1 names are case-insensitive).
    public mutating func append(
        lowercasing name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, neverIndexed: Bool = false
    ) {
        let start = bytes.count
        for byte in name { bytes.append(byte &- 0x41 < 26 ? byte | 0x20 : byte) }
        bytes.append(contentsOf: value)
        spans.append(Span(start: start, nameLength: name.count, valueLength: value.count, neverIndexed: neverIndexed))
    }
}
