// SPDX-License-Identifier: Apache-2.0

/// Refuses admin actions a browser sends on behalf of another site: defence in depth against cross-site request
/// forgery.
///
/// The dashboard sends its token from script (`Authorization: Bearer`), never as a cookie, so a forged request
/// from another page carries no credentials and fails authorization anyway. But an API without tokens (loopback
/// or a Unix socket: every client may act) has no credentials to miss, and a page on any site can make a browser
/// on the operator's machine POST to `127.0.0.1:9901`. So an action is refused when the browser says it comes from
/// elsewhere: `Sec-Fetch-Site` other than `same-origin` or `none` (a user typing the URL), or an `Origin` whose
/// host and port are not the `Host` the request was sent to. Clients that are not browsers (curl, jesterctl,
/// scripts) send neither field and are not affected. Pure, so every combination is tested without a socket.
public enum CrossSiteCheck {
    /// The decision.
    public enum Decision: Equatable {
        case allowed
        /// 403 with this message.
        case refuse(String)
    }

    /// Whether an action with these fields (nil: absent) may proceed.
    public static func decide(origin: String?, fetchSite: String?, host: String?) -> Decision {
        // Fetch Metadata: the browser's own word on where the request comes from. `same-site` is refused too:
        // another port of the same host is the same site, and is exactly where a hostile local page would be.
        if let fetchSite {
            switch fetchSite.lowercased() {
            case "same-origin", "none": break
            default: return .refuse("a cross-site request may not act (Sec-Fetch-Site: \(fetchSite))")
            }
        }
        guard let origin else { return .allowed }
        // RFC 6454 §7: scheme "://" host [":" port], or "null" from an opaque origin (a sandboxed frame, a file).
        // The scheme is not compared: the API may be reached through a TLS listener that forwards plain HTTP.
        let authority: Substring
        if let separator = origin.range(of: "://") {
            authority = origin[separator.upperBound...]
        } else {
            return .refuse("a request from an opaque origin may not act (Origin: \(origin))")
        }
        guard let host, !host.isEmpty, authority.lowercased() == host.lowercased() else {
            return .refuse("a request from another origin may not act (Origin: \(origin))")
        }
        return .allowed
    }
}
