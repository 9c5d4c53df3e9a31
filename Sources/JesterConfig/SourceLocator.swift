// SPDX-License-Identifier: Apache-2.0
/// A path to a value in a TOML document: table keys, and array positions written as `#0`, `#1`, ...
public typealias ConfigPath = [String]

/// Finds where each key and array element of a TOML document was written.
///
/// TOMLKit reports line and column for syntax errors only; its values carry no positions. Every later error
/// (an unknown key, a wrong type, a route naming a missing upstream) must still point at file:line:column, so this
/// scanner walks the same text once, tracking table headers, dotted and quoted keys, inline tables and arrays, and
/// records the position of every path. It assumes the text already parsed as valid TOML, so it is lenient:
/// anything it does not understand it skips.
struct SourceLocator {
    private(set) var positions: [ConfigPath: (line: Int, column: Int)] = [:]
    /// A path written a second time (a key set twice, a table header repeated, a value turned into a table),
    /// with both places: valid TOML has none, so these only name the earlier place in a syntax error.
    private(set) var redefinitions: [Redefinition] = []
    private let bytes: [UInt8]
    private var index = 0
    private var line = 1
    private var lineStart = 0
    private var arrayTableCounts: [ConfigPath: Int] = [:]

    init(text: String) {
        bytes = Array(text.utf8)
        scanDocument()
    }

    /// The position of `path`, or of its nearest recorded ancestor, or the top of the file.
    func position(of path: ConfigPath) -> (line: Int, column: Int) {
        var path = path
        while true {
            if let position = positions[path] { return position }
            if path.isEmpty { return (1, 1) }
            path.removeLast()
        }
    }

    /// Where a path was first written and where it was written again.
    struct Redefinition {
        var path: ConfigPath
        var first: (line: Int, column: Int)
        var second: (line: Int, column: Int)
    }

    private var column: Int { index - lineStart + 1 }

    /// Records where `path` is written, noting a second definition (whose place then stands for the path).
    private mutating func define(_ path: ConfigPath, at position: (line: Int, column: Int)) {
        if let first = positions[path] {
            redefinitions.append(Redefinition(path: path, first: first, second: position))
        }
        positions[path] = position
    }

    private func peek(_ offset: Int = 0) -> UInt8? {
        index + offset < bytes.count ? bytes[index + offset] : nil
    }

    private mutating func advance() {
        if bytes[index] == ASCII.lf {
            line += 1
            lineStart = index + 1
        }
        index += 1
    }

    private mutating func skipWhitespace(newlines: Bool) {
        while let byte = peek() {
            if byte == ASCII.space || byte == ASCII.tab || byte == ASCII.cr || (newlines && byte == ASCII.lf) {
                advance()
            } else if byte == UInt8(ascii: "#") {
                while let next = peek(), next != ASCII.lf { advance() }
            } else {
                return
            }
        }
    }

    private mutating func scanDocument() {
        var table: ConfigPath = []
        positions[[]] = (1, 1)
        while index < bytes.count {
            skipWhitespace(newlines: true)
            guard let byte = peek() else { return }
            if byte == UInt8(ascii: "[") {
                let headerLine = line
                let headerColumn = column
                let isArray = peek(1) == UInt8(ascii: "[")
                advance()
                if isArray { advance() }
                skipWhitespace(newlines: false)
                var path = scanKey()
                if isArray {
                    let position = arrayTableCounts[path, default: 0]
                    arrayTableCounts[path] = position + 1
                    if positions[path] == nil {
                        positions[path] = (headerLine, headerColumn)
                    } else if position == 0 {
                        define(path, at: (headerLine, headerColumn))  // a plain key or table made an array of tables
                    }
                    path.append("#\(position)")
                }
                table = resolveArrayTables(path)
                define(table, at: (headerLine, headerColumn))
                skipToEndOfLine()
            } else {
                scanKeyValue(base: table)
                skipToEndOfLine()
            }
        }
    }

    /// `[a.b]` after `[[a]]` refers to the latest element of `a`: rewrite each prefix that names an array of
    /// tables to its latest element.
    private func resolveArrayTables(_ path: ConfigPath) -> ConfigPath {
        var resolved: ConfigPath = []
        for (offset, component) in path.enumerated() {
            resolved.append(component)
            let isLast = offset == path.count - 1
            if !isLast, !component.hasPrefix("#"), let count = arrayTableCounts[resolved], !path[offset + 1].hasPrefix("#") {
                resolved.append("#\(count - 1)")
            }
        }
        return resolved
    }

    private mutating func skipToEndOfLine() {
        while let byte = peek(), byte != ASCII.lf { advance() }
    }

    /// A dotted key of bare or quoted parts.
    private mutating func scanKey() -> ConfigPath {
        var parts: ConfigPath = []
        while peek() != nil {
            skipWhitespace(newlines: false)
            guard let current = peek() else { break }
            if current == UInt8(ascii: "\"") || current == UInt8(ascii: "'") {
                parts.append(scanQuotedKey(quote: current))
            } else {
                var part: [UInt8] = []
                while let next = peek(), ASCII.isToken(next) || next == UInt8(ascii: "_") || next == UInt8(ascii: "-")
                {
                    if next == UInt8(ascii: ".") { break }
                    part.append(next)
                    advance()
                }
                if part.isEmpty { break }
                parts.append(String(decoding: part, as: UTF8.self))
            }
            skipWhitespace(newlines: false)
            guard peek() == UInt8(ascii: ".") else { break }
            advance()
        }
        skipWhitespace(newlines: false)
        if peek() == UInt8(ascii: "]") { advance() }
        if peek() == UInt8(ascii: "]") { advance() }
        return parts
    }

    private mutating func scanQuotedKey(quote: UInt8) -> String {
        advance()
        var part: [UInt8] = []
        while let byte = peek(), byte != quote, byte != ASCII.lf {
            if byte == UInt8(ascii: "\\"), quote == UInt8(ascii: "\""), let escaped = peek(1) {
                advance()
                part.append(escaped)
            } else {
                part.append(byte)
            }
            advance()
        }
        if peek() == quote { advance() }
        return String(decoding: part, as: UTF8.self)
    }

    private mutating func scanKeyValue(base: ConfigPath) {
        let keyLine = line
        let keyColumn = column
        let key = scanKey()
        guard !key.isEmpty else {
            skipToEndOfLine()
            return
        }
        let path = base + key
        define(path, at: (keyLine, keyColumn))
        skipWhitespace(newlines: false)
        guard peek() == UInt8(ascii: "=") else { return }
        advance()
        skipWhitespace(newlines: false)
        scanValue(path: path)
    }

    private mutating func scanValue(path: ConfigPath) {
        guard let byte = peek() else { return }
        switch byte {
        case UInt8(ascii: "{"):
            advance()
            while true {
                skipWhitespace(newlines: true)
                guard let next = peek() else { return }
                if next == UInt8(ascii: "}") {
                    advance()
                    return
                }
                if next == UInt8(ascii: ",") {
                    advance()
                    continue
                }
                let before = index
                scanKeyValue(base: path)
                skipIfStuck(since: before)
            }
        case UInt8(ascii: "["):
            advance()
            var element = 0
            while true {
                skipWhitespace(newlines: true)
                guard let next = peek() else { return }
                if next == UInt8(ascii: "]") {
                    advance()
                    return
                }
                if next == UInt8(ascii: ",") {
                    advance()
                    continue
                }
                let elementPath = path + ["#\(element)"]
                positions[elementPath] = (line, column)
                let before = index
                scanValue(path: elementPath)
                skipIfStuck(since: before)
                element += 1
            }
        case UInt8(ascii: "\""), UInt8(ascii: "'"):
            scanString(quote: byte)
        default:
            while let next = peek(), next != ASCII.lf, next != UInt8(ascii: ","), next != UInt8(ascii: "]"),
                next != UInt8(ascii: "}"), next != UInt8(ascii: "#")
            {
                advance()
            }
        }
    }

    /// Malformed text (a comment or a stray "}" inside an array, an unclosed string) can leave a scan where it
    /// started; moving on guarantees every loop ends. TOMLKit reports the actual error; the locator only has to
    /// terminate and stay roughly right. (Found by Tests/Fuzz: before this, such input looped forever.)
    private mutating func skipIfStuck(since before: Int) {
        guard index == before, let byte = peek() else { return }
        if byte == UInt8(ascii: "#") { skipToEndOfLine() } else { advance() }
    }

    private mutating func scanString(quote: UInt8) {
        let isMultiline = peek(1) == quote && peek(2) == quote
        let delimiterLength = isMultiline ? 3 : 1
        for _ in 0..<delimiterLength { advance() }
        while let byte = peek() {
            if byte == UInt8(ascii: "\\"), quote == UInt8(ascii: "\"") {
                advance()
                if peek() != nil { advance() }
                continue
            }
            if byte == quote {
                if !isMultiline {
                    advance()
                    return
                }
                if peek(1) == quote, peek(2) == quote {
                    advance()
                    advance()
                    advance()
                    // Up to two more quotes may belong to the content ("""a"""" is valid TOML).
                    while peek() == quote { advance() }
                    return
                }
            }
            if byte == ASCII.lf, !isMultiline { return }
            advance()
        }
    }
}

/// The few byte tests the locator shares with the HTTP parser, kept local so configuration stays independent of it.
private enum ASCII {
    static let cr: UInt8 = 0x0D
    static let lf: UInt8 = 0x0A
    static let space: UInt8 = 0x20
    static let tab: UInt8 = 0x09

    /// Bytes of a bare TOML key: A-Z a-z 0-9 _ -.
    static func isToken(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
            || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
    }
}
