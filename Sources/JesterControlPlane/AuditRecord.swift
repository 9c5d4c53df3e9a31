// SPDX-License-Identifier: Apache-2.0
import JesterControl

/// One line of the control plane's audit log: who asked for which change, when, and what came of it.
///
/// Refused writes are recorded too (with the first problem), so the log answers "who tried to change this" as
/// well as "who changed it". Reads are not recorded: they change nothing, and a dashboard polls them.
public struct AuditRecord: Sendable, Equatable {
    public enum Outcome: String, Sendable {
        /// A new version was made.
        case accepted
        /// Nothing to change (the resource already had that value); no version was made.
        case unchanged
        /// Refused: invalid, a stale `If-Match`, or a role too weak.
        case refused
    }

    /// When, RFC 3339 in UTC.
    public var at: String
    public var actor: String
    public var method: String
    public var path: String
    public var outcome: Outcome
    /// The HTTP status answered.
    public var status: Int
    /// The version made (accepted) or current (unchanged, refused).
    public var version: Int
    public var changes: [ResourceChange]
    /// Why it was refused.
    public var reason: String?

    public init(
        at: String, actor: String, method: String, path: String, outcome: Outcome, status: Int, version: Int,
        changes: [ResourceChange] = [], reason: String? = nil
    ) {
        self.at = at
        self.actor = actor
        self.method = method
        self.path = path
        self.outcome = outcome
        self.status = status
        self.version = version
        self.changes = changes
        self.reason = reason
    }

    /// The record as the log's JSON line and `GET /api/v1/audit` write it.
    public var tree: JSONTree {
        var members: [String: JSONTree] = [
            "at": .string(at), "actor": .string(actor), "method": .string(method), "path": .string(path),
            "outcome": .string(outcome.rawValue), "status": .integer(status), "version": .integer(version),
            "changes": .array(changes.map(\.tree)),
        ]
        if let reason { members["reason"] = .string(reason) }
        return .object(members)
    }

    /// Reads a logged line back (nil: not a record, which the store skips and reports).
    public static func read(_ tree: JSONTree) -> AuditRecord? {
        guard let at = tree[member: "at"]?.stringValue, let actor = tree[member: "actor"]?.stringValue,
            let method = tree[member: "method"]?.stringValue, let path = tree[member: "path"]?.stringValue,
            let outcome = tree[member: "outcome"]?.stringValue.flatMap(Outcome.init(rawValue:)),
            let status = tree[member: "status"]?.integerValue, let version = tree[member: "version"]?.integerValue
        else { return nil }
        var changes: [ResourceChange] = []
        if case .array(let trees)? = tree[member: "changes"] { changes = trees.compactMap(ResourceChange.init(tree:)) }
        return AuditRecord(
            at: at, actor: actor, method: method, path: path, outcome: outcome, status: status, version: version,
            changes: changes, reason: tree[member: "reason"]?.stringValue)
    }
}
