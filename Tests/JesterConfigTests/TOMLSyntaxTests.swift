// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import Testing

/// TOML syntax errors in Jester's words (`TOMLSyntaxMessage`): for each mistake people make, the exact message and
/// the place it points at; anything unmapped keeps toml++'s wording.

/// A mistake: the file's text, and the one diagnostic it must give ("t.toml:line:column: error: invalid TOML: ...").
private struct Mistake: CustomTestStringConvertible, Sendable {
    var name: String
    var text: String
    var expected: String

    var testDescription: String { name }
}

private let basicStringFix =
    "close it with \" on the same line (a string over several lines is written \"\"\"...\"\"\")"
private let escapeFix = "write \\\\ for a backslash, or put the text in single quotes ('...'), where a backslash is "
    + "plain (as regular expressions need); TOML's escapes are \\b \\t \\n \\f \\r \\\" \\\\ \\uXXXX \\UXXXXXXXX"
private let inlineNewline = "an inline table {...} is written on one line (close it with }, or write a [table] section)"

private let mistakes: [Mistake] = [
    // Unterminated strings: the message names where the string started, the location is where the line ended.
    Mistake(name: "basic string", text: "[server]\nworkers = 2\n[log]\nlevel = \"info\n",
        expected: "t.toml:4:14: error: invalid TOML: unterminated string starting at 4:9: \(basicStringFix)"),
    Mistake(name: "basic string, CRLF line ends", text: "[log]\r\nlevel = \"info\r\nformat = \"json\"\r\n",
        expected: "t.toml:2:14: error: invalid TOML: unterminated string starting at 2:9: \(basicStringFix)"),
    Mistake(name: "basic string after non-ASCII text (columns count characters)", text: "x = \"ééé\n",
        expected: "t.toml:1:9: error: invalid TOML: unterminated string starting at 1:5: \(basicStringFix)"),
    Mistake(name: "basic string after a comment with a quote", text: "a = \"b\" # \"x\nc = \"d\n",
        expected: "t.toml:2:7: error: invalid TOML: unterminated string starting at 2:5: \(basicStringFix)"),
    Mistake(name: "basic string after a multi-line one", text: "a = \"\"\"x\ny\"\"\"\nb = \"z\n",
        expected: "t.toml:3:7: error: invalid TOML: unterminated string starting at 3:5: \(basicStringFix)"),
    Mistake(name: "quoted key", text: "[log]\n\"level = 1\n",
        expected: "t.toml:2:11: error: invalid TOML: unterminated string starting at 2:1: \(basicStringFix)"),
    Mistake(name: "literal string", text: "[log]\nlevel = 'info\n",
        expected: "t.toml:2:14: error: invalid TOML: unterminated string starting at 2:9: close it with ' on the "
            + "same line (a string over several lines is written '''...''')"),
    Mistake(name: "multi-line basic string", text: "[log]\nlevel = \"\"\"info\nmore\n",
        expected: "t.toml:3:6: error: invalid TOML: unterminated multi-line string starting at 2:9: no closing "
            + "\"\"\" before the end of the file"),
    Mistake(name: "multi-line literal string", text: "[log]\nlevel = '''info\nmore\n",
        expected: "t.toml:3:6: error: invalid TOML: unterminated multi-line string starting at 2:9: no closing "
            + "''' before the end of the file"),
    Mistake(name: "control character", text: "x = \"a\u{1}b\"\n",
        expected: "t.toml:1:7: error: invalid TOML: a control character in a string: write it as an escape "
            + "(\\t, \\n, \\uXXXX)"),
    // Keys.
    Mistake(name: "missing =", text: "[log]\nlevel \"info\"\n",
        expected: "t.toml:2:7: error: invalid TOML: missing '=' after the key 'level': a setting is written "
            + "level = value"),
    Mistake(name: "key alone", text: "[log]\nlevel\n",
        expected: "t.toml:2:6: error: invalid TOML: missing '=' after the key 'level': a setting is written "
            + "level = value"),
    Mistake(name: "a quote inside a key", text: "[http]\nkeep\"alive_timeout = \"75s\"\n",
        expected: "t.toml:2:5: error: invalid TOML: '\"' cannot be part of the key 'keep...': a bare key is "
            + "letters, digits, '_' and '-' (any other key is quoted: \"...\" = value)"),
    Mistake(name: "a space inside a key", text: "my key = 1\n",
        expected: "t.toml:1:4: error: invalid TOML: 'my key' is not a key: a key with spaces is quoted "
            + "(\"my key\" = value)"),
    Mistake(name: "no value", text: "x = \n",
        expected: "t.toml:1:5: error: invalid TOML: a key with no value after '=': write a string in quotes, a "
            + "number, true or false, an array [...] or an inline table {...}"),
    Mistake(name: "two values", text: "x = \"a\" \"b\"\n",
        expected: "t.toml:1:9: error: invalid TOML: unexpected text after the value: one key = value per line "
            + "(a comment starts with #)"),
    Mistake(name: "key set twice", text: "[log]\nlevel = \"info\"\nlevel = \"debug\"\n",
        expected: "t.toml:3:1: error: invalid TOML: 'level' is already set at t.toml:2:1: a key is set once in "
            + "its table (remove one of them)"),
    Mistake(name: "dotted key set twice", text: "a.b = 1\na.b = 2\n",
        expected: "t.toml:2:1: error: invalid TOML: 'a.b' is already set at t.toml:1:1: a key is set once in "
            + "its table (remove one of them)"),
    Mistake(name: "key set twice in an inline table", text: "x = { a = 1, a = 2 }\n",
        expected: "t.toml:1:14: error: invalid TOML: 'a' is already set at t.toml:1:7: a key is set once in "
            + "its table (remove one of them)"),
    Mistake(name: "table defined twice", text: "[log]\nlevel = \"info\"\n[log]\nformat = \"json\"\n",
        expected: "t.toml:3:1: error: invalid TOML: table [log] is already defined at t.toml:1:1: a table's "
            + "header appears once (put these keys under the first one)"),
    Mistake(name: "value made a table", text: "a = 1\n[a]\nb = 2\n",
        expected: "t.toml:2:1: error: invalid TOML: 'a' is already set at t.toml:1:1 to a value, so it cannot "
            + "also be a table"),
    Mistake(name: "value made an array of tables", text: "a = 1\n[[a]]\n",
        expected: "t.toml:2:1: error: invalid TOML: 'a' is already set at t.toml:1:1 to a value, so it cannot "
            + "also be an array of tables"),
    // Escapes: at the backslash.
    Mistake(name: "unknown escape", text: "[[routes]]\npath_regex = \"^/api/\\d+\"\n",
        expected: "t.toml:2:21: error: invalid TOML: invalid escape sequence '\\d' in a string: \(escapeFix)"),
    Mistake(name: "\\x escape (TOML 1.1)", text: "x = \"\\x41\"\n",
        expected: "t.toml:1:6: error: invalid TOML: invalid escape sequence '\\x' in a string: \(escapeFix)"),
    Mistake(name: "short \\u escape", text: "x = \"\\u12\"\n",
        expected: "t.toml:1:10: error: invalid TOML: a \\u escape takes exactly four hex digits (\\u00E9) and "
            + "\\U eight"),
    // Headers, arrays, inline tables.
    Mistake(name: "unclosed table header", text: "[log\nlevel = \"info\"\n",
        expected: "t.toml:1:5: error: invalid TOML: unclosed table header: [log needs a closing ']'"),
    Mistake(name: "unclosed header at the end of the file", text: "[log",
        expected: "t.toml:1:5: error: invalid TOML: unclosed table header: [log needs a closing ']'"),
    Mistake(name: "unclosed array-of-tables header", text: "[[routes]\nname = \"a\"\n",
        expected: "t.toml:1:10: error: invalid TOML: unclosed table header: [[routes] needs a closing ']]'"),
    Mistake(name: "unclosed array", text: "[server]\nx = [1, 2\ny = 3\n",
        expected: "t.toml:3:1: error: invalid TOML: expected ',' or ']' in the array starting at 2:5, found 'y': "
            + "separate elements with commas and close the array with ]"),
    Mistake(name: "missing comma in an array", text: "x = [1 2]\n",
        expected: "t.toml:1:8: error: invalid TOML: expected ',' or ']' in the array starting at 1:5, found '2': "
            + "separate elements with commas and close the array with ]"),
    Mistake(name: "array unclosed at the end of the file", text: "[server]\nx = [1, 2",
        expected: "t.toml:2:10: error: invalid TOML: unclosed array starting at 2:5: no ']' before the end of "
            + "the file"),
    Mistake(name: "unclosed inline table", text: "[server]\nx = { a = 1\ny = 3\n",
        expected: "t.toml:2:12: error: invalid TOML: the inline table starting at 2:5 is not closed on its line: "
            + inlineNewline),
    Mistake(name: "newline inside an inline table", text: "[server]\nx = { a = 1,\n b = 2 }\n",
        expected: "t.toml:2:13: error: invalid TOML: the inline table starting at 2:5 is not closed on its line: "
            + inlineNewline),
    Mistake(name: "missing comma in an inline table", text: "x = { a = 1 b = 2 }\n",
        expected: "t.toml:1:13: error: invalid TOML: expected ',' or '}' in the inline table starting at 1:5, "
            + "found 'b': separate its keys with commas"),
    Mistake(name: "inline table unclosed at the end of the file", text: "[server]\nx = { a = 1, b = 2",
        expected: "t.toml:2:19: error: invalid TOML: unclosed inline table starting at 2:5: no '}' before the "
            + "end of the file"),
    // Bare words as values: at the word.
    Mistake(name: "bare word", text: "[server]\nkey = yes\n",
        expected: "t.toml:2:7: error: invalid TOML: 'yes' is not a value: a string is written in quotes "
            + "(\"yes\"); booleans are true and false"),
    Mistake(name: "bare word in an array", text: "x = [yes, no]\n",
        expected: "t.toml:1:6: error: invalid TOML: 'yes' is not a value: a string is written in quotes "
            + "(\"yes\"); booleans are true and false"),
    Mistake(name: "capitalised boolean", text: "[server]\nkey = True\n",
        expected: "t.toml:2:7: error: invalid TOML: 'True' is not a value: booleans are written true, in lower "
            + "case"),
    Mistake(name: "unquoted duration", text: "[server]\ndrain_timeout = 10s\n",
        expected: "t.toml:2:17: error: invalid TOML: '10s' is not a value: a duration or size is written as a "
            + "string, \"10s\""),
    Mistake(name: "unquoted size with a fraction", text: "x = 1.5k\n",
        expected: "t.toml:1:5: error: invalid TOML: '1.5k' is not a value: a duration or size is written as a "
            + "string, \"1.5k\""),
    // Not mapped: toml++'s own wording stays, at its place.
    Mistake(name: "fallback", text: "x = [1,,2]\n",
        expected: "t.toml:1:8: error: invalid TOML: Error while parsing array: expected value or closing ']', "
            + "saw comma"),
    Mistake(name: "fallback for a malformed number", text: "x = 1__0\n",
        expected: "t.toml:1:7: error: invalid TOML: Error while parsing decimal integer: underscores may only "
            + "follow digits"),
]

@Test(arguments: mistakes)
private func saysTheMistakeWhereItIs(_ mistake: Mistake) {
    do {
        _ = try ConfigLoader(environment: [:]).load(text: mistake.text, file: "t.toml")
        Issue.record("accepted \(mistake.text)")
    } catch {
        #expect(error.diagnostics.map(\.description) == [mistake.expected])
    }
}
