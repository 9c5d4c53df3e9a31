// SPDX-License-Identifier: Apache-2.0

/// One RESP2 value: what Redis answers (https://redis.io/docs/latest/develop/reference/protocol-spec/).
///
/// Only RESP2 is spoken: Jester never sends `HELLO 3`, so a RESP3 type byte from the server is a protocol error.
public enum RESPValue: Sendable, Equatable {
    /// `+OK\r\n`: a short status line.
    case simpleString(String)
    /// `-ERR message\r\n`: a command failed (the connection stays usable). The first word is the error kind
    /// (`NOSCRIPT`, `WRONGTYPE`, ...).
    case error(String)
    /// `:42\r\n`.
    case integer(Int64)
    /// `$3\r\nfoo\r\n`; nil for the null bulk string `$-1\r\n` (a missing key).
    case bulkString([UInt8]?)
    /// `*2\r\n...`; nil for the null array `*-1\r\n`. Elements may be arrays themselves.
    case array([RESPValue]?)

    /// The error's kind (its first word), for replies that are errors: `NOSCRIPT` decides a script reload.
    public var errorKind: Substring? {
        guard case .error(let message) = self else { return nil }
        return message.split(separator: " ", maxSplits: 1).first ?? ""
    }
}

/// Why a byte stream is not RESP2 (or is larger than the decoder accepts): the connection is out of step and
/// must be closed, since no later reply can be matched to its command any more.
public struct RESPError: Error, Sendable, Equatable {
    /// What is wrong, stable for tests and logs.
    public enum Code: Sendable, Equatable {
        /// A type byte other than `+ - : $ *`.
        case unknownType
        /// A line that does not end in CRLF where one must, or a bulk string without its closing CRLF.
        case malformedLine
        /// An integer or a length that is not an optional sign and decimal digits, or overflows 64 bits.
        case malformedInteger
        /// A simple string, error or integer line longer than `Limits.maxLineLength`.
        case lineTooLong
        /// A bulk string longer than `Limits.maxBulkLength`.
        case bulkTooLong
        /// An array with more elements than `Limits.maxArrayCount`.
        case arrayTooLong
        /// Arrays nested deeper than `Limits.maxDepth`.
        case tooDeep
        /// One incomplete value holds more than `Limits.maxBufferedBytes` (a reply that never ends).
        case valueTooLarge
    }

    public let code: Code
    /// The offset in the stream (bytes fed since the decoder was made) where the fault was found.
    public let offset: Int

    public init(_ code: Code, offset: Int) {
        self.code = code
        self.offset = offset
    }

    /// A short description for logs.
    public var message: String {
        switch code {
        case .unknownType: return "unknown RESP type byte at offset \(offset)"
        case .malformedLine: return "missing CRLF at offset \(offset)"
        case .malformedInteger: return "malformed integer or length at offset \(offset)"
        case .lineTooLong: return "RESP line too long at offset \(offset)"
        case .bulkTooLong: return "RESP bulk string too long at offset \(offset)"
        case .arrayTooLong: return "RESP array too long at offset \(offset)"
        case .tooDeep: return "RESP arrays nested too deep at offset \(offset)"
        case .valueTooLarge: return "RESP value larger than the decoder accepts at offset \(offset)"
        }
    }
}

/// Encodes commands the way every Redis client sends them: an array of bulk strings (binary safe, no quoting).
public enum RESPEncoder {
    /// `["GET", "k"]` → `*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`.
    public static func command(_ arguments: [String]) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(16 + arguments.reduce(0) { $0 + $1.utf8.count + 16 })
        appendCommand(arguments, to: &output)
        return output
    }

    /// Appends one command to `output`, so pipelined commands can share one write.
    public static func appendCommand(_ arguments: [String], to output: inout [UInt8]) {
        appendHeader(UInt8(ascii: "*"), arguments.count, to: &output)
        for argument in arguments {
            appendHeader(UInt8(ascii: "$"), argument.utf8.count, to: &output)
            output.append(contentsOf: argument.utf8)
            output.append(contentsOf: [13, 10])
        }
    }

    private static func appendHeader(_ type: UInt8, _ count: Int, to output: inout [UInt8]) {
        output.append(type)
        output.append(contentsOf: String(count).utf8)
        output.append(contentsOf: [13, 10])
    }
}

/// An incremental RESP2 decoder: bytes go in as they arrive, in pieces of any size; complete values come out in
/// order.
///
/// An incomplete value is parsed again from its start when more bytes arrive, rather than saving a parse stack:
/// replies to rate-limit scripts are a few dozen bytes, and `Limits.maxBufferedBytes` bounds the rescan. Every
/// length the server sends is checked against `Limits` before anything is reserved for it, so a confused or
/// hostile server cannot make a worker allocate without bound. After an error the decoder stays failed.
public struct RESPDecoder: Sendable {
    /// Bounds on what one reply may hold.
    public struct Limits: Sendable, Equatable {
        /// Longest bulk string, in bytes.
        public var maxBulkLength: Int
        /// Most elements of one array.
        public var maxArrayCount: Int
        /// Deepest nesting of arrays (1: an array of scalars).
        public var maxDepth: Int
        /// Longest simple string, error or integer line, CRLF excluded.
        public var maxLineLength: Int
        /// Most bytes one incomplete value may hold before it is given up.
        public var maxBufferedBytes: Int

        /// Generous for the replies Jester asks for (scripts answering four integers, `INFO`), small for a worker.
        public init(
            maxBulkLength: Int = 1 << 20, maxArrayCount: Int = 1 << 16, maxDepth: Int = 8,
            maxLineLength: Int = 1 << 16, maxBufferedBytes: Int = 4 << 20
        ) {
            self.maxBulkLength = maxBulkLength
            self.maxArrayCount = maxArrayCount
            self.maxDepth = maxDepth
            self.maxLineLength = maxLineLength
            self.maxBufferedBytes = maxBufferedBytes
        }
    }

    public let limits: Limits
    /// Bytes fed and not yet consumed start at `start`; consumed bytes are dropped lazily (see `compact`).
    private var buffer: [UInt8] = []
    private var start = 0
    /// Bytes consumed and dropped before `buffer[0]`, for error offsets.
    private var dropped = 0
    private var failure: RESPError?

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Bytes fed and not yet returned as values.
    public var bufferedBytes: Int { buffer.count - start }

    /// Appends bytes read from the connection.
    public mutating func feed<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        compact()
        buffer.append(contentsOf: bytes)
    }

    /// The next complete value, nil when more bytes are needed. Throws when the stream is not RESP2 or breaks a
    /// limit, and again on every later call.
    public mutating func next() throws(RESPError) -> RESPValue? {
        if let failure { throw failure }
        var index = start
        do throws(RESPError) {
            guard let value = try parseValue(at: &index, depth: 0) else {
                if bufferedBytes > limits.maxBufferedBytes {
                    throw RESPError(.valueTooLarge, offset: dropped + buffer.count)
                }
                return nil
            }
            start = index
            return value
        } catch {
            failure = error
            throw error
        }
    }

    /// Drops consumed bytes when they are most of the buffer, so a long-lived connection's buffer does not grow
    /// and the copy is amortised.
    private mutating func compact() {
        guard start > 0, start >= buffer.count - start else { return }
        buffer.removeFirst(start)
        dropped += start
        start = 0
    }

    // MARK: Parsing

    /// Parses the value at `index`; nil (and `index` unspecified) when the buffer ends inside it.
    private func parseValue(at index: inout Int, depth: Int) throws(RESPError) -> RESPValue? {
        guard index < buffer.count else { return nil }
        let type = buffer[index]
        let typeOffset = index
        index += 1
        switch type {
        case UInt8(ascii: "+"):
            guard let line = try line(at: &index) else { return nil }
            return .simpleString(String(decoding: buffer[line], as: UTF8.self))
        case UInt8(ascii: "-"):
            guard let line = try line(at: &index) else { return nil }
            return .error(String(decoding: buffer[line], as: UTF8.self))
        case UInt8(ascii: ":"):
            guard let line = try line(at: &index) else { return nil }
            return .integer(try integer(line))
        case UInt8(ascii: "$"):
            guard let line = try line(at: &index) else { return nil }
            let length = try integer(line)
            if length == -1 { return .bulkString(nil) }
            guard length >= 0 else { throw RESPError(.malformedInteger, offset: dropped + line.lowerBound) }
            guard length <= limits.maxBulkLength else { throw RESPError(.bulkTooLong, offset: dropped + typeOffset) }
            let end = index + Int(length)
            guard end + 2 <= buffer.count else {
                // The CRLF may be checked already when the body is there and only part of it is.
                if end < buffer.count, buffer[end] != 13 { throw RESPError(.malformedLine, offset: dropped + end) }
                return nil
            }
            guard buffer[end] == 13, buffer[end + 1] == 10 else {
                throw RESPError(.malformedLine, offset: dropped + end)
            }
            let body = Array(buffer[index..<end])
            index = end + 2
            return .bulkString(body)
        case UInt8(ascii: "*"):
            guard let line = try line(at: &index) else { return nil }
            let count = try integer(line)
            if count == -1 { return .array(nil) }
            guard count >= 0 else { throw RESPError(.malformedInteger, offset: dropped + line.lowerBound) }
            guard count <= limits.maxArrayCount else { throw RESPError(.arrayTooLong, offset: dropped + typeOffset) }
            guard count == 0 || depth + 1 <= limits.maxDepth else {
                throw RESPError(.tooDeep, offset: dropped + typeOffset)
            }
            var elements: [RESPValue] = []
            // Reserve only what the bytes present could hold (each element takes at least 3), not what the
            // header claims.
            elements.reserveCapacity(min(Int(count), (buffer.count - index) / 3))
            for _ in 0..<count {
                guard let element = try parseValue(at: &index, depth: depth + 1) else { return nil }
                elements.append(element)
            }
            return .array(elements)
        default:
            throw RESPError(.unknownType, offset: dropped + typeOffset)
        }
    }

    /// The range of the line starting at `index`, CRLF excluded, with `index` moved past the CRLF; nil when the
    /// CRLF has not arrived.
    private func line(at index: inout Int) throws(RESPError) -> Range<Int>? {
        let lineStart = index
        var cursor = index
        let limit = min(buffer.count, lineStart + limits.maxLineLength + 1)
        while cursor < limit {
            if buffer[cursor] == 13 {
                guard cursor + 1 < buffer.count else { return nil }
                guard buffer[cursor + 1] == 10 else { throw RESPError(.malformedLine, offset: dropped + cursor) }
                index = cursor + 2
                return lineStart..<cursor
            }
            if buffer[cursor] == 10 { throw RESPError(.malformedLine, offset: dropped + cursor) }
            cursor += 1
        }
        if cursor - lineStart > limits.maxLineLength { throw RESPError(.lineTooLong, offset: dropped + lineStart) }
        return nil
    }

    /// A RESP integer: an optional `-` (or `+`) and 1 to 19 decimal digits, within Int64.
    private func integer(_ range: Range<Int>) throws(RESPError) -> Int64 {
        var cursor = range.lowerBound
        var negative = false
        if cursor < range.upperBound, buffer[cursor] == UInt8(ascii: "-") || buffer[cursor] == UInt8(ascii: "+") {
            negative = buffer[cursor] == UInt8(ascii: "-")
            cursor += 1
        }
        guard cursor < range.upperBound else { throw RESPError(.malformedInteger, offset: dropped + range.lowerBound) }
        var value: Int64 = 0
        while cursor < range.upperBound {
            let digit = buffer[cursor] &- UInt8(ascii: "0")
            guard digit <= 9 else { throw RESPError(.malformedInteger, offset: dropped + cursor) }
            // Accumulated negatively so Int64.min parses too.
            let (times, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (next, overflow2) = times.subtractingReportingOverflow(Int64(digit))
            guard !overflow1, !overflow2 else { throw RESPError(.malformedInteger, offset: dropped + cursor) }
            value = next
            cursor += 1
        }
        if negative { return value }
        guard value != .min else { throw RESPError(.malformedInteger, offset: dropped + range.lowerBound) }
        return -value
    }
}
