// SPDX-License-Identifier: Apache-2.0
import Foundation

/// Checks a JSON value against the JSON Schema a policy declares for its configuration (its manifest's
/// `config_schema`), so a configuration the policy would misread is refused where it is written, with the path of
/// the member at fault, rather than found by the policy's `init`, or not at all.
///
/// The keywords configurations use: `type` (one or a list), `enum`, `const`, `properties`, `required`,
/// `additionalProperties` (false or a schema), `items`, `minItems`, `maxItems`, `minLength`, `maxLength`,
/// `pattern`, `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, and `anyOf`. Other keywords
/// (`$schema`, `title`, `description`, `default`, ...) are ignored, as annotations are.
public enum JSONSchemaCheck {
    /// The problems of `value` (parsed JSON) against `schema`, each "at /pointer: what".
    public static func problems(_ value: Any, schema: Any) -> [String] {
        var found: [String] = []
        check(value, schema, pointer: "", into: &found)
        return found
    }

    private static func check(_ value: Any, _ schema: Any, pointer: String, into found: inout [String]) {
        guard let schema = schema as? [String: Any] else { return }
        let at = pointer.isEmpty ? "/" : pointer
        if let types = schema["type"] {
            let allowed = (types as? [String]) ?? [(types as? String) ?? ""]
            guard allowed.contains(where: { matches(value, type: $0) }) else {
                found.append("at \(at): expected \(allowed.joined(separator: " or ")), not \(describe(value))")
                return
            }
        }
        if let options = schema["enum"] as? [Any], !options.contains(where: { equal($0, value) }) {
            found.append("at \(at): must be one of \(options.map(render).joined(separator: ", "))")
        }
        if let constant = schema["const"], !equal(constant, value) {
            found.append("at \(at): must be \(render(constant))")
        }
        if let alternatives = schema["anyOf"] as? [Any] {
            let fits = alternatives.contains { alternative in
                var ignored: [String] = []
                check(value, alternative, pointer: pointer, into: &ignored)
                return ignored.isEmpty
            }
            if !fits { found.append("at \(at): matches none of the allowed forms") }
        }
        if let object = value as? [String: Any] {
            let properties = schema["properties"] as? [String: Any] ?? [:]
            for name in (schema["required"] as? [String] ?? []) where object[name] == nil {
                found.append("at \(at): missing required member \"\(name)\"")
            }
            for (name, member) in object.sorted(by: { $0.key < $1.key }) {
                let path = pointer + "/" + name.replacingOccurrences(of: "~", with: "~0")
                    .replacingOccurrences(of: "/", with: "~1")
                if let property = properties[name] {
                    check(member, property, pointer: path, into: &found)
                } else if let additional = schema["additionalProperties"] {
                    if (additional as? Bool) == false {
                        let known = properties.keys.sorted().map { "\"\($0)\"" }.joined(separator: ", ")
                        found.append("at \(path): unknown member" + (known.isEmpty ? "" : " (known: \(known))"))
                    } else {
                        check(member, additional, pointer: path, into: &found)
                    }
                }
            }
        }
        if let array = value as? [Any] {
            if let items = schema["items"] {
                for (index, element) in array.enumerated() {
                    check(element, items, pointer: "\(pointer)/\(index)", into: &found)
                }
            }
            if let least = integer(schema["minItems"]), array.count < least {
                found.append("at \(at): needs at least \(least) items")
            }
            if let most = integer(schema["maxItems"]), array.count > most {
                found.append("at \(at): takes at most \(most) items")
            }
        }
        if let text = value as? String {
            // (JSON Schema counts code points.)
            if let least = integer(schema["minLength"]), text.unicodeScalars.count < least {
                found.append("at \(at): must be at least \(least) characters")
            }
            if let most = integer(schema["maxLength"]), text.unicodeScalars.count > most {
                found.append("at \(at): must be at most \(most) characters")
            }
            if let pattern = schema["pattern"] as? String {
                if let expression = try? NSRegularExpression(pattern: pattern) {
                    if expression.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) == nil {
                        found.append("at \(at): must match \(pattern)")
                    }
                } else {
                    found.append("at \(at): the schema's pattern \(pattern) is not a regular expression")
                }
            }
        }
        if let number = number(value) {
            if let bound = self.number(schema["minimum"]), number < bound { found.append("at \(at): must be ≥ \(render(bound))") }
            if let bound = self.number(schema["maximum"]), number > bound { found.append("at \(at): must be ≤ \(render(bound))") }
            if let bound = self.number(schema["exclusiveMinimum"]), number <= bound {
                found.append("at \(at): must be > \(render(bound))")
            }
            if let bound = self.number(schema["exclusiveMaximum"]), number >= bound {
                found.append("at \(at): must be < \(render(bound))")
            }
        }
    }

    private static func matches(_ value: Any, type: String) -> Bool {
        switch type {
        case "object": return value is [String: Any]
        case "array": return value is [Any]
        case "string": return value is String
        case "boolean": return isBoolean(value)
        case "null": return value is NSNull
        case "number": return number(value) != nil
        case "integer": return number(value).map { $0 == $0.rounded() } ?? false
        default: return false
        }
    }

    /// JSONSerialization gives booleans as NSNumber too (and `1 is Bool` holds through bridging): a boolean's
    /// encoding is a char, a parsed number's never is.
    private static func isBoolean(_ value: Any) -> Bool {
        guard let number = value as? NSNumber else { return false }
        return String(cString: number.objCType) == "c"
    }

    private static func number(_ value: Any?) -> Double? {
        guard let value, let number = value as? NSNumber, !isBoolean(value) else { return nil }
        return number.doubleValue
    }

    private static func integer(_ value: Any?) -> Int? {
        number(value).map { Int($0) }
    }

    /// (A boolean is not a number here, though both come as NSNumber: `true` is not `1`.)
    private static func equal(_ a: Any, _ b: Any) -> Bool {
        isBoolean(a) == isBoolean(b) && render(a) == render(b)
    }

    private static func describe(_ value: Any) -> String {
        if value is [String: Any] { return "an object" }
        if value is [Any] { return "an array" }
        if value is String { return "a string" }
        if isBoolean(value) { return "a boolean" }
        if value is NSNull { return "null" }
        return "a number"
    }

    private static func render(_ value: Any) -> String {
        if isBoolean(value), let flag = value as? Bool { return flag ? "true" : "false" }
        if let number = value as? Double, number == number.rounded(), abs(number) < 1e15 { return String(Int(number)) }
        if let data = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys]) {
            return String(decoding: data, as: UTF8.self)
        }
        return "\(value)"
    }
}
