// SPDX-License-Identifier: Apache-2.0
import JesterCore

/// A message's header fields as the cache's decisions see them: names and values as strings, in order.
///
/// The data plane keeps heads as offsets into received bytes (`HTTPHead`); the cache works on far fewer messages
/// (one per lookup or store, never per byte) and keeps what it stores, so it copies the fields it is given into
/// this plain value once. Names keep the case they came in (HTTP/1.1 peers see them as sent); every lookup ignores
/// case (RFC 9110 §5.1).
public struct CacheFields: Sendable, Equatable, ExpressibleByArrayLiteral {
    /// One field line.
    public struct Field: Sendable, Equatable {
        /// The name as received.
        public var name: String
        /// The value without surrounding whitespace.
        public var value: String

        /// A field line.
        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    /// The field lines in order of arrival.
    public var fields: [Field]

    /// Fields from their lines.
    public init(_ fields: [Field] = []) {
        self.fields = fields
    }

    /// Fields from (name, value) pairs, for tests and callers holding tuples.
    public init(arrayLiteral elements: (String, String)...) {
        fields = elements.map { Field($0.0, $0.1) }
    }

    /// Whether any line is called `name`.
    public func contains(_ name: String) -> Bool {
        fields.contains { Self.sameName($0.name, name) }
    }

    /// The values of every line called `name`, in order.
    public func values(_ name: String) -> [String] {
        fields.compactMap { Self.sameName($0.name, name) ? $0.value : nil }
    }

    /// The value of the first line called `name`.
    public func first(_ name: String) -> String? {
        fields.first { Self.sameName($0.name, name) }?.value
    }

    /// The value of the only line called `name`; nil when there is none or more than one (a field that must not
    /// repeat, like `Date` or `Expires`, is unusable when it does: RFC 9111 §4.2.1 lets the cache take it stale).
    public func single(_ name: String) -> SingleValue {
        var found: String?
        for field in fields where Self.sameName(field.name, name) {
            if found != nil { return .repeated }
            found = field.value
        }
        return found.map { .value($0) } ?? .absent
    }

    /// What `single` found.
    public enum SingleValue: Sendable, Equatable {
        /// No line of that name.
        case absent
        /// Exactly one line, with this value.
        case value(String)
        /// More than one line.
        case repeated
    }

    /// The members of the comma-separated lists in every line called `name` (RFC 9110 §5.6.1), empty members
    /// dropped; commas inside quoted strings do not split.
    public func list(_ name: String) -> [String] {
        values(name).flatMap { Self.splitList($0) }
    }

    /// Removes every line called `name`.
    public mutating func remove(_ name: String) {
        fields.removeAll { Self.sameName($0.name, name) }
    }

    /// Replaces every line called `name` with one line (at the place of the first, else at the end).
    public mutating func set(_ name: String, _ value: String) {
        if let index = fields.firstIndex(where: { Self.sameName($0.name, name) }) {
            fields[index] = Field(fields[index].name, value)
            var next = index + 1
            while next < fields.count {
                if Self.sameName(fields[next].name, name) { fields.remove(at: next) } else { next += 1 }
            }
        } else {
            fields.append(Field(name, value))
        }
    }

    /// Adds a line at the end.
    public mutating func append(_ name: String, _ value: String) {
        fields.append(Field(name, value))
    }

    /// Field names compared without regard to ASCII case (RFC 9110 §5.1).
    public static func sameName(_ a: String, _ b: String) -> Bool {
        guard a.utf8.count == b.utf8.count else { return false }
        // On the request path for every lookup (a dozen names against each request field): compare the
        // contiguous bytes native strings have, without an iterator per character.
        if let same = a.utf8.withContiguousStorageIfAvailable({ left in
            b.utf8.withContiguousStorageIfAvailable { right in
                for index in 0..<left.count where ASCII.lowercased(left[index]) != ASCII.lowercased(right[index]) {
                    return false
                }
                return true
            }
        }), let same {
            return same
        }
        return zip(a.utf8, b.utf8).allSatisfy { ASCII.lowercased($0) == ASCII.lowercased($1) }
    }

    /// `name` in ASCII lowercase (non-ASCII bytes unchanged): the canonical spelling inside keys. A name already
    /// in lowercase (the configured ones always are) is returned as it is, without a copy.
    public static func lowercased(_ name: String) -> String {
        let isUpper = { (byte: UInt8) in byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") }
        guard name.utf8.contains(where: isUpper) else { return name }
        return String(decoding: name.utf8.map(ASCII.lowercased), as: UTF8.self)
    }

    /// Splits one field value at commas outside quoted strings, trimming whitespace (RFC 9110 §5.6.1).
    public static func splitList(_ value: String) -> [String] {
        var members: [String] = []
        var current: [UInt8] = []
        var quoted = false
        var escaped = false
        for byte in value.utf8 {
            if quoted {
                current.append(byte)
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    quoted = false
                }
            } else if byte == ASCII.comma {
                members.append(trimmed(current))
                current.removeAll(keepingCapacity: true)
            } else {
                if byte == UInt8(ascii: "\"") { quoted = true }
                current.append(byte)
            }
        }
        members.append(trimmed(current))
        return members.filter { !$0.isEmpty }
    }

    /// `bytes` as a string without leading or trailing spaces and tabs (OWS).
    static func trimmed<Bytes: BidirectionalCollection>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        let isBlank = { (byte: UInt8) in byte == ASCII.space || byte == ASCII.tab }
        guard let start = bytes.firstIndex(where: { !isBlank($0) }) else { return "" }
        let rest = bytes[start...]
        let end = rest.lastIndex(where: { !isBlank($0) })!
        return String(decoding: rest[...end], as: UTF8.self)
    }
}
