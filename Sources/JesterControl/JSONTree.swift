// SPDX-License-Identifier: Apache-2.0

/// A parsed JSON document (RFC 8259), what `ControlJSONDecoder` reads Codable values from.
///
/// Jester's own, rather than Foundation's: jesterctl speaks only the control protocol's JSON, and Foundation's
/// codec with the collections it brings was a third of jesterctl's size (bench/PERFORMANCE.md). Numbers keep
/// their text, so a `UInt64` correlation id or an `Int` survives exactly, not through a `Double`.
public enum JSONTree: Sendable, Equatable {
    case null
    case bool(Bool)
    /// The number as written (already checked to be a JSON number).
    case number(String)
    case string(String)
    case array([JSONTree])
    /// Members by name; a name given twice is refused when parsing, since two peers could read it differently.
    case object([String: JSONTree])

    /// Why bytes are not a JSON document: what was wrong and at which byte offset.
    public struct SyntaxError: Error, Equatable, CustomStringConvertible {
        public var offset: Int
        public var reason: String

        public init(offset: Int, reason: String) {
            self.offset = offset
            self.reason = reason
        }

        public var description: String { "\(reason) at byte \(offset)" }
    }

    /// The deepest nesting accepted (Foundation's limit too): a frame of `[[[[…` cannot exhaust the stack.
    public static let maxDepth = 512

    /// Parses one document that fills `bytes` (whitespace around it allowed, nothing else).
    public static func parse(_ bytes: [UInt8]) throws(SyntaxError) -> JSONTree {
        try bytes.withUnsafeBufferPointer { buffer throws(SyntaxError) in
            var parser = JSONParser(bytes: buffer)
            parser.skipWhitespace()
            let value = try parser.value(depth: 0)
            parser.skipWhitespace()
            guard parser.offset == buffer.count else { throw parser.error("data after the JSON value") }
            return value
        }
    }
}

/// A strict recursive-descent parser over UTF-8 bytes: no comments, trailing commas, leading zeros, bare
/// control characters in strings, unpaired surrogates or invalid UTF-8.
struct JSONParser {
    let bytes: UnsafeBufferPointer<UInt8>
    var offset = 0

    init(bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    func error(_ reason: String) -> JSONTree.SyntaxError {
        JSONTree.SyntaxError(offset: offset, reason: reason)
    }

    /// RFC 8259 §2: space, tab, line feed, carriage return.
    mutating func skipWhitespace() {
        while offset < bytes.count {
            switch bytes[offset] {
            case 0x20, 0x09, 0x0A, 0x0D: offset += 1
            default: return
            }
        }
    }

    mutating func value(depth: Int) throws(JSONTree.SyntaxError) -> JSONTree {
        guard offset < bytes.count else { throw error("unexpected end of JSON") }
        switch bytes[offset] {
        case UInt8(ascii: "{"): return try object(depth: depth + 1)
        case UInt8(ascii: "["): return try array(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
        default: throw error("unexpected character")
        }
    }

    mutating func literal(_ word: StaticString) throws(JSONTree.SyntaxError) {
        let count = word.utf8CodeUnitCount
        guard bytes.count - offset >= count,
            (0..<count).allSatisfy({ bytes[offset + $0] == word.utf8Start[$0] })
        else { throw error("unexpected character") }
        offset += count
    }

    mutating func object(depth: Int) throws(JSONTree.SyntaxError) -> JSONTree {
        guard depth <= JSONTree.maxDepth else { throw error("nested too deeply") }
        offset += 1
        var members: [String: JSONTree] = [:]
        skipWhitespace()
        if offset < bytes.count, bytes[offset] == UInt8(ascii: "}") {
            offset += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard offset < bytes.count, bytes[offset] == UInt8(ascii: "\"") else {
                throw error("expected a member name")
            }
            let nameOffset = offset
            let name = try string()
            skipWhitespace()
            guard offset < bytes.count, bytes[offset] == UInt8(ascii: ":") else { throw error("expected ':'") }
            offset += 1
            skipWhitespace()
            let member = try value(depth: depth)
            guard members.updateValue(member, forKey: name) == nil else {
                throw JSONTree.SyntaxError(offset: nameOffset, reason: "member \"\(name)\" given twice")
            }
            skipWhitespace()
            guard offset < bytes.count else { throw error("unexpected end of JSON") }
            if bytes[offset] == UInt8(ascii: ",") {
                offset += 1
                continue
            }
            guard bytes[offset] == UInt8(ascii: "}") else { throw error("expected ',' or '}'") }
            offset += 1
            return .object(members)
        }
    }

    mutating func array(depth: Int) throws(JSONTree.SyntaxError) -> JSONTree {
        guard depth <= JSONTree.maxDepth else { throw error("nested too deeply") }
        offset += 1
        var elements: [JSONTree] = []
        skipWhitespace()
        if offset < bytes.count, bytes[offset] == UInt8(ascii: "]") {
            offset += 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try value(depth: depth))
            skipWhitespace()
            guard offset < bytes.count else { throw error("unexpected end of JSON") }
            if bytes[offset] == UInt8(ascii: ",") {
                offset += 1
                continue
            }
            guard bytes[offset] == UInt8(ascii: "]") else { throw error("expected ',' or ']'") }
            offset += 1
            return .array(elements)
        }
    }

    /// RFC 8259 §6: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, returned as written.
    mutating func number() throws(JSONTree.SyntaxError) -> String {
        let start = offset
        if bytes[offset] == UInt8(ascii: "-") { offset += 1 }
        guard offset < bytes.count, isDigit(bytes[offset]) else { throw error("expected a digit") }
        if bytes[offset] == UInt8(ascii: "0") {
            offset += 1
            if offset < bytes.count, isDigit(bytes[offset]) {
                throw JSONTree.SyntaxError(offset: start, reason: "a number with a leading zero")
            }
        } else {
            skipDigits()
        }
        if offset < bytes.count, bytes[offset] == UInt8(ascii: ".") {
            offset += 1
            guard offset < bytes.count, isDigit(bytes[offset]) else { throw error("expected a digit after '.'") }
            skipDigits()
        }
        if offset < bytes.count, bytes[offset] | 0x20 == UInt8(ascii: "e") {
            offset += 1
            if offset < bytes.count, bytes[offset] == UInt8(ascii: "+") || bytes[offset] == UInt8(ascii: "-") {
                offset += 1
            }
            guard offset < bytes.count, isDigit(bytes[offset]) else { throw error("expected an exponent") }
            skipDigits()
        }
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<offset]), as: UTF8.self)
    }

    private func isDigit(_ byte: UInt8) -> Bool { byte &- UInt8(ascii: "0") < 10 }

    private mutating func skipDigits() {
        while offset < bytes.count, isDigit(bytes[offset]) { offset += 1 }
    }

    /// A string's contents, escapes resolved. Runs without escapes are copied whole (checked as UTF-8 once).
    mutating func string() throws(JSONTree.SyntaxError) -> String {
        offset += 1
        var result = ""
        var runStart = offset
        while true {
            guard offset < bytes.count else { throw error("unterminated string") }
            let byte = bytes[offset]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                try appendRun(from: runStart, to: &result)
                offset += 1
                if byte == UInt8(ascii: "\"") { return result }
                try escape(into: &result)
                runStart = offset
            } else if byte < 0x20 {
                throw error("a control character in a string")
            } else {
                offset += 1
            }
        }
    }

    private func appendRun(from start: Int, to result: inout String) throws(JSONTree.SyntaxError) {
        guard start < offset else { return }
        guard let run = String(validating: UnsafeBufferPointer(rebasing: bytes[start..<offset]), as: UTF8.self) else {
            throw JSONTree.SyntaxError(offset: start, reason: "a string that is not valid UTF-8")
        }
        result += run
    }

    /// After a backslash (RFC 8259 §7).
    private mutating func escape(into result: inout String) throws(JSONTree.SyntaxError) {
        guard offset < bytes.count else { throw error("unterminated string") }
        let byte = bytes[offset]
        offset += 1
        switch byte {
        case UInt8(ascii: "\""): result += "\""
        case UInt8(ascii: "\\"): result += "\\"
        case UInt8(ascii: "/"): result += "/"
        case UInt8(ascii: "b"): result += "\u{08}"
        case UInt8(ascii: "f"): result += "\u{0C}"
        case UInt8(ascii: "n"): result += "\n"
        case UInt8(ascii: "r"): result += "\r"
        case UInt8(ascii: "t"): result += "\t"
        case UInt8(ascii: "u"):
            let unit = try hexQuad()
            if UTF16.isLeadSurrogate(unit) {
                // A character outside the BMP is a surrogate pair, both escaped.
                guard bytes.count - offset >= 2, bytes[offset] == UInt8(ascii: "\\"),
                    bytes[offset + 1] == UInt8(ascii: "u")
                else { throw error("an unpaired surrogate") }
                offset += 2
                let trail = try hexQuad()
                guard UTF16.isTrailSurrogate(trail) else { throw error("an unpaired surrogate") }
                let scalar = 0x10000 + (UInt32(unit - 0xD800) << 10) + UInt32(trail - 0xDC00)
                result.unicodeScalars.append(Unicode.Scalar(scalar)!)
            } else {
                guard let scalar = Unicode.Scalar(unit) else { throw error("an unpaired surrogate") }
                result.unicodeScalars.append(scalar)
            }
        default:
            throw error("an unknown escape")
        }
    }

    private mutating func hexQuad() throws(JSONTree.SyntaxError) -> UInt16 {
        guard bytes.count - offset >= 4 else { throw error("a short \\u escape") }
        var value: UInt16 = 0
        for _ in 0..<4 {
            let byte = bytes[offset]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw error("a bad \\u escape")
            }
            value = value << 4 | UInt16(digit)
            offset += 1
        }
        return value
    }
}
