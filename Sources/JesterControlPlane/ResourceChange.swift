// SPDX-License-Identifier: Apache-2.0

/// One difference between two snapshot versions: a resource added, removed or changed, or a whole kind taken
/// over from the data planes' files or given back to them.
public struct ResourceChange: Sendable, Equatable, Hashable, Comparable {
    public enum Change: String, Sendable {
        case added
        case removed
        case changed
    }

    public var kind: ResourceKind
    /// The resource; nil when the change is to the kind itself (`added`: the document now sets it and replaces
    /// the files'; `removed`: the files' own are served again).
    public var name: String?
    public var change: Change

    public init(kind: ResourceKind, name: String?, change: Change) {
        self.kind = kind
        self.name = name
        self.change = change
    }

    /// "route 'api' changed", "upstreams given back to the bootstrap files".
    public var summary: String {
        guard let name else {
            switch change {
            case .added: return "\(kind.rawValue) set by the control plane"
            case .removed: return "\(kind.rawValue) given back to the bootstrap files"
            case .changed: return "\(kind.rawValue) reordered"
            }
        }
        return "\(kind.singular) '\(name)' \(change.rawValue)"
    }

    /// The changes from `old` to `new`, by kind, then name (the kind's own change first).
    public static func between(_ old: SnapshotDocument, _ new: SnapshotDocument) -> [ResourceChange] {
        var changes: [ResourceChange] = []
        for kind in ResourceKind.allCases {
            let wasSet = old.kinds.contains(kind)
            let isSet = new.kinds.contains(kind)
            if wasSet != isSet {
                changes.append(ResourceChange(kind: kind, name: nil, change: isSet ? .added : .removed))
            }
            let before = old.resources(kind)
            let after = new.resources(kind)
            for name in Set(before.keys).union(after.keys).sorted() {
                switch (before[name], after[name]) {
                case (nil, _?): changes.append(ResourceChange(kind: kind, name: name, change: .added))
                case (_?, nil): changes.append(ResourceChange(kind: kind, name: name, change: .removed))
                case (let before?, let after?) where before != after:
                    changes.append(ResourceChange(kind: kind, name: name, change: .changed))
                default: break
                }
            }
        }
        if old.names(.routes) != new.names(.routes), !changes.contains(where: { $0.kind == .routes }) {
            // Same routes, new order: the order breaks the router's ties, so it is a change too.
            changes.append(ResourceChange(kind: .routes, name: nil, change: .changed))
        }
        return changes
    }

    public static func < (lhs: ResourceChange, rhs: ResourceChange) -> Bool {
        if lhs.kind != rhs.kind { return lhs.kind < rhs.kind }
        return (lhs.name ?? "") < (rhs.name ?? "")
    }
}
