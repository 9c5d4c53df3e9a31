// SPDX-License-Identifier: Apache-2.0
/// A TOML syntax error said in Jester's words: what is wrong, where it started, and how to fix it.
///
/// TOMLKit hands over toml++'s message ("Error while parsing string: unescaped control characters other than TAB
/// (U+0009) are explicitly prohibited") and the place its parser stopped. For the mistakes people make (an unclosed
/// string, array, inline table or header, a missing `=`, a key set twice, a bad escape, a bare word as a value)
/// that wording names the parser's internals, and the place is often not where the fix goes: an unclosed string is
/// noticed at the end of its line, an unclosed array at the next key. So the text is read again up to that place
/// (`TOMLSyntaxScan`) to find the opening quote or bracket. Anything not recognised keeps toml++'s wording.
struct TOMLSyntaxMessage: Equatable {
    /// Where the diagnostic points, 1-based; columns count Unicode scalars, as toml++'s do.
    var line: Int
    var column: Int
    /// The explanation, after "invalid TOML: ".
    var message: String

    /// What toml++ was parsing when it stopped (the part of its message before the colon).
    enum Scope: String {
        case string
        case literalString = "literal string"
        case keyValuePair = "key-value pair"
        case tableHeader = "table header"
        case array
        case inlineTable = "inline table"
        case value
        case boolean
        case decimalInteger = "decimal integer"
        case floatingPoint = "floating-point"
        case unicodeEscape = "unicode scalar sequence"
    }

    /// Translates toml++'s `description`, reported at `line`:`column` of `text` (the file `file`, named when
    /// the message points at a second place in it).
    init(toml description: String, line: Int, column: Int, text: String, file: String) {
        self.line = line
        self.column = column
        message = description
        let prefix = "Error while parsing "
        guard description.hasPrefix(prefix), let colon = description.range(of: ": ") else { return }
        guard let scope = Scope(rawValue: String(description[description.index(description.startIndex,
            offsetBy: prefix.count)..<colon.lowerBound]))
        else { return }
        let reason = String(description[colon.upperBound...])
        // Split at line feeds by scalar: as Characters, "\r\n" is one and would not split.
        let lines = Array(text.unicodeScalars).split(separator: "\n", omittingEmptySubsequences: false).map(Array.init)
        let scan = TOMLSyntaxScan(lines: lines, upTo: (line, column))
        // The scalar toml++ stopped at; nil at the end of a line or of the file.
        let current: Unicode.Scalar? = {
            guard line >= 1, line <= lines.count, column >= 1, column <= lines[line - 1].count else { return nil }
            let scalar = lines[line - 1][column - 1]
            return scalar == "\r" ? nil : scalar
        }()
        let atLineEnd = current == nil
        if let translated = Self.translate(scope, reason, scan: scan, lines: lines, line: line, column: column,
            atLineEnd: atLineEnd, text: text, file: file)
        {
            self = translated
        }
    }

    private init(_ position: (line: Int, column: Int), _ message: String) {
        line = position.line
        column = position.column
        self.message = message
    }

    // One case per mistake; each returns nil when toml++'s message was not the one expected, keeping its wording.
    private static func translate(
        _ scope: Scope, _ reason: String, scan: TOMLSyntaxScan, lines: [[Unicode.Scalar]], line: Int, column: Int,
        atLineEnd: Bool, text: String, file: String
    ) -> TOMLSyntaxMessage? {
        let here = (line: line, column: column)
        // The line toml++ stopped on (empty if its position is outside the text).
        let scalars = line >= 1 && line <= lines.count ? lines[line - 1] : []
        switch scope {
        case .string, .literalString:
            let unterminated = reason == "encountered end-of-file"
                || (reason.hasPrefix("unescaped control characters") && atLineEnd)
                || (reason.hasPrefix("control characters") && atLineEnd)
            if unterminated, let open = scan.openString {
                return TOMLSyntaxMessage(here, unterminatedString(open))
            }
            if reason.hasPrefix("unknown escape sequence") || reason.hasPrefix("escape sequence") {
                // toml++ points at the letter after the backslash; the backslash is where the fix goes.
                let escape = quoted(in: reason) ?? "\\"
                var position = here
                if column >= 2, column - 1 <= scalars.count, scalars[column - 2] == "\\" { position.column -= 1 }
                return TOMLSyntaxMessage(position, "invalid escape sequence '\(escape)' in a string: write \\\\ "
                    + "for a backslash, or put the text in single quotes ('...'), where a backslash is plain "
                    + "(as regular expressions need); TOML's escapes are \\b \\t \\n \\f \\r \\\" \\\\ \\uXXXX "
                    + "\\UXXXXXXXX")
            }
            if reason.hasPrefix("unescaped control characters") || reason.hasPrefix("control characters") {
                return TOMLSyntaxMessage(here, "a control character in a string: write it as an escape "
                    + "(\\t, \\n, \\uXXXX)")
            }
            return nil
        case .unicodeEscape:
            return TOMLSyntaxMessage(here, "a \\u escape takes exactly four hex digits (\\u00E9) and \\U eight")
        case .keyValuePair:
            if reason.hasPrefix("expected '='") {
                let key = keyBefore(column, in: scalars)
                let found = column >= 1 && column <= scalars.count ? scalars[column - 1] : nil
                let follows = column >= 2 && column - 1 <= scalars.count && scalars[column - 2] != " "
                    && scalars[column - 2] != "\t"
                if let found, follows, !key.isEmpty, found != "\r" {
                    // "hea"der = 1": the key runs into a character no bare key has.
                    return TOMLSyntaxMessage(here, "'\(found)' cannot be part of the key '\(key)...': a bare key "
                        + "is letters, digits, '_' and '-' (any other key is quoted: \"...\" = value)")
                }
                let rest = scalars.dropFirst(max(0, column - 1))
                if let found, isBareKey(found), let equals = rest.firstIndex(of: "=") {
                    // "my key = 1": a space inside the key.
                    let whole = key + " " + String(String.UnicodeScalarView(rest[..<equals])).trimmingWhitespace
                    return TOMLSyntaxMessage(here, "'\(whole)' is not a key: a key with spaces is quoted "
                        + "(\"\(whole)\" = value)")
                }
                return TOMLSyntaxMessage(here, key.isEmpty
                    ? "missing '=': a setting is written key = value"
                    : "missing '=' after the key '\(key)': a setting is written \(key) = value")
            }
            if reason.hasPrefix("expected value") {
                return TOMLSyntaxMessage(here, "a key with no value after '=': write a string in quotes, a "
                    + "number, true or false, an array [...] or an inline table {...}")
            }
            if reason.hasPrefix("expected a comment or whitespace") {
                return TOMLSyntaxMessage(here, "unexpected text after the value: one key = value per line "
                    + "(a comment starts with #)")
            }
            if reason.hasPrefix("cannot redefine existing") {
                return redefinition(reason, text: text, file: file, line: line, fallback: here)
            }
            return nil
        case .tableHeader:
            if reason.hasPrefix("cannot redefine existing") {
                return redefinition(reason, text: text, file: file, line: line, fallback: here)
            }
            guard reason.hasPrefix("expected ']'") || reason == "encountered end-of-file" else { return nil }
            let header = String(String.UnicodeScalarView(scalars))
            let trimmed = header.trimmingWhitespace
            let closing = trimmed.hasPrefix("[[") ? "]]" : "]"
            guard atLineEnd || reason == "encountered end-of-file" else {
                return TOMLSyntaxMessage(here, "expected '\(closing)' to close the table header \(trimmed)"
                    + " (a key with spaces or dots in its name is quoted: [\"a b\"])")
            }
            return TOMLSyntaxMessage(here, "unclosed table header: \(trimmed) needs a closing '\(closing)'")
        case .array:
            guard let open = scan.innermostBracket("["), let found = foundText(reason) else { return nil }
            if reason == "encountered end-of-file" {
                return TOMLSyntaxMessage(here, "unclosed array starting at \(open.line):\(open.column): no ']' "
                    + "before the end of the file")
            }
            if reason.hasPrefix("expected comma or closing ']'") {
                return TOMLSyntaxMessage(here, "expected ',' or ']' in the array starting at \(open.line):"
                    + "\(open.column), found \(found): separate elements with commas and close the array with ]")
            }
            return nil
        case .inlineTable:
            guard let open = scan.innermostBracket("{"), let found = foundText(reason) else { return nil }
            let start = "\(open.line):\(open.column)"
            if reason == "encountered end-of-file" {
                return TOMLSyntaxMessage(here, "unclosed inline table starting at \(start): no '}' before the end "
                    + "of the file")
            }
            if reason.hasSuffix("saw '\\n'") || reason.hasSuffix("saw '\\r'") {
                return TOMLSyntaxMessage(here, "the inline table starting at \(start) is not closed on its line: "
                    + "an inline table {...} is written on one line (close it with }, or write a [table] section)")
            }
            if reason.hasPrefix("expected comma or closing '}'") {
                return TOMLSyntaxMessage(here, "expected ',' or '}' in the inline table starting at \(start), "
                    + "found \(found): separate its keys with commas")
            }
            return nil
        case .value, .boolean, .decimalInteger, .floatingPoint:
            guard reason == "could not determine value type" || scope != .value else { return nil }
            let token = tokenAround(column, in: scalars)
            guard !token.text.isEmpty else { return nil }
            let position = (line: line, column: token.start)
            if scope == .decimalInteger || scope == .floatingPoint {
                // "10s", "16k", "1h30m": Jester's durations and sizes are strings. Other malformed numbers
                // ("1__0") keep toml++'s precise wording.
                let unit = token.text.lowercased().unicodeScalars.contains { ("a"..."z").contains($0) && $0 != "e" }
                guard unit else { return nil }
                return TOMLSyntaxMessage(position, "'\(token.text)' is not a value: a duration or size is "
                    + "written as a string, \"\(token.text)\"")
            }
            if ["true", "false"].contains(token.text.lowercased()) {
                return TOMLSyntaxMessage(position, "'\(token.text)' is not a value: booleans are written "
                    + "\(token.text.lowercased()), in lower case")
            }
            return TOMLSyntaxMessage(position, "'\(token.text)' is not a value: a string is written in quotes "
                + "(\"\(token.text)\"); booleans are true and false")
        }
    }

    /// "unterminated string starting at 6:8 (...)", with the fix for its kind of string.
    private static func unterminatedString(_ open: TOMLSyntaxScan.OpenString) -> String {
        let start = "\(open.line):\(open.column)"
        switch open.kind {
        case .basic:
            return "unterminated string starting at \(start): close it with \" on the same line "
                + "(a string over several lines is written \"\"\"...\"\"\")"
        case .literal:
            return "unterminated string starting at \(start): close it with ' on the same line "
                + "(a string over several lines is written '''...''')"
        case .multilineBasic:
            return "unterminated multi-line string starting at \(start): no closing \"\"\" before the end of "
                + "the file"
        case .multilineLiteral:
            return "unterminated multi-line string starting at \(start): no closing ''' before the end of the file"
        }
    }

    /// A key or table defined twice: at the second definition, naming the first when the locator found it.
    private static func redefinition(
        _ reason: String, text: String, file: String, line: Int, fallback: (line: Int, column: Int)
    ) -> TOMLSyntaxMessage {
        let name = quoted(in: reason) ?? "this key"
        let earlier = SourceLocator(text: text).redefinitions.last { $0.second.line == line }
        let position = earlier.map { (line: $0.second.line, column: $0.second.column) } ?? fallback
        let first = earlier.map { " at \(file):\($0.first.line):\($0.first.column)" } ?? " earlier in this file"
        if reason.hasPrefix("cannot redefine existing table") {
            return TOMLSyntaxMessage(position, "table [\(name)] is already defined\(first): a table's header "
                + "appears once (put these keys under the first one)")
        }
        if reason.hasSuffix(" as table") || reason.hasSuffix(" as array-of-tables") {
            let kind = reason.hasSuffix(" as table") ? "a table" : "an array of tables"
            return TOMLSyntaxMessage(position, "'\(name)' is already set\(first) to a value, so it cannot also "
                + "be \(kind)")
        }
        return TOMLSyntaxMessage(position, "'\(name)' is already set\(first): a key is set once in its table "
            + "(remove one of them)")
    }

    /// The text between the first and last single quote of toml++'s reason ("... 'level'" → "level").
    private static func quoted(in reason: String) -> String? {
        guard let first = reason.firstIndex(of: "'"), let last = reason.lastIndex(of: "'"), first < last else {
            return nil
        }
        return String(reason[reason.index(after: first)..<last])
    }

    /// What toml++ saw instead, for messages: 'y', or "the end of the line".
    private static func foundText(_ reason: String) -> String? {
        guard let range = reason.range(of: "saw ") else { return reason == "encountered end-of-file" ? "" : nil }
        let seen = String(reason[range.upperBound...])
        return seen == "'\\n'" || seen == "'\\r'" ? "the end of the line" : seen
    }

    /// The key written before `column` on a line: after the last `{` or `,` (inside an inline table), trimmed.
    private static func keyBefore(_ column: Int, in line: [Unicode.Scalar]) -> String {
        let before = line.prefix(max(0, min(column - 1, line.count)))
        let start = before.lastIndex { $0 == "{" || $0 == "," }.map { $0 + 1 } ?? 0
        return String(String.UnicodeScalarView(before[start...])).trimmingWhitespace
    }

    /// A character of a bare key: A-Z a-z 0-9 _ -.
    private static func isBareKey(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
            || scalar == "_" || scalar == "-"
    }

    /// The bare word containing `column` (1-based), and the column it starts at.
    private static func tokenAround(_ column: Int, in line: [Unicode.Scalar]) -> (text: String, start: Int) {
        func isDelimiter(_ scalar: Unicode.Scalar) -> Bool {
            " \t\r=,[]{}#\"'".unicodeScalars.contains(scalar)
        }
        var start = max(0, min(column - 1, line.count))
        while start > 0, !isDelimiter(line[start - 1]) { start -= 1 }
        var end = start
        while end < line.count, !isDelimiter(line[end]) { end += 1 }
        return (String(String.UnicodeScalarView(line[start..<end])), start + 1)
    }
}

/// The strings, arrays and inline tables open at a place in TOML text: what an error noticed there belongs to.
///
/// Lenient like `SourceLocator` (the text is known to be invalid): it only follows quotes, comments and
/// brackets, scalar by scalar, so its columns match toml++'s.
struct TOMLSyntaxScan {
    /// A string whose closing quote has not been seen.
    struct OpenString: Equatable {
        enum Kind { case basic, literal, multilineBasic, multilineLiteral }
        var kind: Kind
        var line: Int
        var column: Int
    }

    /// A `[` or `{` of a value (not of a table header) not closed yet.
    struct OpenBracket: Equatable {
        var bracket: Unicode.Scalar
        var line: Int
        var column: Int
    }

    private(set) var openString: OpenString?
    private(set) var openBrackets: [OpenBracket] = []

    /// Scans `lines` (the text split at line feeds) up to, not including, `position`.
    init(lines: [[Unicode.Scalar]], upTo position: (line: Int, column: Int)) {
        var inComment = false
        for (lineIndex, scalars) in lines.enumerated() {
            let lineNumber = lineIndex + 1
            if lineNumber > position.line { return }
            inComment = false
            if let open = openString, open.kind == .basic || open.kind == .literal { openString = nil }
            var index = 0
            // A "[" first on its line, outside any value, starts a table header: not a bracket of a value.
            if openString == nil, openBrackets.isEmpty,
                let first = scalars.firstIndex(where: { $0 != " " && $0 != "\t" }), scalars[first] == "["
            {
                if lineNumber == position.line { return }
                continue
            }
            while index < scalars.count {
                if lineNumber == position.line, index + 1 >= position.column { return }
                let scalar = scalars[index]
                let column = index + 1
                func at(_ offset: Int) -> Unicode.Scalar? {
                    index + offset < scalars.count ? scalars[index + offset] : nil
                }
                if inComment { break }
                if let open = openString {
                    switch open.kind {
                    case .basic, .multilineBasic:
                        if scalar == "\\" {
                            index += 2
                            continue
                        }
                        if scalar == "\"", open.kind == .basic {
                            openString = nil
                        } else if scalar == "\"", at(1) == "\"", at(2) == "\"" {
                            openString = nil
                            index += 2
                        }
                    case .literal, .multilineLiteral:
                        if scalar == "'", open.kind == .literal {
                            openString = nil
                        } else if scalar == "'", at(1) == "'", at(2) == "'" {
                            openString = nil
                            index += 2
                        }
                    }
                    index += 1
                    continue
                }
                switch scalar {
                case "#": inComment = true
                case "\"", "'":
                    let tripled = at(1) == scalar && at(2) == scalar
                    let kind: OpenString.Kind = scalar == "\""
                        ? (tripled ? .multilineBasic : .basic) : (tripled ? .multilineLiteral : .literal)
                    openString = OpenString(kind: kind, line: lineNumber, column: column)
                    if tripled { index += 2 }
                case "[", "{": openBrackets.append(OpenBracket(bracket: scalar, line: lineNumber, column: column))
                case "]", "}": if !openBrackets.isEmpty { openBrackets.removeLast() }
                default: break
                }
                index += 1
            }
        }
    }

    /// The innermost open bracket, if it is `bracket` (an error inside an array belongs to that array).
    func innermostBracket(_ bracket: Unicode.Scalar) -> OpenBracket? {
        guard let last = openBrackets.last, last.bracket == bracket else { return nil }
        return last
    }
}

extension String {
    /// Without leading and trailing blanks (Foundation-free, as this module's pure parts are).
    fileprivate var trimmingWhitespace: String {
        let scalars = Array(unicodeScalars)
        guard let first = scalars.firstIndex(where: { $0 != " " && $0 != "\t" && $0 != "\r" }),
            let last = scalars.lastIndex(where: { $0 != " " && $0 != "\t" && $0 != "\r" })
        else { return "" }
        return String(String.UnicodeScalarView(scalars[first...last]))
    }
}
