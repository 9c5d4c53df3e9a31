// SPDX-License-Identifier: Apache-2.0

/// The kinds of configuration a control plane owns: the dynamic keys of a snapshot (`ConfigSnapshot.dynamicKeys`),
/// each a collection of named resources under `/api/v1/<kind>/<name>`.
public enum ResourceKind: String, CaseIterable, Sendable, Comparable {
    case routes
    case upstreams
    case filters
    case policies

    /// "route", as messages name one resource of the kind.
    public var singular: String {
        switch self {
        case .routes: return "route"
        case .upstreams: return "upstream"
        case .filters: return "filter"
        case .policies: return "policy"
        }
    }

    public static func < (lhs: ResourceKind, rhs: ResourceKind) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}
