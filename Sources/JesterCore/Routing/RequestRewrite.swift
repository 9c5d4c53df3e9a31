// SPDX-License-Identifier: Apache-2.0
/// Header fields a route sets, adds or removes on the request it forwards or on the response it returns.
///
/// Pure and compiled once: `drops` says which incoming fields to leave out (removed ones, and ones `set`
/// replaces), `rendered` is the block of fields to append, already formatted.
public struct HeaderEdits: Sendable, Equatable {
    /// Lowercase names of fields not passed on.
    public private(set) var dropped: [[UInt8]] = []
    /// "Name: value\r\n" lines appended after the passed-on fields.
    public private(set) var rendered: [UInt8] = []
    /// The same fields with lowercase names, as HTTP/2 sends them (made once here, not per response).
    public private(set) var appended: [Field] = []

    /// A field a route appends.
    public struct Field: Sendable, Equatable {
        public var name: String
        public var value: String
    }

    /// Values are trimmed of spaces and tabs at either end: a field value has none there (RFC 9110 §5.5), and an
    /// HTTP/2 peer resets a stream whose field has them (RFC 9113 §8.2.1).
    public init(set: [(String, String)] = [], add: [(String, String)] = [], remove: [String] = []) {
        dropped = (remove + set.map(\.0)).map { Array($0.lowercased().utf8) }
        for (name, untrimmed) in set + add {
            let value = Self.trimmed(untrimmed)
            rendered += Array("\(name): \(value)\r\n".utf8)
            appended.append(Field(name: name.lowercased(), value: value))
        }
    }

    private static func trimmed(_ value: String) -> String {
        let bytes = Array(value.utf8)
        let isBlank = { (byte: UInt8) in byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        guard let first = bytes.firstIndex(where: { !isBlank($0) }), let last = bytes.lastIndex(where: { !isBlank($0) })
        else { return "" }
        return String(decoding: bytes[first...last], as: UTF8.self)
    }

    public var isEmpty: Bool { dropped.isEmpty && rendered.isEmpty }

    /// Whether the field named by `name` (a range of `bytes`) is left out.
    @inlinable
    public func drops(_ bytes: UnsafeRawBufferPointer, _ name: Range<Int>) -> Bool {
        dropped.contains { candidate in
            candidate.withUnsafeBytes { ASCII.equalsIgnoringCase(bytes, name, $0, 0..<$0.count) }
        }
    }
}

/// How a route changes the request path before forwarding it. The query is kept as it is.
public enum PathRewrite: Sendable {
    case none
    /// Replace the first `count` bytes (the route's prefix) with `replacement` (empty: strip the prefix). A
    /// path that would become empty becomes "/".
    case replacePrefix(count: Int, replacement: [UInt8])
    /// Replace the path with `template` when `pattern` matches ("$1", "$2", ... are its groups); a path that
    /// does not match is forwarded unchanged.
    case regex(RoutePattern, template: String)

    /// The new path, or nil when it stays as it is.
    public func rewrite(_ bytes: UnsafeRawBufferPointer, path: Range<Int>) -> [UInt8]? {
        switch self {
        case .none:
            return nil
        case .replacePrefix(let count, let replacement):
            var result = replacement
            result += UnsafeRawBufferPointer(rebasing: bytes[min(path.lowerBound + count, path.upperBound)..<path.upperBound])
            if result.first != UInt8(ascii: "/") { result.insert(UInt8(ascii: "/"), at: 0) }
            return result
        case .regex(let pattern, let template):
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[path]), as: UTF8.self)
            return pattern.substitute(in: text, template: template).map { Array($0.utf8) }
        }
    }
}

extension RoutePattern {
    /// `template` with "$N" replaced by group N of the first match in `text` ("$0": the whole match, "$$": a
    /// dollar sign), or nil when there is no match.
    public func substitute(in text: String, template: String) -> String? {
        guard let groups = captures(in: text) else { return nil }
        var result = ""
        var characters = template[...]
        while let dollar = characters.firstIndex(of: "$") {
            result += characters[..<dollar]
            characters = characters[characters.index(after: dollar)...]
            if characters.first == "$" {
                result += "$"
                characters = characters.dropFirst()
                continue
            }
            let digits = characters.prefix { $0.isASCII && $0.isNumber }
            if let number = Int(digits), number < groups.count {
                result += groups[number] ?? ""
            } else {
                result += "$" + digits
            }
            characters = characters.dropFirst(digits.count)
        }
        return result + characters
    }
}
