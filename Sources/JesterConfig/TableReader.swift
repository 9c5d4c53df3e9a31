// SPDX-License-Identifier: Apache-2.0
import JesterCore

/// Reads the keys of one table against its schema, and reports what is wrong with each.
struct TableReader {
    private let schema: ConfigSchema.Table
    private var children: [String: ConfigNode]
    private let node: ConfigNode

    init?(_ node: ConfigNode, _ schema: ConfigSchema.Table, decoder: inout ConfigDecoder) {
        guard case .table(let children) = node.value else {
            decoder.report(node.location, "\(schema.title) must be a table, not \(node.typeName)")
            return nil
        }
        self.schema = schema
        self.children = children
        self.node = node
        for field in schema.fields where field.isRequired && children[field.name] == nil {
            decoder.report(node.location, "\(schema.title) is missing '\(field.name)' (\(field.type.summary))")
        }
    }

    func has(_ key: String) -> Bool { children[key] != nil || consumed.contains(key) }

    /// The type the schema declares for `key`, which it must declare.
    func schemaType(of key: String) -> ConfigSchema.ValueType { schema.field(key)!.type }

    private var consumed: Set<String> = []
    private var locations: [String: SourceLocation] = [:]

    /// Where `key` was written, or the table itself.
    func location(of key: String) -> SourceLocation { locations[key] ?? node.location }

    /// Removes and returns the node of `key`, which the schema must declare.
    mutating func take(_ key: String, decoder: inout ConfigDecoder) -> ConfigNode? {
        precondition(schema.field(key) != nil, "\(schema.title) reads '\(key)', which ConfigSchema does not declare")
        consumed.insert(key)
        guard let child = children.removeValue(forKey: key) else { return nil }
        locations[key] = child.location
        return child
    }

    private mutating func wrongType(_ key: String, _ child: ConfigNode, decoder: inout ConfigDecoder) {
        let type = schema.field(key)!.type
        decoder.report(child.location, "'\(key)' in \(schema.title) must be \(type.summary), not \(child.describedValue)")
    }

    mutating func string(_ key: String, decoder: inout ConfigDecoder) -> String? {
        guard let child = take(key, decoder: &decoder) else { return nil }
        guard case .string(let value) = child.value else {
            wrongType(key, child, decoder: &decoder)
            return nil
        }
        return value
    }

    mutating func boolean(_ key: String, decoder: inout ConfigDecoder) -> Bool? {
        guard let child = take(key, decoder: &decoder) else { return nil }
        guard case .boolean(let value) = child.value else {
            wrongType(key, child, decoder: &decoder)
            return nil
        }
        return value
    }

    /// An integer within the schema's range. A string is accepted only when it came from an environment
    /// variable (`workers = "${WORKERS:-4}"`): a literal `"2"` is refused, so one grammar holds for the file, the
    /// schema and the dump.
    mutating func integer(_ key: String, decoder: inout ConfigDecoder) -> Int? {
        guard let child = take(key, decoder: &decoder) else { return nil }
        guard case .integer(let range) = schema.field(key)!.type else { preconditionFailure("\(key) is not an integer") }
        let value: Int
        switch child.value {
        case .integer(let number): value = number
        case .string(let text) where child.isSubstituted && Int(text) != nil: value = Int(text)!
        case .string(let text) where Int(text) != nil:
            decoder.report(child.location, "'\(key)' in \(schema.title) must be an integer: write \(text) without quotes")
            return nil
        default:
            wrongType(key, child, decoder: &decoder)
            return nil
        }
        guard range.contains(value) else {
            decoder.report(child.location, "'\(key)' must be from \(range.lowerBound) to \(range.upperBound), not \(value)")
            return nil
        }
        return value
    }

    /// A number within the schema's range: an integer or a decimal (or a string from an environment variable).
    mutating func number(_ key: String, decoder: inout ConfigDecoder) -> Double? {
        guard let child = take(key, decoder: &decoder) else { return nil }
        guard case .number(let range) = schema.field(key)!.type else { preconditionFailure("\(key) is not a number") }
        let value: Double
        switch child.value {
        case .integer(let number): value = Double(number)
        case .float(let number): value = number
        case .string(let text) where child.isSubstituted && Double(text) != nil: value = Double(text)!
        default:
            wrongType(key, child, decoder: &decoder)
            return nil
        }
        guard range.contains(value) else {
            decoder.report(child.location, "'\(key)' must be from \(range.lowerBound) to \(range.upperBound), not \(value)")
            return nil
        }
        return value
    }

    mutating func choice(_ key: String, decoder: inout ConfigDecoder) -> String? {
        guard let child = take(key, decoder: &decoder) else { return nil }
        guard case .choice(let options) = schema.field(key)!.type else { preconditionFailure("\(key) is no choice") }
        guard case .string(let value) = child.value, options.contains(value) else {
            var message = "'\(key)' must be \(schema.field(key)!.type.summary)"
            if case .string(let value) = child.value, let close = Suggestion.closest(to: value, among: options) {
                message += "; did you mean \"\(close)\"?"
            }
            decoder.report(child.location, message)
            return nil
        }
        return value
    }

    /// A duration: a string of a number and one unit (`Units`). A bare number is refused with the fix, since
    /// nothing in `75` says it means seconds.
    mutating func duration(_ key: String, decoder: inout ConfigDecoder) -> Duration? {
        guard let child = take(key, decoder: &decoder) else { return nil }
        switch child.value {
        case .string(let text):
            if let duration = Units.duration(text) { return duration }
            if let seconds = Int(text), seconds >= 0 {
                decoder.report(child.location, "'\(key)' in \(schema.title) must be a duration with a unit: write \"\(seconds)s\"")
            } else {
                decoder.report(child.location,
                    "'\(key)' in \(schema.title) must be a duration: \(Units.durationForms); not \"\(text)\"")
            }
        case .integer(let seconds) where seconds >= 0:
            decoder.report(child.location, "'\(key)' in \(schema.title) must be a duration with a unit: write \"\(seconds)s\"")
        default:
            wrongType(key, child, decoder: &decoder)
        }
        return nil
    }

    /// A size: an integer number of bytes, or a string of a number and a unit (`Units`).
    mutating func size(_ key: String, decoder: inout ConfigDecoder) -> Int64? {
        guard let child = take(key, decoder: &decoder) else { return nil }
        switch child.value {
        case .integer(let bytes) where bytes >= 0: return Int64(bytes)
        case .string(let text):
            if let bytes = Units.size(text) { return bytes }
            if child.isSubstituted, let bytes = Int64(text), bytes >= 0 { return bytes }
            if let bytes = Int64(text), bytes >= 0 {
                decoder.report(child.location,
                    "'\(key)' in \(schema.title) must be a size: write \(text) without quotes (bytes) or with a unit, \"\(text)KiB\"")
            } else {
                decoder.report(child.location, "'\(key)' in \(schema.title) must be a size: \(Units.sizeForms); not \"\(text)\"")
            }
        default:
            wrongType(key, child, decoder: &decoder)
        }
        return nil
    }

    /// An IP address and port (`.address`: what a socket binds or connects to without a lookup), or a host name
    /// and port (`.hostAddress`: upstream targets, which the master resolves).
    mutating func address(_ key: String, decoder: inout ConfigDecoder) -> SocketAddressSpec? {
        guard let child = take(key, decoder: &decoder) else { return nil }
        guard case .string(let text) = child.value, let address = SocketAddressSpec(parsing: text) else {
            wrongType(key, child, decoder: &decoder)
            return nil
        }
        if case .address = schema.field(key)!.type, IPAddressBytes(address.host) == nil {
            let what = schema.title == "[[listeners]]" ? "listeners bind IP addresses" : "this address is not looked up"
            decoder.report(child.location,
                "'\(key)' in \(schema.title) must be an IP address and port, not the host name \"\(address.host)\": "
                    + "\(what): use \"127.0.0.1:\(address.port)\" or \"[::1]:\(address.port)\"")
            return nil
        }
        return address
    }

    mutating func stringArray(_ key: String, decoder: inout ConfigDecoder) -> [String]? {
        guard let child = take(key, decoder: &decoder) else { return nil }
        guard case .array(let elements) = child.value else {
            wrongType(key, child, decoder: &decoder)
            return nil
        }
        var strings: [String] = []
        for element in elements {
            guard case .string(let value) = element.value else {
                decoder.report(element.location, "elements of '\(key)' must be strings, not \(element.typeName)")
                continue
            }
            strings.append(value)
        }
        return strings
    }

    /// Targets: each an address string, or a table with `address`, `weight` and `backup`.
    mutating func targetArray(_ key: String, decoder: inout ConfigDecoder) -> [UpstreamTarget]? {
        guard let child = take(key, decoder: &decoder) else { return nil }
        guard case .array(let elements) = child.value else {
            wrongType(key, child, decoder: &decoder)
            return nil
        }
        var targets: [UpstreamTarget] = []
        for element in elements {
            switch element.value {
            case .string(let text):
                guard let address = SocketAddressSpec(parsing: text) else {
                    decoder.report(element.location,
                        "elements of '\(key)' must be \(ConfigSchema.ValueType.hostAddress.summary), not \"\(text)\"")
                    continue
                }
                targets.append(UpstreamTarget(address: address))
            case .table:
                guard var table = TableReader(element, ConfigSchema.target, decoder: &decoder) else { continue }
                let address = table.address("address", decoder: &decoder)
                let weight = table.integer("weight", decoder: &decoder) ?? 1
                let backup = table.boolean("backup", decoder: &decoder) ?? false
                let maxRequests = table.integer("max_requests", decoder: &decoder)
                table.finish(decoder: &decoder)
                if let address {
                    targets.append(UpstreamTarget(address: address, weight: weight, backup: backup, maxRequests: maxRequests))
                }
            default:
                decoder.report(element.location,
                    "elements of '\(key)' must be \(ConfigSchema.ValueType.target(ConfigSchema.target).pluralSummary), not \(element.typeName)")
            }
        }
        return targets
    }

    /// The elements of an array of tables (`[[routes]]`).
    mutating func tables(_ key: String, decoder: inout ConfigDecoder) -> [ConfigNode] {
        guard let child = take(key, decoder: &decoder) else { return [] }
        guard case .array(let elements) = child.value else {
            wrongType(key, child, decoder: &decoder)
            return []
        }
        return elements
    }

    /// A table of user-chosen names (`[upstreams.NAME]`).
    mutating func map(_ key: String, decoder: inout ConfigDecoder) -> [String: ConfigNode] {
        guard let child = take(key, decoder: &decoder) else { return [:] }
        guard case .table(let entries) = child.value else {
            wrongType(key, child, decoder: &decoder)
            return [:]
        }
        return entries
    }

    /// A table of string values, sorted by key (TOML tables are unordered).
    mutating func stringMap(_ key: String, decoder: inout ConfigDecoder) -> [HeaderPair] {
        var pairs: [HeaderPair] = []
        for (name, node) in map(key, decoder: &decoder).sorted(by: { $0.key < $1.key }) {
            guard case .string(let value) = node.value else {
                decoder.report(node.location, "'\(name)' in '\(key)' must be a string, not \(node.typeName)")
                continue
            }
            pairs.append(HeaderPair(name: name, value: value))
        }
        return pairs
    }

    /// Reports every key that was not read: the user's unknown keys.
    func finish(decoder: inout ConfigDecoder) {
        let known = schema.fields.map(\.name)
        for (key, child) in children.sorted(by: { $0.key < $1.key }) {
            var message = "unknown key '\(key)' in \(schema.title)"
            if let suggestion = Suggestion.closest(to: key, among: known) {
                message += "; did you mean '\(suggestion)'?"
            }
            decoder.report(child.location, message)
        }
    }
}
