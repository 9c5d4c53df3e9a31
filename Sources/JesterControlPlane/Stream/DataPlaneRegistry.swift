// SPDX-License-Identifier: Apache-2.0
import JesterControl

/// Every data plane the control plane has heard from: the sessions of open streams, and what is remembered of
/// data planes whose stream closed (the version they ran, their last refusal), for `GET /api/v1/data-planes`.
///
/// A data plane is known by its node name. A second stream from the same name (a restart whose old stream has
/// not timed out yet) replaces the first: the newest stream is the data plane.
public struct DataPlaneRegistry: Sendable {
    /// One data plane as the API lists it.
    public struct Entry: Sendable {
        public var session: DataPlaneSession
        /// The stream it was heard on; nil once that stream closed.
        public var stream: UInt64?
        /// When its current stream opened, or when the last one closed, RFC 3339.
        public var since: String
    }

    public private(set) var entries: [String: Entry] = [:]
    /// The control plane store's identity, sent with every push.
    public let store: String
    /// Open streams not yet greeted, by stream.
    private var greeting: [UInt64: DataPlaneSession] = [:]
    /// The node of each greeted open stream.
    private var nodes: [UInt64: String] = [:]

    public init(store: String = "") {
        self.store = store
    }

    /// A stream opened.
    public mutating func opened(_ stream: UInt64) {
        greeting[stream] = DataPlaneSession(noncePrefix: "s\(stream)", store: store)
    }

    /// What one reply did: its outcome, the push to send next on its stream, and a stream it replaced (an older
    /// stream of the same node, to be closed: it no longer gets pushes and its replies are stale).
    public struct Received: Sendable, Equatable {
        public var outcome: DataPlaneSession.Outcome
        public var push: SnapshotPush?
        public var replaced: UInt64?
    }

    /// One reply on `stream`.
    public mutating func receive(
        _ reply: SnapshotStreamReply, on stream: UInt64, current: SnapshotVersion, now: String
    ) -> Received {
        if var session = greeting.removeValue(forKey: stream) {
            let outcome = session.receive(reply, now: now)
            guard outcome == .greeted else {
                greeting[stream] = session
                return Received(outcome: outcome)
            }
            var replaced: UInt64?
            if let earlier = entries[session.node] {
                session.inherit(from: earlier.session)
                if let previous = earlier.stream {
                    nodes[previous] = nil
                    replaced = previous
                }
            }
            nodes[stream] = session.node
            let push = session.offer(current)
            entries[session.node] = Entry(session: session, stream: stream, since: now)
            return Received(outcome: outcome, push: push, replaced: replaced)
        }
        guard let node = nodes[stream], var entry = entries[node] else { return Received(outcome: .stale) }
        let outcome = entry.session.receive(reply, now: now)
        let push = entry.session.offer(current)
        entries[node] = entry
        return Received(outcome: outcome, push: push)
    }

    /// The current version moved on: the pushes to send, by stream.
    public mutating func offer(_ current: SnapshotVersion) -> [(stream: UInt64, push: SnapshotPush)] {
        var pushes: [(stream: UInt64, push: SnapshotPush)] = []
        for (stream, node) in nodes.sorted(by: { $0.key < $1.key }) {
            guard var entry = entries[node], let push = entry.session.offer(current) else { continue }
            entries[node] = entry
            pushes.append((stream, push))
        }
        return pushes
    }

    /// Takes what `node` refused as the replicas' store has it (replicas sharing etcd write it after each refusal
    /// and retry), in place of what this replica remembers: versions it refused at another replica are not
    /// offered to it here, and a retry asked at another replica is one here too. A node not heard here yet is
    /// listed, as not connected, when it refused something.
    public mutating func adoptRefusals(_ refusals: DataPlaneRefusals, of node: String, now: String) {
        if entries[node] != nil {
            entries[node]!.session.adopt(refusals)
        } else if !refusals.refused.isEmpty {
            entries[node] = Entry(
                session: .remembered(node: node, refusals: refusals, store: store), stream: nil, since: now)
        }
    }

    /// Forgets the versions `node` refused, so the current one is pushed to it again: a refusal often came from
    /// the host (a missing file, a port in use), which the operator has since fixed. False: no such node.
    public mutating func forgetRefusals(of node: String) -> Bool {
        guard entries[node] != nil else { return false }
        entries[node]!.session.forgetRefusals()
        return true
    }

    /// The node greeted on `stream`, if any.
    public func node(of stream: UInt64) -> String? {
        nodes[stream]
    }

    /// A stream closed. Its data plane stays listed, without a stream.
    public mutating func closed(_ stream: UInt64, now: String) {
        greeting[stream] = nil
        guard let node = nodes.removeValue(forKey: stream) else { return }
        entries[node]?.stream = nil
        entries[node]?.since = now
    }

    /// `{"data_planes": [...]}`, by node name.
    public var tree: JSONTree {
        .object(["data_planes": .array(entries.keys.sorted().map { node in
            let entry = entries[node]!
            let session = entry.session
            var members: [String: JSONTree] = [
                "node": .string(node),
                "connected": .bool(entry.stream != nil),
                "since": .string(entry.since),
                "running": session.running.map(JSONTree.integer) ?? .null,
                "refused_versions": .array(session.refused.keys.sorted().map(JSONTree.integer)),
            ]
            if let outstanding = session.outstanding { members["outstanding"] = .integer(outstanding.version) }
            if let version = session.jesterVersion { members["jester_version"] = .string(version) }
            if let refusal = session.lastRefusal {
                members["last_refusal"] = .object([
                    "version": .integer(refusal.version), "detail": .string(refusal.detail), "at": .string(refusal.at),
                ])
            }
            if let report = session.lastReport {
                members["report"] = .object([
                    "healthy": .bool(report.healthy), "workers": .integer(report.workers),
                    "connections": .integer(report.connections), "requests": .number(String(report.requests)),
                ])
            }
            return .object(members)
        })])
    }
}
