// SPDX-License-Identifier: Apache-2.0
import JesterControl

/// The versions one data plane refused, in the form replicas share through their store (etcd): a data plane that
/// moves to another replica is not offered there a version it refused here, and the refusal stays listed.
public struct DataPlaneRefusals: Sendable, Equatable {
    /// Version → why it was refused.
    public var refused: [Int: String]
    public var last: DataPlaneSession.Refusal?

    public init(refused: [Int: String] = [:], last: DataPlaneSession.Refusal? = nil) {
        self.refused = refused
        self.last = last
    }

    /// `{"refused": {"4": "why"}, "last": {"version": 4, "detail": "why", "at": "…"}}`.
    public var tree: JSONTree {
        var members: [String: JSONTree] = [
            "refused": .object(Dictionary(uniqueKeysWithValues: refused.map { (String($0.key), .string($0.value)) })),
        ]
        if let last {
            members["last"] = .object([
                "version": .integer(last.version), "detail": .string(last.detail), "at": .string(last.at),
            ])
        }
        return .object(members)
    }

    /// Reads `tree` back; nil when it is not this form (a store written by something else: nothing is taken).
    public static func read(_ tree: JSONTree) -> DataPlaneRefusals? {
        guard case .object(let entries)? = tree[member: "refused"] else { return nil }
        var refusals = DataPlaneRefusals()
        for (key, value) in entries {
            guard let version = Int(key), let detail = value.stringValue else { return nil }
            refusals.refused[version] = detail
        }
        if let last = tree[member: "last"] {
            guard let version = last[member: "version"]?.integerValue, let detail = last[member: "detail"]?.stringValue,
                let at = last[member: "at"]?.stringValue
            else { return nil }
            refusals.last = DataPlaneSession.Refusal(version: version, detail: detail, at: at)
        }
        return refusals
    }
}
