// SPDX-License-Identifier: Apache-2.0

/// What the control plane sends a data plane on its stream: one snapshot version to apply.
///
/// Like Envoy's aggregated discovery (state of the world): each push carries the whole document, a version and
/// a nonce; the data plane answers every push with an ACK or a NACK naming that nonce, so an answer to an older
/// push is recognised as stale and ignored.
public struct SnapshotPush: Sendable, Equatable {
    public var version: Int
    /// Unique per push on one stream; the answer names it.
    public var nonce: String
    /// The snapshot document (`SnapshotDocument.tree.serialized()`).
    public var document: [UInt8]
    /// The identity of the control plane's store: a version number means something only within one store (a
    /// data plane moved to another control plane, or one whose store was made anew, must not take version 7
    /// there for the version 7 it runs).
    public var store: String

    public init(version: Int, nonce: String, document: [UInt8], store: String = "") {
        self.version = version
        self.nonce = nonce
        self.document = document
        self.store = store
    }
}

/// What a data plane sends the control plane on its stream.
public enum SnapshotStreamReply: Sendable, Equatable {
    /// The first message on a stream: who the data plane is and the version it serves (nil: none yet, only its
    /// bootstrap file), from which store, and its Jester release (nil: not said). The control plane sends nothing
    /// until it has this.
    case hello(node: String, running: Int?, store: String? = nil, jesterVersion: String? = nil)
    /// The push with `nonce` was applied: the data plane serves `version`.
    case ack(version: Int, nonce: String)
    /// The push with `nonce` was refused and nothing changed there: the data plane still serves `kept` (nil:
    /// only its bootstrap file), and `detail` says why (the loader's diagnostics, a bind that failed).
    case nack(kept: Int?, nonce: String, detail: String)
    /// Periodic: the version served, whether every worker is up, and a few counters.
    case report(DataPlaneReport)
}

/// A data plane's summary of itself, sent every few seconds.
public struct DataPlaneReport: Sendable, Equatable {
    public var running: Int?
    /// Every worker of the serving generation is up and no transaction is failing.
    public var healthy: Bool
    public var workers: Int
    public var connections: Int
    public var requests: UInt64

    public init(running: Int?, healthy: Bool, workers: Int, connections: Int, requests: UInt64) {
        self.running = running
        self.healthy = healthy
        self.workers = workers
        self.connections = connections
        self.requests = requests
    }
}
