// SPDX-License-Identifier: Apache-2.0

/// Who may use an HTTP API of Jester's (the admin API, the control plane's): bearer tokens (RFC 6750) with a
/// `read` or `write` role, from a tokens file (`ROLE TOKEN NAME`; the name is the actor in the control plane's
/// audit records). Pure over the tokens and the `Authorization` field.
public struct BearerAuthorization: Sendable, Equatable {
    public enum Decision: Equatable {
        /// Allowed, acting as this name.
        case allowed(actor: String)
        /// No usable credentials: 401 with `WWW-Authenticate: Bearer`.
        case unauthorized(String)
        /// Valid credentials whose role is too weak: 403 (the actor is named in the audit record).
        case forbidden(actor: String, reason: String)
    }

    /// nil: no tokens, every client may write as `anonymous` (the servers then listen on loopback or a Unix
    /// socket only).
    public var tokens: AdminTokens?

    public init(tokens: AdminTokens?) {
        self.tokens = tokens
    }

    public func decide(authorization: String?, required: AdminRole) -> Decision {
        guard let tokens else { return .allowed(actor: "anonymous") }
        guard let authorization else { return .unauthorized("a bearer token is needed") }
        // RFC 6750 §2.1: "Bearer" is a case-insensitive scheme, then spaces, then the token.
        let token = authorization.dropFirst(7).drop { $0 == " " }
        guard authorization.prefix(7).lowercased() == "bearer ", !token.isEmpty else {
            return .unauthorized("the Authorization field must be 'Bearer TOKEN'")
        }
        guard let entry = tokens.entry(for: token.utf8) else {
            return .unauthorized("the token is not valid")
        }
        guard entry.role.allows(required) else {
            return .forbidden(
                actor: entry.name, reason: "a \(required.rawValue) token is needed; this one is \(entry.role.rawValue)")
        }
        return .allowed(actor: entry.name)
    }
}
