// SPDX-License-Identifier: Apache-2.0

/// The user and password of an `Authorization: Basic` header (RFC 7617).
public struct BasicCredentials: Sendable, Equatable {
    /// The user-id: never empty, no colon, no control characters.
    public let user: String
    /// The password: anything after the first colon except control characters (may be empty).
    public let password: String

    public init(user: String, password: String) {
        self.user = user
        self.password = password
    }

    /// The credentials in `headerValue` (`Basic dXNlcjpwYXNz`), or nil unless it is exactly that: the scheme
    /// (any letter case, RFC 9110 §11.1), one or more spaces, then canonical padded base64 of UTF-8
    /// `user:password` with a non-empty user and no control characters (RFC 7617 §2).
    ///
    /// Why strict: a lenient decoder lets one credential be spelt many ways, which defeats caching and log
    /// matching; a client that sends anything else is broken and gets a 401 like a wrong password.
    public static func parse(headerValue: Substring) -> BasicCredentials? {
        let scheme = headerValue.prefix { $0 != " " }
        guard scheme.lowercased() == "basic" else { return nil }
        let encoded = headerValue[scheme.endIndex...].drop { $0 == " " }
        guard !encoded.isEmpty, let decoded = Base64.decode(encoded.utf8, .standardPadded) else { return nil }
        // RFC 7617 §2.1 lets servers announce UTF-8; Jester accepts nothing else (other bytes fail here).
        guard let text = String(validating: decoded, as: UTF8.self) else { return nil }
        guard let colon = text.firstIndex(of: ":") else { return nil }
        let user = String(text[..<colon])
        let password = String(text[text.index(after: colon)...])
        guard !user.isEmpty,
            !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F })
        else { return nil }
        return BasicCredentials(user: user, password: password)
    }

    /// The `WWW-Authenticate` value for a 401 (RFC 7617 §2): `Basic realm="…", charset="UTF-8"`; quotes and
    /// backslashes in the configured realm are escaped, control characters dropped.
    public static func challenge(realm: String) -> String {
        var quoted = ""
        for scalar in realm.unicodeScalars where scalar.value >= 0x20 && scalar.value != 0x7F {
            if scalar == "\"" || scalar == "\\" { quoted.append("\\") }
            quoted.unicodeScalars.append(scalar)
        }
        return "Basic realm=\"\(quoted)\", charset=\"UTF-8\""
    }
}
