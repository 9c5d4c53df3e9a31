// SPDX-License-Identifier: Apache-2.0

/// Just enough of TOML (v1.0) to read a few keys out of a configuration file without the configuration loader:
/// `jesterctl -c FILE` needs `[server] control_socket` and `include`, and linking the loader (TOML library,
/// Foundation) would triple jesterctl's size.
///
/// It reads every construct TOML has (tables, array tables, dotted and quoted keys, the four kinds of string,
/// arrays and inline tables across lines), so a key is never found inside a string or another table; values it
/// does not need (numbers, dates, booleans) are skipped unread. It does not validate what it skips: the master
/// does that, and jesterctl should still find the socket of a master whose file has since been broken.
struct TOMLScanner {
    /// A value, as far as it matters here.
    indirect enum Value: Equatable {
        case string(String)
        case array([Value])
        /// An inline table's members, each under its (dotted) key.
        case table([(key: [String], value: Value)])
        /// A number, date, time or boolean.
        case other

        static func == (lhs: Value, rhs: Value) -> Bool {
            switch (lhs, rhs) {
            case (.string(let a), .string(let b)): a == b
            case (.array(let a), .array(let b)): a == b
            case (.table(let a), .table(let b)): a.map(\.key) == b.map(\.key) && a.map(\.value) == b.map(\.value)
            case (.other, .other): true
            default: false
            }
        }
    }

    /// Where the text stops being TOML this scanner can follow.
    struct SyntaxError: Error, Equatable {
        var line: Int
        var column: Int
        var message: String
    }

    private let bytes: [UInt8]
    private var offset = 0

    init(_ text: String) {
        bytes = Array(text.utf8)
    }

    /// Every key/value pair of the document with its full path (`["server", "control_socket"]`) and line.
    static func pairs(in text: String) throws(SyntaxError) -> [(path: [String], value: Value, line: Int)] {
        var scanner = TOMLScanner(text)
        return try scanner.document()
    }

    private mutating func document() throws(SyntaxError) -> [(path: [String], value: Value, line: Int)] {
        var pairs: [(path: [String], value: Value, line: Int)] = []
        var table: [String] = []
        while true {
            skipBlank(newlines: true)
            guard let byte = peek() else { return pairs }
            if byte == UInt8(ascii: "[") {
                offset += 1
                let arrayTable = peek() == UInt8(ascii: "[")
                if arrayTable { offset += 1 }
                skipBlank(newlines: false)
                table = try key()
                skipBlank(newlines: false)
                try expect("]")
                if arrayTable { try expect("]") }
            } else {
                let line = position().line
                let key = try key()
                skipBlank(newlines: false)
                try expect("=")
                skipBlank(newlines: false)
                let value = try value()
                pairs.append((table + key, value, line))
            }
            try endOfLine()
        }
    }

    // MARK: Pieces

    private func peek(_ ahead: Int = 0) -> UInt8? {
        offset + ahead < bytes.count ? bytes[offset + ahead] : nil
    }

    private func position() -> (line: Int, column: Int) {
        var line = 1
        var lineStart = 0
        for index in 0..<min(offset, bytes.count) where bytes[index] == UInt8(ascii: "\n") {
            line += 1
            lineStart = index + 1
        }
        return (line, offset - lineStart + 1)
    }

    private func error(_ message: String) -> SyntaxError {
        let (line, column) = position()
        return SyntaxError(line: line, column: column, message: message)
    }

    private mutating func expect(_ character: Unicode.Scalar) throws(SyntaxError) {
        guard peek() == UInt8(ascii: character) else { throw error("expected '\(character)'") }
        offset += 1
    }

    /// Spaces and tabs, comments, and with `newlines` line ends too.
    private mutating func skipBlank(newlines: Bool) {
        while let byte = peek() {
            switch byte {
            case UInt8(ascii: " "), UInt8(ascii: "\t"): offset += 1
            case UInt8(ascii: "\n") where newlines, UInt8(ascii: "\r") where newlines: offset += 1
            case UInt8(ascii: "#"):
                while let next = peek(), next != UInt8(ascii: "\n") { offset += 1 }
            default: return
            }
        }
    }

    /// After a header or a pair: nothing but a comment before the line ends.
    private mutating func endOfLine() throws(SyntaxError) {
        skipBlank(newlines: false)
        guard let byte = peek() else { return }
        guard byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") else {
            throw error("expected the end of the line")
        }
    }

    /// A dotted key: bare (`A-Za-z0-9_-`) or quoted parts, with blanks around the dots.
    private mutating func key() throws(SyntaxError) -> [String] {
        var parts: [String] = []
        while true {
            skipBlank(newlines: false)
            switch peek() {
            case UInt8(ascii: "\"")?, UInt8(ascii: "'")?:
                parts.append(try string())
            default:
                let start = offset
                while let byte = peek(), Self.isBareKey(byte) { offset += 1 }
                guard offset > start else { throw error("expected a key") }
                parts.append(String(decoding: bytes[start..<offset], as: UTF8.self))
            }
            skipBlank(newlines: false)
            guard peek() == UInt8(ascii: ".") else { return parts }
            offset += 1
        }
    }

    private static func isBareKey(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
            true
        default: false
        }
    }

    private mutating func value() throws(SyntaxError) -> Value {
        switch peek() {
        case UInt8(ascii: "\"")?, UInt8(ascii: "'")?:
            return .string(try string())
        case UInt8(ascii: "[")?:
            offset += 1
            var elements: [Value] = []
            while true {
                skipBlank(newlines: true)
                if peek() == UInt8(ascii: "]") {
                    offset += 1
                    return .array(elements)
                }
                elements.append(try value())
                skipBlank(newlines: true)
                if peek() == UInt8(ascii: ",") {
                    offset += 1
                } else {
                    try expect("]")
                    return .array(elements)
                }
            }
        case UInt8(ascii: "{")?:
            offset += 1
            var members: [(key: [String], value: Value)] = []
            while true {
                skipBlank(newlines: true)
                if peek() == UInt8(ascii: "}") {
                    offset += 1
                    return .table(members)
                }
                let key = try key()
                try expect("=")
                skipBlank(newlines: false)
                members.append((key, try value()))
                skipBlank(newlines: true)
                if peek() == UInt8(ascii: ",") {
                    offset += 1
                } else {
                    try expect("}")
                    return .table(members)
                }
            }
        case nil, UInt8(ascii: "\n")?, UInt8(ascii: "\r")?, UInt8(ascii: "#")?, UInt8(ascii: ",")?:
            throw error("expected a value")
        default:
            // A number, boolean, date or time (which may hold one space: `1979-05-27 07:32:00`): up to where a
            // value ends.
            while let byte = peek(), ![UInt8(ascii: ","), UInt8(ascii: "]"), UInt8(ascii: "}"), UInt8(ascii: "#"),
                UInt8(ascii: "\n"), UInt8(ascii: "\r")].contains(byte)
            {
                offset += 1
            }
            return .other
        }
    }

    /// Any of the four kinds of string, escapes resolved.
    private mutating func string() throws(SyntaxError) -> String {
        let quote = bytes[offset]
        let multiline = peek(1) == quote && peek(2) == quote
        offset += multiline ? 3 : 1
        // A newline right after the opening delimiter is trimmed (TOML §String).
        if multiline {
            if peek() == UInt8(ascii: "\r"), peek(1) == UInt8(ascii: "\n") { offset += 1 }
            if peek() == UInt8(ascii: "\n") { offset += 1 }
        }
        var result: [UInt8] = []
        while true {
            guard let byte = peek() else { throw error("unterminated string") }
            if byte == quote {
                if !multiline {
                    offset += 1
                    break
                }
                if peek(1) == quote, peek(2) == quote {
                    // Up to two more quotes may close the string's content (`""""` ends with one quote).
                    var extra = 0
                    while extra < 2, peek(3 + extra) == quote { extra += 1 }
                    result += Array(repeating: quote, count: extra)
                    offset += 3 + extra
                    break
                }
            }
            if byte == UInt8(ascii: "\n"), !multiline { throw error("a newline in a single-line string") }
            if byte == UInt8(ascii: "\\"), quote == UInt8(ascii: "\"") {
                offset += 1
                try escape(into: &result, multiline: multiline)
                continue
            }
            result.append(byte)
            offset += 1
        }
        return String(decoding: result, as: UTF8.self)
    }

    private mutating func escape(into result: inout [UInt8], multiline: Bool) throws(SyntaxError) {
        guard let byte = peek() else { throw error("unterminated string") }
        offset += 1
        switch byte {
        case UInt8(ascii: "b"): result.append(0x08)
        case UInt8(ascii: "t"): result.append(0x09)
        case UInt8(ascii: "n"): result.append(0x0A)
        case UInt8(ascii: "f"): result.append(0x0C)
        case UInt8(ascii: "r"): result.append(0x0D)
        case UInt8(ascii: "e"): result.append(0x1B)
        case UInt8(ascii: "\""): result.append(byte)
        case UInt8(ascii: "\\"): result.append(byte)
        case UInt8(ascii: "u"), UInt8(ascii: "U"):
            let digits = byte == UInt8(ascii: "u") ? 4 : 8
            var value: UInt32 = 0
            for _ in 0..<digits {
                guard let digit = peek().flatMap({ Self.hexValue($0) }) else { throw error("a bad unicode escape") }
                value = value << 4 | UInt32(digit)
                offset += 1
            }
            guard let scalar = Unicode.Scalar(value) else { throw error("a bad unicode escape") }
            result += Array(String(Character(scalar)).utf8)
        case UInt8(ascii: " ") where multiline, UInt8(ascii: "\t") where multiline,
            UInt8(ascii: "\r") where multiline, UInt8(ascii: "\n") where multiline:
            // A line-ending backslash: the line end and the blanks after it are dropped.
            offset -= 1
            while let next = peek(), [UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"),
                UInt8(ascii: "\n")].contains(next)
            {
                offset += 1
            }
        default:
            throw error("an unknown escape")
        }
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
