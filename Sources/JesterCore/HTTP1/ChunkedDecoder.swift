// SPDX-License-Identifier: Apache-2.0
/// Decodes a `Transfer-Encoding: chunked` body (RFC 9112 §7.1) incrementally, in place.
///
/// The proxy never forwards chunk framing as received: it decodes here and re-encodes canonical chunks, so chunk
/// extensions, odd size spellings and trailers cannot be read differently by the server behind it. Sizes are
/// strict hex with no sign, no whitespace and no more than 15 digits; every line ends in CRLF.
public struct ChunkedDecoder: Sendable {
    /// What the decoder found next in the bytes.
    public enum Output: Sendable, Equatable {
        /// Body bytes at this range of the buffer passed in.
        case data(Range<Int>)
        /// The last chunk and the trailer section were read; the body is complete.
        case end
    }

    private enum State: Sendable {
        case size(value: Int64, digits: Int)
        /// Blanks after the size: allowed only before a ";" (the BWS of RFC 9112 §7.1.1), never before CRLF.
        case sizeBlank(value: Int64)
        case sizeExtension(value: Int64)
        case sizeLF(value: Int64)
        case data(remaining: Int64)
        case dataCR
        case dataLF
        case trailerLineStart
        case trailerLine
        case trailerLF(lineWasEmpty: Bool)
        case done
    }

    private var state: State = .size(value: 0, digits: 0)
    private var trailerBytes = 0
    /// The largest trailer section accepted; trailers are read and discarded.
    public static let maxTrailerBytes = 8 * 1024

    public init() {}

    /// Whether the terminating chunk and trailers have been read.
    public var isComplete: Bool {
        if case .done = state { return true }
        return false
    }

    /// Consumes bytes from `index` on and returns the next body slice or the end; nil when `bytes` ran out first.
    /// `index` advances past everything consumed.
    public mutating func next(_ bytes: UnsafeRawBufferPointer, _ index: inout Int) throws(HTTPParseError) -> Output? {
        while index < bytes.count {
            let byte = bytes[index]
            switch state {
            case .size(let value, let digits):
                if let digit = ASCII.hexValue(byte) {
                    guard digits < 15 else { throw .badChunk }
                    state = .size(value: value << 4 | Int64(digit), digits: digits + 1)
                } else if digits == 0 {
                    throw .badChunk
                } else if byte == ASCII.cr {
                    state = .sizeLF(value: value)
                } else if byte == UInt8(ascii: ";") {
                    state = .sizeExtension(value: value)
                } else if byte == ASCII.space || byte == ASCII.tab {
                    state = .sizeBlank(value: value)
                } else {
                    throw .badChunk
                }
                index += 1
            case .sizeBlank(let value):
                // "5 ;ext" is a chunk extension after bad whitespace; "5 \r\n" is a size with trailing
                // whitespace, which some parsers read as 5 and others reject: ambiguous, so 400 (jester-http(7)).
                if byte == UInt8(ascii: ";") {
                    state = .sizeExtension(value: value)
                } else if byte != ASCII.space && byte != ASCII.tab {
                    throw .badChunk
                }
                index += 1
            case .sizeExtension(let value):
                if byte == ASCII.cr {
                    state = .sizeLF(value: value)
                } else if !ASCII.isFieldValueByte(byte) {
                    throw .badChunk
                }
                index += 1
            case .sizeLF(let value):
                guard byte == ASCII.lf else { throw .badChunk }
                index += 1
                state = value == 0 ? .trailerLineStart : .data(remaining: value)
            case .data(let remaining):
                let available = Int64(bytes.count - index)
                let taken = Int(min(available, remaining))
                let range = index..<(index + taken)
                index += taken
                state = remaining == Int64(taken) ? .dataCR : .data(remaining: remaining - Int64(taken))
                return .data(range)
            case .dataCR:
                guard byte == ASCII.cr else { throw .badChunk }
                index += 1
                state = .dataLF
            case .dataLF:
                guard byte == ASCII.lf else { throw .badChunk }
                index += 1
                state = .size(value: 0, digits: 0)
            case .trailerLineStart:
                if byte == ASCII.cr {
                    state = .trailerLF(lineWasEmpty: true)
                } else if ASCII.isToken(byte) {
                    state = .trailerLine
                } else {
                    throw .badChunk
                }
                try countTrailerByte()
                index += 1
            case .trailerLine:
                if byte == ASCII.cr {
                    state = .trailerLF(lineWasEmpty: false)
                } else if !ASCII.isFieldValueByte(byte) && byte != ASCII.colon {
                    throw .badChunk
                }
                try countTrailerByte()
                index += 1
            case .trailerLF(let lineWasEmpty):
                guard byte == ASCII.lf else { throw .badChunk }
                index += 1
                if lineWasEmpty {
                    state = .done
                    return .end
                }
                state = .trailerLineStart
            case .done:
                return nil
            }
        }
        return nil
    }

    private mutating func countTrailerByte() throws(HTTPParseError) {
        trailerBytes += 1
        if trailerBytes > Self.maxTrailerBytes { throw .badChunk }
    }
}
