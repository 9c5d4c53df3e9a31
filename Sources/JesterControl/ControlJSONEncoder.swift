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
    /// A scalar, already in JSON form (`"text"`, `12`, `true`, `null`), as UTF-8.
    var scalar: [UInt8]?
    var elements: [EncodingNode]?
    /// Members in the order encoded. Not checked for a name given twice: synthesized conformances and
    /// `Dictionary` never encode one key twice into a container, and a peer's decoder refuses such an object.
    var members: [(name: String, node: EncodingNode)]?

    init() {}

    init(scalar: [UInt8]) {
        self.scalar = scalar
    }

    init(_ literal: StaticString) {
        self.scalar = Array(UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }

    func makeObject() {
        if members == nil, elements == nil, scalar == nil { members = [] }
    }

    func makeArray() {
        if members == nil, elements == nil, scalar == nil { elements = [] }
    }

    func set(_ node: EncodingNode, for name: String) {
        if members == nil { members = [] }
        members!.append((name, node))
    }

    func write(to output: inout [UInt8], options: ControlJSONEncoder.Options, indent: Int) {
        let pretty = options.contains(.prettyPrinted)
        if let scalar {
            output.append(contentsOf: scalar)
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
            guard var members, !members.isEmpty else { return output.append(contentsOf: "{}".utf8) }
            if options.contains(.sortedKeys) { members.sort { $0.name < $1.name } }
            output.append(UInt8(ascii: "{"))
            for (index, member) in members.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                if pretty { Self.newline(&output, indent + 2) }
                JSONText.appendString(member.name, to: &output)
                output.append(contentsOf: pretty ? " : ".utf8 : ":".utf8)
                member.node.write(to: &output, options: options, indent: indent + 2)
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
        var text = text
        text.withUTF8 { bytes in
            // Runs that need no escape (nearly everything) are copied whole.
            var runStart = 0
            for (index, byte) in bytes.enumerated() where byte < 0x20 || byte == 0x22 || byte == 0x5C {
                output.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<index]))
                runStart = index + 1
                switch byte {
                case UInt8(ascii: "\""): output.append(contentsOf: #"\""#.utf8)
                case UInt8(ascii: "\\"): output.append(contentsOf: #"\\"#.utf8)
                case 0x0A: output.append(contentsOf: #"\n"#.utf8)
                case 0x0D: output.append(contentsOf: #"\r"#.utf8)
                case 0x09: output.append(contentsOf: #"\t"#.utf8)
                case 0x08: output.append(contentsOf: #"\b"#.utf8)
                case 0x0C: output.append(contentsOf: #"\f"#.utf8)
                default:
                    let hex = Array("0123456789abcdef".utf8)
                    output.append(contentsOf: #"\u00"#.utf8)
                    output.append(hex[Int(byte >> 4)])
                    output.append(hex[Int(byte & 0xF)])
                }
            }
            output.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart...]))
        }
        output.append(UInt8(ascii: "\""))
    }

    static func string(_ text: String) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(text.utf8.count + 2)
        appendString(text, to: &output)
        return output
    }

    static func integer<I: BinaryInteger>(_ value: I) -> [UInt8] {
        Array(String(value).utf8)
    }

    /// A finite double as Swift prints it (shortest round-trip form), `.0` dropped as Foundation drops it.
    static func number<F: BinaryFloatingPoint & CustomStringConvertible>(
        _ value: F, codingPath: [any CodingKey]
    ) throws -> [UInt8] {
        guard value.isFinite else {
            throw EncodingError.invalidValue(value, .init(codingPath: codingPath,
                debugDescription: "\(value) cannot be written in JSON"))
        }
        var text = value.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        return Array(text.utf8)
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

    /// The node for `value`: scalars written directly, everything else through its own `encode(to:)`. The
    /// coding path (`path()`) is built only when needed, not for every member.
    static func node<T: Encodable>(
        for value: T, path: () -> [any CodingKey], options: ControlJSONEncoder.Options
    ) throws -> EncodingNode {
        if T.self == String.self { return EncodingNode(scalar: JSONText.string(value as! String)) }
        if T.self == Int.self { return EncodingNode(scalar: JSONText.integer(value as! Int)) }
        if T.self == Bool.self { return EncodingNode(value as! Bool ? "true" : "false") }
        if T.self == Double.self {
            return EncodingNode(scalar: try JSONText.number(value as! Double, codingPath: path()))
        }
        let node = EncodingNode()
        try value.encode(to: NodeEncoder(node: node, codingPath: path(), options: options))
        return node
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

/// Writes members into an object node, names converted to snake_case when the options say so.
struct KeyedNodeContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: EncodingNode
    let codingPath: [any CodingKey]
    let options: ControlJSONEncoder.Options

    private func name(_ key: Key) -> String {
        options.contains(.snakeCaseKeys) ? ControlJSONEncoder.snakeCase(key.stringValue) : key.stringValue
    }

    mutating func encodeNil(forKey key: Key) throws {
        node.set(EncodingNode("null"), for: name(key))
    }

    mutating func encode(_ value: Bool, forKey key: Key) throws {
        node.set(EncodingNode(value ? "true" : "false"), for: name(key))
    }

    mutating func encode(_ value: String, forKey key: Key) throws {
        node.set(EncodingNode(scalar: JSONText.string(value)), for: name(key))
    }

    mutating func encode(_ value: Double, forKey key: Key) throws {
        node.set(EncodingNode(scalar: try JSONText.number(value, codingPath: codingPath + [key])), for: name(key))
    }

    mutating func encode(_ value: Int, forKey key: Key) throws {
        node.set(EncodingNode(scalar: JSONText.integer(value)), for: name(key))
    }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        node.set(try NodeEncoder.node(for: value, path: { codingPath + [key] }, options: options), for: name(key))
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

/// Appends elements to an array node.
struct UnkeyedNodeContainer: UnkeyedEncodingContainer {
    let node: EncodingNode
    let codingPath: [any CodingKey]
    let options: ControlJSONEncoder.Options
    var count: Int { node.elements?.count ?? 0 }

    private var nextPath: [any CodingKey] { codingPath + [AnyCodingKey(intValue: count)] }

    mutating func encodeNil() throws { node.elements!.append(EncodingNode("null")) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        let (codingPath, index) = (codingPath, count)
        node.elements!.append(try NodeEncoder.node(
            for: value, path: { codingPath + [AnyCodingKey(intValue: index)] }, options: options))
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

/// Makes the node one value: a scalar, or whatever a nested value encodes itself as.
struct SingleNodeContainer: SingleValueEncodingContainer {
    let node: EncodingNode
    let codingPath: [any CodingKey]
    let options: ControlJSONEncoder.Options

    mutating func encodeNil() throws { node.scalar = Array("null".utf8) }
    mutating func encode(_ value: Bool) throws { node.scalar = Array((value ? "true" : "false").utf8) }
    mutating func encode(_ value: String) throws { node.scalar = JSONText.string(value) }
    mutating func encode(_ value: Double) throws { node.scalar = try JSONText.number(value, codingPath: codingPath) }
    mutating func encode(_ value: Float) throws { node.scalar = try JSONText.number(value, codingPath: codingPath) }
    mutating func encode(_ value: Int) throws { node.scalar = JSONText.integer(value) }
    mutating func encode(_ value: Int8) throws { node.scalar = JSONText.integer(value) }
    mutating func encode(_ value: Int16) throws { node.scalar = JSONText.integer(value) }
    mutating func encode(_ value: Int32) throws { node.scalar = JSONText.integer(value) }
    mutating func encode(_ value: Int64) throws { node.scalar = JSONText.integer(value) }
    mutating func encode(_ value: UInt) throws { node.scalar = JSONText.integer(value) }
    mutating func encode(_ value: UInt8) throws { node.scalar = JSONText.integer(value) }
    mutating func encode(_ value: UInt16) throws { node.scalar = JSONText.integer(value) }
    mutating func encode(_ value: UInt32) throws { node.scalar = JSONText.integer(value) }
    mutating func encode(_ value: UInt64) throws { node.scalar = JSONText.integer(value) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        let encoded = try NodeEncoder.node(for: value, path: { codingPath }, options: options)
        node.scalar = encoded.scalar
        node.elements = encoded.elements
        node.members = encoded.members
    }
}
