// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterCore

/// `kind = "ip_rules"`: client networks allowed and denied, answered 403.
///
/// Deny wins over allow; with an allow list, every other client is denied (nginx's `allow`/`deny` in the usual
/// "deny first" order, HAProxy's `http-request deny if !{ src ... }`). The client is the one the connection's
/// trusted PROXY header named, when there is one, like everywhere else in Jester.
final class IPRulesFilter: RequestFilter {
    let name: String
    private let allow: [CIDR]
    private let deny: [CIDR]

    /// (The loader has checked every entry; one that does not parse here could not have been loaded.)
    init(name: String, settings: IPRuleSettings) {
        self.name = name
        // (A single address is a CIDR of its full length.)
        allow = settings.allow.compactMap(CIDR.init)
        deny = settings.deny.compactMap(CIDR.init)
    }

    func apply(_ request: FilterInput, context: FilterContext) -> FilterStep {
        .decided(decide(request.clientIP ?? IPAddressBytes(request.clientAddress)))
    }

    /// The verdict for a client address (nil: not an IP address, a Unix socket peer: denied when anything is
    /// allowed or denied, since the rules cannot be applied to it).
    func decide(_ client: IPAddressBytes?) -> FilterVerdict {
        guard let client else { return .fail(status: 403, reason: "ip_rules \(name): client address unknown") }
        if deny.contains(where: { $0.contains(client) }) {
            return .fail(status: 403, reason: "ip_rules \(name): \(client) denied")
        }
        if !allow.isEmpty, !allow.contains(where: { $0.contains(client) }) {
            return .fail(status: 403, reason: "ip_rules \(name): \(client) not allowed")
        }
        return .proceed
    }
}
