// SPDX-License-Identifier: Apache-2.0
import Foundation

extension ConfigSchema {
    /// Which file a JSON Schema describes.
    public enum Document: Sendable {
        /// A main file (`jester.toml`): it has listeners, or includes files that do.
        case main
        /// An included file (`conf.d/*.toml`): any table of a main file but `include`, none required (the loader
        /// merges fragments into the main file and checks the whole).
        case fragment
    }

    /// The configuration format as JSON Schema (draft 2020-12), for editors and CI linters.
    ///
    /// Generated from the same tables and `Units` patterns the loader reads with, so a file the loader accepts
    /// passes the schema: strings may be `${VAR}` substitutions wherever the loader expands them (every string,
    /// then checked against the key's type), and durations and sizes have exactly the loader's forms.
    public static func jsonSchema(_ document: Document = .main) -> String {
        var schema = jsonSchema(for: .table(root))
        var properties = schema["properties"] as! [String: Any]
        switch document {
        case .main:
            schema["title"] = "Jester configuration (jester.toml)"
            // The loader needs listeners in the merged whole; a main file may leave them to its includes.
            schema["required"] = [String]()
            schema["anyOf"] = [["required": ["listeners"]], ["required": ["include"]]]
        case .fragment:
            schema["title"] = "Jester configuration fragment (a file named by include)"
            properties.removeValue(forKey: "include")
            schema["required"] = [String]()
        }
        schema["properties"] = properties
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        let data = try! JSONSerialization.data(withJSONObject: schema, options: [.prettyPrinted, .sortedKeys])
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    /// A string holding a `${VAR}` reference: its type is known only once the environment is read.
    private static var substitution: [String: Any] {
        [
            "type": "string", "pattern": "\\$\\{[A-Za-z0-9_]+(:-[^}]*)?\\}",
            "description": "An environment variable reference, expanded by the loader and then checked.",
        ]
    }

    /// An IPv4 address and port, or a bracketed IPv6 address and port (the loader checks the address itself).
    private static let ipAddressPattern = "^([0-9]{1,3}(\\.[0-9]{1,3}){3}|\\[[0-9a-fA-F:.]+\\]):[0-9]{1,5}$"
    /// The same, or a host name and port.
    private static let hostAddressPattern = "^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9._-]+):[0-9]{1,5}$"

    private static func jsonSchema(for type: ValueType) -> [String: Any] {
        switch type {
        case .string: return ["type": "string"]
        case .integer(let range):
            return ["anyOf": [["type": "integer", "minimum": range.lowerBound, "maximum": range.upperBound], substitution]]
        case .boolean: return ["type": "boolean"]
        case .duration:
            return ["anyOf": [["type": "string", "pattern": Units.durationPattern], substitution]]
        case .size:
            return ["anyOf": [["type": "integer", "minimum": 0], ["type": "string", "pattern": Units.sizePattern],
                substitution]]
        case .choice(let options): return ["anyOf": [["enum": options], substitution]]
        case .address: return ["anyOf": [["type": "string", "pattern": ipAddressPattern], substitution]]
        case .hostAddress: return ["anyOf": [["type": "string", "pattern": hostAddressPattern], substitution]]
        case .target(let table): return ["anyOf": [jsonSchema(for: .hostAddress), jsonSchema(for: .table(table))]]
        case .array(let element): return ["type": "array", "items": jsonSchema(for: element)]
        case .map(let value): return ["type": "object", "additionalProperties": jsonSchema(for: value)]
        case .kinds(let tables): return ["oneOf": tables.map { jsonSchema(for: .table($0)) }]
        case .json: return [:]
        case .either(let types): return ["anyOf": types.map { jsonSchema(for: $0) }]
        case .number(let range):
            return ["anyOf": [["type": "number", "minimum": range.lowerBound, "maximum": range.upperBound], substitution]]
        case .table(let table):
            var properties: [String: Any] = [:]
            for field in table.fields {
                var property = jsonSchema(for: field.type)
                var description = field.summary
                if let defaultValue = field.defaultValue { description += " Default: \(defaultValue)." }
                property["description"] = description
                properties[field.name] = property
            }
            return [
                "type": "object", "properties": properties, "additionalProperties": false,
                "required": table.fields.filter(\.isRequired).map(\.name),
            ]
        }
    }
}
