// SPDX-License-Identifier: Apache-2.0
import JesterControl

/// One immutable version of the control plane's configuration: the document, who made it, when, how, and what it
/// changed from the version before.
///
/// Versions are numbered from 1 in the order they were accepted; 0 is the empty document a new control plane
/// starts from (never stored). A version is never edited or deleted: a rollback is a new version whose document
/// is an old one's, so the history always says what was served when.
public struct SnapshotVersion: Sendable, Equatable {
    /// How the version was made.
    public enum Action: String, Sendable {
        /// The empty document of a new control plane.
        case initial
        /// One resource created or replaced (`PUT /api/v1/<kind>/<name>`).
        case put
        /// One resource deleted.
        case delete
        /// The whole document replaced (`PUT /api/v1/snapshot`).
        case replace
        /// An earlier version's document made current again.
        case rollback
    }

    public var number: Int
    /// When it was accepted, RFC 3339 in UTC.
    public var createdAt: String
    /// Who made it: the name of the token used (`AdminTokens.Entry.name`), or `anonymous` without tokens.
    public var actor: String
    public var action: Action
    /// For a rollback, the version whose document this is.
    public var rolledBackTo: Int?
    /// What changed from the version before.
    public var changes: [ResourceChange]
    public var document: SnapshotDocument

    public init(
        number: Int, createdAt: String, actor: String, action: Action, rolledBackTo: Int? = nil,
        changes: [ResourceChange], document: SnapshotDocument
    ) {
        self.number = number
        self.createdAt = createdAt
        self.actor = actor
        self.action = action
        self.rolledBackTo = rolledBackTo
        self.changes = changes
        self.document = document
    }

    /// The empty version 0.
    public static let initial = SnapshotVersion(
        number: 0, createdAt: "1970-01-01T00:00:00Z", actor: "", action: .initial, changes: [],
        document: SnapshotDocument())

    /// The entity tag of the configuration while this version is current: strong, one per version, so
    /// `If-Match` refuses an edit based on any other version (RFC 9110 §13.1.1).
    public var entityTag: String { "\"v\(number)\"" }

    /// The version without its document, as history lists it.
    public var summaryTree: JSONTree {
        var members: [String: JSONTree] = [
            "version": .integer(number),
            "created_at": .string(createdAt),
            "actor": .string(actor),
            "action": .string(action.rawValue),
            "changes": .array(changes.map(\.tree)),
        ]
        if let rolledBackTo { members["rolled_back_to"] = .integer(rolledBackTo) }
        return .object(members)
    }

    /// The whole version, as stored and as `GET /api/v1/versions/<n>` answers.
    public var tree: JSONTree {
        guard case .object(var members) = summaryTree else { return summaryTree }
        members["document"] = document.tree
        return .object(members)
    }

    /// Reads a stored version back; nil with the reason when the record is not one.
    public static func read(_ tree: JSONTree) -> Result<SnapshotVersion, RecordError> {
        guard let number = tree[member: "version"]?.integerValue, number > 0 else {
            return .failure(RecordError("no positive integer 'version'"))
        }
        guard let createdAt = tree[member: "created_at"]?.stringValue,
            let actor = tree[member: "actor"]?.stringValue,
            let action = tree[member: "action"]?.stringValue.flatMap(Action.init(rawValue:)),
            case .array(let changeTrees)? = tree[member: "changes"],
            let documentTree = tree[member: "document"]
        else {
            return .failure(RecordError("version \(number) lacks created_at, actor, action, changes or document"))
        }
        let (document, problems) = SnapshotDocument.read(documentTree)
        if let problem = problems.first {
            return .failure(RecordError("version \(number)'s document at \(problem.pointer): \(problem.message)"))
        }
        var changes: [ResourceChange] = []
        for change in changeTrees {
            guard let read = ResourceChange(tree: change) else {
                return .failure(RecordError("version \(number) has a change without kind or change"))
            }
            changes.append(read)
        }
        return .success(SnapshotVersion(
            number: number, createdAt: createdAt, actor: actor, action: action,
            rolledBackTo: tree[member: "rolled_back_to"]?.integerValue, changes: changes, document: document))
    }

    /// Why a stored record could not be read.
    public struct RecordError: Error, Equatable, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }
}

extension ResourceChange {
    /// Reads `tree` back; nil without a known kind and change.
    init?(tree: JSONTree) {
        guard let kind = tree[member: "kind"]?.stringValue.flatMap(ResourceKind.init(rawValue:)),
            let change = tree[member: "change"]?.stringValue.flatMap(Change.init(rawValue:))
        else { return nil }
        self.init(kind: kind, name: tree[member: "name"]?.stringValue, change: change)
    }

    /// `{"kind": "routes", "name": "api", "change": "added", "summary": "route 'api' added"}`.
    public var tree: JSONTree {
        var members: [String: JSONTree] = [
            "kind": .string(kind.rawValue), "change": .string(change.rawValue), "summary": .string(summary),
        ]
        if let name { members["name"] = .string(name) }
        return .object(members)
    }
}
