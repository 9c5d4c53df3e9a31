// SPDX-License-Identifier: Apache-2.0
/// A place in a configuration file, 1-based, as editors and compilers print it.
public struct SourceLocation: Sendable, Hashable, Codable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    /// Where in a JSON document (a control plane's snapshot) the value is, as a JSON pointer (RFC 6901): JSON
    /// has no lines worth quoting, and the pointer is what an API client can match to the field it sent. `line`
    /// then only orders diagnostics, in a fixed order (members by sorted name).
    public var pointer: String?

    public init(file: String, line: Int, column: Int, pointer: String? = nil) {
        self.file = file
        self.line = line
        self.column = column
        self.pointer = pointer
    }

    /// `file:line:column`, or `document#/json/pointer` (the pointer as written, not percent-encoded).
    public var description: String {
        if let pointer { return "\(file)#\(pointer)" }
        return "\(file):\(line):\(column)"
    }
}

/// One problem found in a configuration, with where it is and what was expected.
public struct ConfigDiagnostic: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Whether a diagnostic stops the configuration from being used.
    public enum Severity: String, Sendable, Hashable, Codable {
        /// The configuration is refused.
        case error
        /// The configuration is used; the operator is told (`Configuration.warnings`).
        case warning
    }

    public var location: SourceLocation
    public var message: String
    public var severity: Severity

    public init(_ location: SourceLocation, _ message: String, severity: Severity = .error) {
        self.location = location
        self.message = message
        self.severity = severity
    }

    /// `file:line:column: error: message` (or `warning:`), the format editors jump to.
    public var description: String { "\(location): \(severity.rawValue): \(message)" }
}

/// A configuration that cannot be used, with every problem found (not just the first).
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public var diagnostics: [ConfigDiagnostic]

    public init(_ diagnostics: [ConfigDiagnostic]) {
        self.diagnostics = diagnostics
    }

    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}

/// Suggests the closest known name for a misspelt one ("did you mean ...?").
enum Suggestion {
    /// The candidate within edit distance 2 (or a third of the name's length) of `name`, if any.
    static func closest(to name: String, among candidates: [String]) -> String? {
        let limit = max(2, name.count / 3)
        var best: (name: String, distance: Int)?
        for candidate in candidates {
            let distance = editDistance(Array(name.utf8), Array(candidate.utf8))
            if distance <= limit, distance < (best?.distance ?? .max) { best = (candidate, distance) }
        }
        return best?.name
    }

    /// Levenshtein distance with transpositions counted as one edit.
    static func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var matrix = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { matrix[i][0] = i }
        for j in 0...b.count { matrix[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                matrix[i][j] = min(matrix[i - 1][j] + 1, matrix[i][j - 1] + 1, matrix[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    matrix[i][j] = min(matrix[i][j], matrix[i - 2][j - 2] + 1)
                }
            }
        }
        return matrix[a.count][b.count]
    }
}
