// SPDX-License-Identifier: Apache-2.0

/// The claims set of a verified token (RFC 7519 §4), with typed lookups for what the filters do with it:
/// forward a claim as a request header, key a rate limit on it, or match it against an allow-list.
public struct JWTClaims: Sendable, Equatable {
    /// Every member of the claims object, registered and private alike.
    public let members: [String: JSONValue]

    /// Reads the registered claims' types, so a validated token never has, say, a string `exp`.
    init(members: [String: JSONValue]) throws(JWTRefusal) {
        self.members = members
        for name in ["exp", "nbf", "iat"] where members[name] != nil && members[name]?.numberValue == nil {
            throw .malformed(.registeredClaim)
        }
        for name in ["iss", "sub"] where members[name] != nil && members[name]?.stringValue == nil {
            throw .malformed(.registeredClaim)
        }
        // RFC 7519 §4.1.3: a string or an array of strings.
        if let audience = members["aud"], audience.stringsValue == nil { throw .malformed(.registeredClaim) }
    }

    /// The claim `name`, any type.
    public subscript(name: String) -> JSONValue? { members[name] }

    /// A claim inside nested objects: `["realm_access", "roles"]` is Keycloak's role list. A path, not a dotted
    /// string, because claim names themselves may contain dots ("http://example.com/is_root").
    public func value(at path: [String]) -> JSONValue? {
        guard let first = path.first else { return nil }
        var value = members[first]
        for name in path.dropFirst() {
            guard case .object(let object)? = value else { return nil }
            value = object[name]
        }
        return value
    }

    /// The claim `name` if it is a string.
    public func string(_ name: String) -> String? { members[name]?.stringValue }

    /// The claim `name` if it is a number.
    public func number(_ name: String) -> Double? { members[name]?.numberValue }

    /// The claim `name` if it is a string or an array of strings (a lone string is a one-element list).
    public func strings(_ name: String) -> [String]? { members[name]?.stringsValue }

    /// `iss`.
    public var issuer: String? { string("iss") }
    /// `sub`, the identity a filter forwards or rate-limits on by default.
    public var subject: String? { string("sub") }
    /// `aud`, always as a list.
    public var audiences: [String] { strings("aud") ?? [] }
    /// `exp`, seconds since the epoch (NumericDate, RFC 7519 §2; fractions allowed).
    public var expiry: Double? { number("exp") }
    /// `nbf`, seconds since the epoch.
    public var notBefore: Double? { number("nbf") }

    /// The claim as header-safe text for forwarding (`X-User: alice`): a string as is, a number in its shortest
    /// form (integers without ".0"), a boolean as true/false, a list of strings joined with ", "; nil for objects,
    /// null, mixed lists, or text holding control characters (which must never reach a header).
    public func headerValue(_ name: String) -> String? {
        let text: String
        switch members[name] {
        case .string(let value)?:
            text = value
        case .number(let value)?:
            text = value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
        case .bool(let value)?:
            text = value ? "true" : "false"
        case .array?:
            guard let strings = strings(name) else { return nil }
            text = strings.joined(separator: ", ")
        default:
            return nil
        }
        guard !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else { return nil }
        return text
    }
}
