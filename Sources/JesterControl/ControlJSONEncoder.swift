// SPDX-License-Identifier: Apache-2.0

/// Writes Encodable values as JSON, as Foundation's `JSONEncoder` wrote the control protocol's frames: enums with
/// payloads as `{"case":{"label":…}}` (`_0` for unlabelled ones), nil members left out, integers as digits,
/// doubles shortest-first without a trailing `.0`, `Base64Bytes` as base64 strings. A peer of an earlier release
/// (an old worker across a binary upgrade) reads what this writes, and this reads what it wrote.
///
/// Jester's own so that JesterControl and jesterctl link no Foundation (see `JSONTree`). jesterctl's `--json`
/// output uses the options: sorted keys, pretty printing, snake_case names.
public struct ControlJSONEncoder: Sendable {
    /// How the output looks; the default (none) is the wire form: compact, members in the order encoded.
    public struct Options: OptionSet, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }

        /// Members sorted by name, so output is stable for people and diffs.
        public static let sortedKeys = Options(rawValue: 1)
        /// One member or element per line, indented by two spaces.
        public static let prettyPrinted = Options(rawValue: 2)
        /// `configHash` written as `config_hash`, like the configuration and the logs.
        public static let snakeCaseKeys = Options(rawValue: 4)
    }

    public var options: Options

    public init(options: Options = []) {
        self.options = options
    }

    /// The JSON of `value` (UTF-8). Throws `EncodingError.invalidValue` for a NaN or infinite number.
    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let root = EncodingNode()
        try value.encode(to: NodeEncoder(node: root, codingPath: [], options: options))
        var output: [UInt8] = []
        output.reserveCapacity(256)
        root.write(to: &output, options: options, indent: 0)
        return output
    }

    /// `camelCase` → `camel_case`, as Foundation's `convertToSnakeCase` does it (an acronym stays one word:
    /// `rssURLBytes` → `rss_url_bytes`).
    public static func snakeCase(_ key: String) -> String {
        let characters = Array(key.unicodeScalars)
        guard characters.contains(where: { $0.properties.isUppercase }) else { return key }
        var result = String.UnicodeScalarView()
        for (index, character) in characters.enumerated() {
            if character.properties.isUppercase, index > 0 {
                let previousIsLower = !characters[index - 1].properties.isUppercase && characters[index - 1] != "_"
                let nextIsLower = index + 1 < characters.count && characters[index + 1].properties.isLowercase
                let previousIsUpper = characters[index - 1].properties.isUppercase
                // A word starts at an upper-case letter after a lower-case one, or at the last capital of an
                // acronym that a lower-case letter follows (`URLBytes`: `url`, `bytes`).
                if previousIsLower || (previousIsUpper && nextIsLower) { result.append("_") }
            }
            result.append(contentsOf: character.properties.lowercaseMapping.unicodeScalars)
        }
        return String(result)
    }
}

/// One value being encoded: a scalar's JSON text, an array or an object, filled in by the containers that
/// reference it (a class, because a nested container and its parent write to the same node).
final class EncodingNode {
    /// A scalar, already in JSON form (`"text"`, `12`, `true`, `null`).
    var scalar: String?
    var elements: [EncodingNode]?
    /// Member names in the order encoded, and the members.
    var names: [String] = []
    var members: [String: EncodingNode]?

    init() {}

    init(scalar: String) {
        self.scalar = scalar
    }

    func makeObject() {
        if members == nil, elements == nil, scalar == nil { members = [:] }
    }

    func makeArray() {
        if members == nil, elements == nil, scalar == nil { elements = [] }
    }

    func set(_ node: EncodingNode, for name: String) {
        if members == nil { members = [:] }
        if members!.updateValue(node, forKey: name) == nil { names.append(name) }
    }

    func write(to output: inout [UInt8], options: ControlJSONEncoder.Options, indent: Int) {
        let pretty = options.contains(.prettyPrinted)
        if let scalar {
            output.append(contentsOf: scalar.utf8)
        } else if let elements {
            guard !elements.isEmpty else { return output.append(contentsOf: "[]".utf8) }
            output.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                if pretty { Self.newline(&output, indent + 2) }
                element.write(to: &output, options: options, indent: indent + 2)
            }
            if pretty { Self.newline(&output, indent) }
            output.append(UInt8(ascii: "]"))
        } else {
            // An object, or a value that encoded nothing (Foundation writes `{}` for it too).
            let members = members ?? [:]
            guard !members.isEmpty else { return output.append(contentsOf: "{}".utf8) }
            output.append(UInt8(ascii: "{"))
            for (index, name) in (options.contains(.sortedKeys) ? names.sorted() : names).enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                if pretty { Self.newline(&output, indent + 2) }
                JSONText.appendString(name, to: &output)
                output.append(contentsOf: pretty ? " : ".utf8 : ":".utf8)
                members[name]!.write(to: &output, options: options, indent: indent + 2)
            }
            if pretty { Self.newline(&output, indent) }
            output.append(UInt8(ascii: "}"))
        }
    }

    private static func newline(_ output: inout [UInt8], _ indent: Int) {
        output.append(UInt8(ascii: "\n"))
        output.append(contentsOf: repeatElement(UInt8(ascii: " "), count: indent))
    }
}

/// JSON's scalar forms.
enum JSONText {
    /// A string in quotes: `"` and `\` escaped, control characters as `\n`-style or `\u00XX` escapes, everything
    /// else (`/` and non-ASCII included) as it is.
    static func appendString(_ text: String, to output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): output.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\\"): output.append(contentsOf: #"\\"#.utf8)
            case 0x0A: output.append(contentsOf: #"\n"#.utf8)
            case 0x0D: output.append(contentsOf: #"\r"#.utf8)
            case 0x09: output.append(contentsOf: #"\t"#.utf8)
            case 0x08: output.append(contentsOf: #"\b"#.utf8)
            case 0x0C: output.append(contentsOf: #"\f"#.utf8)
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                output.append(contentsOf: #"\u00"#.utf8)
                output.append(hex[Int(byte >> 4)])
                output.append(hex[Int(byte & 0xF)])
            default: output.append(byte)
            }
        }
        output.append(UInt8(ascii: "\""))
    }

    static func string(_ text: String) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(text.utf8.count + 2)
        appendString(text, to: &output)
        return String(decoding: output, as: UTF8.self)
    }

    /// A finite double as Swift prints it (shortest round-trip form), `.0` dropped as Foundation drops it.
    static func number<F: BinaryFloatingPoint & CustomStringConvertible>(
        _ value: F, codingPath: [any CodingKey]
    ) throws -> String {
        guard value.isFinite else {
            throw EncodingError.invalidValue(value, .init(codingPath: codingPath,
                debugDescription: "\(value) cannot be written in JSON"))
        }
        var text = value.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        return text
    }
}

/// The `Encoder` a value encodes itself to: every container it asks for writes into `node`.
struct NodeEncoder: Encoder {
    let node: EncodingNode
    let codingPath: [any CodingKey]
    let options: ControlJSONEncoder.Options
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        node.makeObject()
        return KeyedEncodingContainer(KeyedNodeContainer<Key>(node: node, codingPath: codingPath, options: options))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        node.makeArray()
        return UnkeyedNodeContainer(node: node, codingPath: codingPath, options: options)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleNodeContainer(node: node, codingPath: codingPath, options: options)
    }

    /// The node for `value`: scalars written directly, everything else through its own `encode(to:)`.
    static func node<T: Encodable>(
        for value: T, codingPath: [any CodingKey], options: ControlJSONEncoder.Options
    ) throws -> EncodingNode {
        switch value {
        case let text as String: return EncodingNode(scalar: JSONText.string(text))
        case let number as Int: return EncodingNode(scalar: String(number))
        case let flag as Bool: return EncodingNode(scalar: flag ? "true" : "false")
        case let number as Double: return EncodingNode(scalar: try JSONText.number(number, codingPath: codingPath))
        default:
            let node = EncodingNode()
            try value.encode(to: NodeEncoder(node: node, codingPath: codingPath, options: options))
            return node
        }
    }
}

/// A coding key made at run time (array indexes, `super`).
struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int?

    init(stringValue: String) {
        self.stringValue = stringValue
    }

    init(intValue: Int) {
        self.stringValue = String(intValue)
        self.intValue = intValue
    }
}

struct KeyedNodeContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: EncodingNode
    let codingPath: [any CodingKey]
    let options: ControlJSONEncoder.Options

    private func name(_ key: Key) -> String {
        options.contains(.snakeCaseKeys) ? ControlJSONEncoder.snakeCase(key.stringValue) : key.stringValue
    }

    mutating func encodeNil(forKey key: Key) throws {
        node.set(EncodingNode(scalar: "null"), for: name(key))
    }

    mutating func encode(_ value: Bool, forKey key: Key) throws {
        node.set(EncodingNode(scalar: value ? "true" : "false"), for: name(key))
    }

    mutating func encode(_ value: String, forKey key: Key) throws {
        node.set(EncodingNode(scalar: JSONText.string(value)), for: name(key))
    }

    mutating func encode(_ value: Double, forKey key: Key) throws {
        node.set(EncodingNode(scalar: try JSONText.number(value, codingPath: codingPath + [key])), for: name(key))
    }

    mutating func encode(_ value: Int, forKey key: Key) throws {
        node.set(EncodingNode(scalar: String(value)), for: name(key))
    }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        node.set(try NodeEncoder.node(for: value, codingPath: codingPath + [key], options: options), for: name(key))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type, forKey key: Key
    ) -> KeyedEncodingContainer<NestedKey> {
        let child = EncodingNode()
        node.set(child, for: name(key))
        return NodeEncoder(node: child, codingPath: codingPath + [key], options: options).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let child = EncodingNode()
        node.set(child, for: name(key))
        return NodeEncoder(node: child, codingPath: codingPath + [key], options: options).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder {
        superEncoder(forKey: Key(stringValue: "super")!)
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        let child = EncodingNode()
        node.set(child, for: name(key))
        return NodeEncoder(node: child, codingPath: codingPath + [key], options: options)
    }
}

struct UnkeyedNodeContainer: UnkeyedEncodingContainer {
    let node: EncodingNode
    let codingPath: [any CodingKey]
    let options: ControlJSONEncoder.Options
    var count: Int { node.elements?.count ?? 0 }

    private var nextPath: [any CodingKey] { codingPath + [AnyCodingKey(intValue: count)] }

    mutating func encodeNil() throws { node.elements!.append(EncodingNode(scalar: "null")) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        node.elements!.append(try NodeEncoder.node(for: value, codingPath: nextPath, options: options))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type
    ) -> KeyedEncodingContainer<NestedKey> {
        let child = EncodingNode()
        let path = nextPath
        node.elements!.append(child)
        return NodeEncoder(node: child, codingPath: path, options: options).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let child = EncodingNode()
        let path = nextPath
        node.elements!.append(child)
        return NodeEncoder(node: child, codingPath: path, options: options).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder {
        let child = EncodingNode()
        let path = nextPath
        node.elements!.append(child)
        return NodeEncoder(node: child, codingPath: path, options: options)
    }
}

struct SingleNodeContainer: SingleValueEncodingContainer {
    let node: EncodingNode
    let codingPath: [any CodingKey]
    let options: ControlJSONEncoder.Options

    mutating func encodeNil() throws { node.scalar = "null" }
    mutating func encode(_ value: Bool) throws { node.scalar = value ? "true" : "false" }
    mutating func encode(_ value: String) throws { node.scalar = JSONText.string(value) }
    mutating func encode(_ value: Double) throws { node.scalar = try JSONText.number(value, codingPath: codingPath) }
    mutating func encode(_ value: Float) throws { node.scalar = try JSONText.number(value, codingPath: codingPath) }
    mutating func encode(_ value: Int) throws { node.scalar = String(value) }
    mutating func encode(_ value: Int8) throws { node.scalar = String(value) }
    mutating func encode(_ value: Int16) throws { node.scalar = String(value) }
    mutating func encode(_ value: Int32) throws { node.scalar = String(value) }
    mutating func encode(_ value: Int64) throws { node.scalar = String(value) }
    mutating func encode(_ value: UInt) throws { node.scalar = String(value) }
    mutating func encode(_ value: UInt8) throws { node.scalar = String(value) }
    mutating func encode(_ value: UInt16) throws { node.scalar = String(value) }
    mutating func encode(_ value: UInt32) throws { node.scalar = String(value) }
    mutating func encode(_ value: UInt64) throws { node.scalar = String(value) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        let encoded = try NodeEncoder.node(for: value, codingPath: codingPath, options: options)
        node.scalar = encoded.scalar
        node.elements = encoded.elements
        node.names = encoded.names
        node.members = encoded.members
    }
}
