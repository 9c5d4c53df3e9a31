// SPDX-License-Identifier: Apache-2.0
#if canImport(FoundationEssentials)
import FoundationEssentials  // JSONDecoder without the full Foundation and its ICU data (see bench/PERFORMANCE.md)
#else
import Foundation
#endif

/// Any JSON value: what a JOSE header, a claims set or a JSON Web Key holds before its members are checked.
///
/// Why an enum and not Codable structs for tokens: a claims set is open (any issuer adds its own claims, and the
/// filters forward or rate-limit on names chosen in the configuration), so the validator needs the whole object
/// and reads the registered members from it. Parsing is Foundation's `JSONDecoder`, not a hand-written parser.
public enum JSONValue: Sendable, Equatable, Decodable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        // Most members are strings and numbers: try those first.
        if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode([String: JSONValue].self) {
            self = .object(value)
        } else {
            self = .array(try container.decode([JSONValue].self))
        }
    }

    /// The JSON object in `bytes`, or nil if they are not UTF-8 JSON whose top level is an object.
    static func object(decoding bytes: [UInt8]) -> [String: JSONValue]? {
        guard case .object(let members)? = try? JSONDecoder().decode(JSONValue.self, from: Data(bytes)) else {
            return nil
        }
        return members
    }

    /// The string, if this is one.
    public var stringValue: String? {
        if case .string(let value) = self { value } else { nil }
    }

    /// The number, if this is one.
    public var numberValue: Double? {
        if case .number(let value) = self { value } else { nil }
    }

    /// The strings of an array made only of strings, or a lone string as a one-element list (the shape `aud`
    /// and most list-like claims, such as `groups` or `scope` arrays, take).
    public var stringsValue: [String]? {
        switch self {
        case .string(let value):
            return [value]
        case .array(let elements):
            var strings: [String] = []
            for element in elements {
                guard case .string(let value) = element else { return nil }
                strings.append(value)
            }
            return strings
        default:
            return nil
        }
    }
}
