// SPDX-License-Identifier: Apache-2.0

/// Where in a request's life a policy runs (jester-policy(7)); the raw value is ABI v1's `stage` enum.
public enum PolicyStage: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// Before routing: the request head only.
    case preRoute = 0
    /// After route selection, before the upstream: the head, and the request body when the policy reads it.
    case preUpstream = 1
    /// The upstream's response: status, fields, and the body when the policy reads it.
    case postResponse = 2

    /// The name of the stage's export (and of the stage in configurations and logs).
    public var exportName: String {
        switch self {
        case .preRoute: "on-pre-route"
        case .preUpstream: "on-pre-upstream"
        case .postResponse: "on-post-response"
        }
    }

    /// The stage's name as configurations write it (`pre_route`), for logs and messages.
    public var description: String {
        switch self {
        case .preRoute: "pre_route"
        case .preUpstream: "pre_upstream"
        case .postResponse: "post_response"
        }
    }

    /// Whether the stage acts on the request (its header mutations edit the request).
    var isRequestStage: Bool { self != .postResponse }
}
