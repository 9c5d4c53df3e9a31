// SPDX-License-Identifier: Apache-2.0
import Foundation

/// Which values of a configuration are secrets, and the copy of a configuration with them replaced, for every
/// tool that shows a configuration to a person (`jester diag`, and an admin API's effective config).
///
/// Secrets kept in files (htpasswd, JWT and webhook HMAC secrets, Redis passwords) are shown by path only, which
/// is safe: the loader has their contents in memory, and those are what this replaces. Secrets written inline in the TOML file are header
/// values: a token a route sends upstream (`request_headers`), a key a route matches on (`match_headers`), a cookie a
/// fixed response sets. The field name says which are secret; redacting a value that was not costs a reader one lookup
/// in the file, while showing one that was leaks it into terminals, tickets and chat.
public enum ConfigRedaction {
    /// What a secret value is shown as.
    public static let placeholder = "(redacted)"

    /// Field names whose values are credentials whatever they contain (lowercase).
    static let secretNames: Set<String> = ["authorization", "proxy-authorization", "cookie", "set-cookie"]
    /// Parts of a field or query parameter name that mark its value as a credential (`X-Api-Key`,
    /// `X-Auth-Token`, `client_secret`, `access_token`).
    static let secretNameParts = ["token", "secret", "password", "passwd", "api-key", "api_key", "apikey",
        "credential", "signature", "session"]

    /// Whether a header field or query parameter called `name` carries a credential.
    public static func isSecret(name: String) -> Bool {
        let lowercased = name.lowercased()
        return secretNames.contains(lowercased) || secretNameParts.contains { lowercased.contains($0) }
    }

    static func redacted(_ pair: HeaderPair) -> HeaderPair {
        isSecret(name: pair.name) ? HeaderPair(name: pair.name, value: placeholder) : pair
    }

    static func redacted(_ field: FieldMatch) -> FieldMatch {
        guard isSecret(name: field.name) else { return field }
        var copy = field
        if copy.value != nil { copy.value = placeholder }
        if copy.regex != nil { copy.regex = placeholder }
        return copy
    }

    static func redacted(_ edits: HeaderEditSettings) -> HeaderEditSettings {
        var copy = edits
        copy.set = edits.set.map(redacted)
        copy.add = edits.add.map(redacted)
        return copy
    }
}

extension Configuration {
    /// This configuration with every secret value replaced by `ConfigRedaction.placeholder`: for showing, never
    /// for serving (a redacted JWT secret verifies nothing). File paths, names and the hash stay, so the copy
    /// still says where each secret comes from and which configuration it describes.
    public func redactingSecrets() -> Configuration {
        var copy = self
        copy.filters = filters.map { filter in
            var filter = filter
            switch filter.kind {
            case .basicAuth(var auth):
                // Password hashes: crackable offline, so as secret as the passwords.
                auth.htpasswd = ConfigRedaction.placeholder
                filter.kind = .basicAuth(auth)
            case .jwt(var jwt):
                if jwt.secret != nil { jwt.secret = Data(ConfigRedaction.placeholder.utf8) }
                filter.kind = .jwt(jwt)
            case .hmacSignature(var hmac):
                hmac.secret = Data(ConfigRedaction.placeholder.utf8)
                filter.kind = .hmacSignature(hmac)
            case .rateLimit(var limit):
                if limit.redis?.password != nil { limit.redis?.password = ConfigRedaction.placeholder }
                filter.kind = .rateLimit(limit)
            case .ipRules, .cors:
                break
            }
            return filter
        }
        // A policy's configuration may hold its secrets (keys, tokens); its module's bytes are no reading matter.
        copy.policies = policies.map { policy in
            var policy = policy
            policy.moduleBytes = Data()
            if policy.config != "{}" { policy.config = ConfigRedaction.placeholder }
            return policy
        }
        copy.routes = routes.map { route in
            var route = route
            route.match.headers = route.match.headers.map(ConfigRedaction.redacted)
            route.match.query = route.match.query.map(ConfigRedaction.redacted)
            route.rewrite.requestHeaders = ConfigRedaction.redacted(route.rewrite.requestHeaders)
            route.rewrite.responseHeaders = ConfigRedaction.redacted(route.rewrite.responseHeaders)
            if case .respond(let status, let headers, let body) = route.action {
                route.action = .respond(status: status, headers: headers.map(ConfigRedaction.redacted), body: body)
            }
            return route
        }
        return copy
    }
}
