// SPDX-License-Identifier: Apache-2.0
import TOMLKit

/// A TOML value with the place it was written, so every later error can point at file:line:column.
struct ConfigNode {
    enum Value {
        case string(String)
        case integer(Int)
        case float(Double)
        case boolean(Bool)
        case array([ConfigNode])
        case table([String: ConfigNode])
        /// Dates and times, which no Jester key takes.
        case other(String)
    }

    var value: Value
    var location: SourceLocation
    /// The string was written with `${VAR}`: its text came from the environment, where everything is a string,
    /// so an integer key takes its digits (a literal `"2"` is refused).
    var isSubstituted = false

    /// How the value's type is named in messages.
    var typeName: String {
        switch value {
        case .string: return "a string"
        case .integer: return "an integer"
        case .float: return "a float"
        case .boolean: return "a boolean"
        case .array: return "an array"
        case .table: return "a table"
        case .other(let name): return name
        }
    }

    /// Parses one file into a located tree. Syntax errors come from TOMLKit with their position, and are said in
    /// Jester's words where the mistake is a common one (`TOMLSyntaxMessage`).
    static func parse(text: String, file: String) throws(ConfigError) -> ConfigNode {
        if let problem = TOMLPreflight.check(text) {
            throw ConfigError([ConfigDiagnostic(SourceLocation(file: file, line: problem.line, column: problem.column),
                "invalid TOML: \(problem.message)")])
        }
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            let said = TOMLSyntaxMessage(toml: error.description, line: error.source.begin.line,
                column: error.source.begin.column, text: text, file: file)
            let location = SourceLocation(file: file, line: said.line, column: said.column)
            throw ConfigError([ConfigDiagnostic(location, "invalid TOML: \(said.message)")])
        } catch {
            throw ConfigError([ConfigDiagnostic(SourceLocation(file: file, line: 1, column: 1), "invalid TOML: \(error)")])
        }
        let locator = SourceLocator(text: text)
        return convert(table, path: [], file: file, locator: locator)
    }

    private static func convert(
        _ value: any TOMLValueConvertible, path: ConfigPath, file: String, locator: SourceLocator
    ) -> ConfigNode {
        let position = locator.position(of: path)
        let location = SourceLocation(file: file, line: position.line, column: position.column)
        switch value.type {
        case .table:
            var children: [String: ConfigNode] = [:]
            if let table = value.table {
                for key in table.keys {
                    if let child = table[key] {
                        children[key] = convert(child, path: path + [key], file: file, locator: locator)
                    }
                }
            }
            return ConfigNode(value: .table(children), location: location)
        case .array:
            var elements: [ConfigNode] = []
            if let array = value.array {
                for (index, element) in array.enumerated() {
                    elements.append(convert(element, path: path + ["#\(index)"], file: file, locator: locator))
                }
            }
            return ConfigNode(value: .array(elements), location: location)
        case .string: return ConfigNode(value: .string(value.string ?? ""), location: location)
        case .int: return ConfigNode(value: .integer(value.int ?? 0), location: location)
        case .double: return ConfigNode(value: .float(value.double ?? 0), location: location)
        case .bool: return ConfigNode(value: .boolean(value.bool ?? false), location: location)
        case .date, .time, .dateTime: return ConfigNode(value: .other("a date or time"), location: location)
        }
    }

    /// Merges an included file into this one: tables merge key by key, arrays append, and a key set to a plain
    /// value in both is a conflict, reported at the later place with the earlier one named.
    mutating func merge(_ other: ConfigNode, diagnostics: inout [ConfigDiagnostic]) {
        guard case .table(var mine) = value, case .table(let theirs) = other.value else { return }
        for (key, incoming) in theirs {
            guard var existing = mine[key] else {
                mine[key] = incoming
                continue
            }
            switch (existing.value, incoming.value) {
            case (.table, .table):
                existing.merge(incoming, diagnostics: &diagnostics)
                mine[key] = existing
            case (.array(let first), .array(let second)):
                existing.value = .array(first + second)
                mine[key] = existing
            default:
                diagnostics.append(
                    ConfigDiagnostic(incoming.location, "'\(key)' is already set at \(existing.location)"))
            }
        }
        value = .table(mine)
    }

    /// Replaces `${VAR}` and `${VAR:-default}` in every string of the tree. An unset variable without a default
    /// is an error at the string that names it; `$$` writes a literal `$`.
    mutating func interpolate(_ environment: [String: String], diagnostics: inout [ConfigDiagnostic]) {
        switch value {
        case .string(let text):
            guard text.contains("$") else { return }
            switch Self.interpolating(text, environment) {
            case .success(let result):
                isSubstituted = text.contains("${")
                value = .string(result)
            case .failure(let message): diagnostics.append(ConfigDiagnostic(location, message))
            }
        case .array(var elements):
            for index in elements.indices { elements[index].interpolate(environment, diagnostics: &diagnostics) }
            value = .array(elements)
        case .table(var children):
            for key in children.keys { children[key]!.interpolate(environment, diagnostics: &diagnostics) }
            value = .table(children)
        default:
            break
        }
    }

    enum InterpolationResult {
        case success(String)
        case failure(String)
    }

    static func interpolating(_ text: String, _ environment: [String: String]) -> InterpolationResult {
        var result = ""
        var rest = Substring(text)
        while let dollar = rest.firstIndex(of: "$") {
            result += rest[..<dollar]
            let afterDollar = rest.index(after: dollar)
            if afterDollar < rest.endIndex, rest[afterDollar] == "$" {
                result += "$"
                rest = rest[rest.index(after: afterDollar)...]
                continue
            }
            guard afterDollar < rest.endIndex, rest[afterDollar] == "{",
                let close = rest[afterDollar...].firstIndex(of: "}")
            else {
                result += "$"
                rest = rest[afterDollar...]
                continue
            }
            let expression = rest[rest.index(after: afterDollar)..<close]
            let name: Substring
            var fallback: Substring?
            if let separator = expression.range(of: ":-") {
                name = expression[..<separator.lowerBound]
                fallback = expression[separator.upperBound...]
            } else {
                name = expression
            }
            guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                return .failure("invalid variable reference '${\(expression)}'")
            }
            if let found = environment[String(name)], !(found.isEmpty && fallback != nil) {
                result += found
            } else if let fallback {
                result += fallback
            } else {
                return .failure("environment variable '\(name)' is not set (write ${\(name):-default} to give a default)")
            }
            rest = rest[rest.index(after: close)...]
        }
        result += rest
        return .success(result)
    }
}


/// Checks TOMLKit should not have to make: the toml++ version inside TOMLKit 0.6.0 asserts (and, built without
/// assertions, assumes) that a table header starts with a key character, and the fuzzer (Tests/Fuzz) reached that
/// with "[@x]" and with non-ASCII text in a header. TOML allows non-ASCII only inside strings and comments, and a
/// header must start with a key, so such text is refused here, with its position, before toml++ sees it.
enum TOMLPreflight {
    struct Problem {
        var line: Int
        var column: Int
        var message: String
    }

    static func check(_ text: String) -> Problem? {
        enum State { case normal, comment, basic, literal, multilineBasic, multilineLiteral }
        var state = State.normal
        var line = 1
        var lineStart = 0
        let bytes = Array(text.utf8)
        var index = 0
        var lineIsBlankSoFar = true
        // Open "[" and "{" of values (arrays, inline tables): a "[" at the start of a line inside them is an
        // element, not a table header.
        var valueDepth = 0
        func at(_ offset: Int) -> UInt8? { index + offset < bytes.count ? bytes[index + offset] : nil }
        func isKeyStart(_ byte: UInt8?) -> Bool {
            guard let byte else { return false }
            return (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "_")
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "'")
        }
        while index < bytes.count {
            let byte = bytes[index]
            if byte == 0x0A {
                line += 1
                lineStart = index + 1
                lineIsBlankSoFar = true
                if state == .comment || state == .basic || state == .literal { state = .normal }
                index += 1
                continue
            }
            switch state {
            case .normal:
                if byte >= 0x80 {
                    return Problem(line: line, column: index - lineStart + 1,
                        message: "a non-ASCII character outside a string or comment")
                }
                if byte == UInt8(ascii: "["), lineIsBlankSoFar, valueDepth == 0 {
                    // A table header: "[" or "[[", optional blanks, then a key. Its brackets are not values.
                    var next = index + 1
                    if next < bytes.count, bytes[next] == UInt8(ascii: "[") { next += 1 }
                    while next < bytes.count, bytes[next] == 0x20 || bytes[next] == 0x09 { next += 1 }
                    if !isKeyStart(next < bytes.count ? bytes[next] : nil) {
                        return Problem(line: line, column: next - lineStart + 1, message: "a table header needs a key")
                    }
                    while index + 1 < bytes.count, bytes[index + 1] != 0x0A, bytes[index + 1] != UInt8(ascii: "#") {
                        index += 1  // the rest of the header line (quoted keys with "]" are not worth the care)
                    }
                    lineIsBlankSoFar = false
                    index += 1
                    continue
                } else if byte == UInt8(ascii: "[") || byte == UInt8(ascii: "{") {
                    valueDepth += 1
                } else if byte == UInt8(ascii: "]") || byte == UInt8(ascii: "}") {
                    valueDepth = max(0, valueDepth - 1)
                }
                if byte != 0x20, byte != 0x09, byte != 0x0D { lineIsBlankSoFar = false }
                if byte == UInt8(ascii: "#") {
                    state = .comment
                } else if byte == UInt8(ascii: "\""), at(1) == byte, at(2) == byte {
                    state = .multilineBasic
                    index += 2
                } else if byte == UInt8(ascii: "'"), at(1) == byte, at(2) == byte {
                    state = .multilineLiteral
                    index += 2
                } else if byte == UInt8(ascii: "\"") {
                    state = .basic
                } else if byte == UInt8(ascii: "'") {
                    state = .literal
                }
            case .comment:
                break
            case .basic, .multilineBasic:
                if byte == UInt8(ascii: "\\") {
                    index += 1  // the escaped byte cannot end the string
                } else if byte == UInt8(ascii: "\"") {
                    if state == .basic {
                        state = .normal
                    } else if at(1) == byte, at(2) == byte {
                        state = .normal
                        index += 2
                    }
                }
            case .literal, .multilineLiteral:
                if byte == UInt8(ascii: "'") {
                    if state == .literal {
                        state = .normal
                    } else if at(1) == byte, at(2) == byte {
                        state = .normal
                        index += 2
                    }
                }
            }
            index += 1
        }
        return nil
    }
}
