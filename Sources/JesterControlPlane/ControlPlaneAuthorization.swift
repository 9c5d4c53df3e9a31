// SPDX-License-Identifier: Apache-2.0
import JesterConfig

/// Who may use the control plane's REST API: bearer tokens (RFC 6750) with a `read` or `write` role, from a
/// tokens file in the admin API's format (`ROLE TOKEN NAME`; the name is the actor in audit records).
public struct ControlPlaneAuthorization: Sendable, Equatable {
    public enum Decision: Equatable {
        /// Allowed, acting as this name.
        case allowed(actor: String)
        /// No usable credentials: 401 with `WWW-Authenticate: Bearer`.
        case unauthorized(String)
        /// Valid credentials whose role is too weak: 403 (the actor is named in the audit record).
        case forbidden(actor: String, reason: String)
    }

    /// nil: no tokens, every client may write as `anonymous` (the server then listens on loopback only).
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
