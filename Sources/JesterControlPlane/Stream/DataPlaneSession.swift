// SPDX-License-Identifier: Apache-2.0

/// The control plane's view of one data plane's stream: what it runs, what was sent and not yet answered, and
/// which versions it refused. Pure: the stream handler feeds it the data plane's replies and asks it what to send
/// whenever the current version may have moved on.
///
/// The rules are Envoy's for aggregated discovery, kept to one outstanding push per stream:
/// - nothing is sent before the data plane says who it is and what it runs (`hello`);
/// - the current version is sent when the data plane does not run it and no push awaits an answer; a version
///   committed while one does is sent once that answer arrives (so a burst of edits sends only the last);
/// - an answer whose nonce is not the outstanding push's is stale and changes nothing;
/// - a version the data plane refused (NACK) is never sent to it again: the next version is, and the refusal
///   stays visible (`lastRefusal`) until the data plane accepts a later one.
public struct DataPlaneSession: Sendable {
    /// A refusal, as the API shows it.
    public struct Refusal: Sendable, Equatable {
        public var version: Int
        public var detail: String
        /// When it arrived, RFC 3339.
        public var at: String

        public init(version: Int, detail: String, at: String) {
            self.version = version
            self.detail = detail
            self.at = at
        }
    }

    /// The stream's state.
    public enum Phase: Sendable, Equatable {
        /// Open, waiting for `hello`.
        case awaitingHello
        /// The data plane is known; pushes flow.
        case streaming
    }

    /// What one reply did.
    public enum Outcome: Sendable, Equatable {
        case greeted
        case accepted(version: Int)
        case refused(version: Int, detail: String)
        case reported
        /// An answer to a push that is not outstanding (an older one, or none), or a second hello: ignored.
        case stale
        /// A reply before `hello`: the stream is broken and should be closed.
        case outOfOrder
    }

    public private(set) var phase = Phase.awaitingHello
    public private(set) var node = ""
    /// The version the data plane serves (nil: its bootstrap file alone), and the store it came from.
    public private(set) var running: Int?
    public private(set) var runningStore: String?
    /// The push sent and not yet answered.
    public private(set) var outstanding: (version: Int, nonce: String)?
    /// Versions it refused, with why; never sent to it again.
    public private(set) var refused: [Int: String] = [:]
    public private(set) var lastRefusal: Refusal?
    public private(set) var lastReport: DataPlaneReport?
    /// The data plane's Jester release, as its hello said (nil: not said).
    public private(set) var jesterVersion: String?
    /// Distinguishes the stream's nonces: the handler gives each stream its own prefix.
    private let noncePrefix: String
    /// This control plane's store identity, sent with every push.
    private let store: String
    private var pushes = 0

    public init(noncePrefix: String, store: String = "") {
        self.noncePrefix = noncePrefix
        self.store = store
    }

    /// What it refused, as replicas share it.
    public var refusals: DataPlaneRefusals { DataPlaneRefusals(refused: refused, last: lastRefusal) }

    /// A data plane known from the store only (it refused versions at another replica), not heard on a stream.
    static func remembered(node: String, refusals: DataPlaneRefusals, store: String) -> DataPlaneSession {
        var session = DataPlaneSession(noncePrefix: "remembered", store: store)
        session.node = node
        session.adopt(refusals)
        return session
    }

    /// Takes the refusals replicas share (the store's, which every replica writes after each refusal or retry)
    /// in place of its own.
    mutating func adopt(_ refusals: DataPlaneRefusals) {
        refused = refusals.refused
        lastRefusal = refusals.last.flatMap { refusal in running.map { $0 < refusal.version } ?? true ? refusal : nil }
    }

    mutating func forgetRefusals() {
        refused = [:]
        lastRefusal = nil
    }

    /// Keeps what an earlier stream of the same data plane learned: the versions it refused stay refused (a
    /// reconnect, a restart or an upgrade of the data plane does not make them loadable) and stay listed.
    mutating func inherit(from earlier: DataPlaneSession) {
        refused.merge(earlier.refused) { mine, _ in mine }
        if lastRefusal == nil, let refusal = earlier.lastRefusal, running.map({ $0 < refusal.version }) ?? true {
            lastRefusal = refusal
        }
    }

    /// Takes one reply from the data plane at time `now`.
    public mutating func receive(_ reply: SnapshotStreamReply, now: String) -> Outcome {
        switch (phase, reply) {
        case (.awaitingHello, .hello(let node, let running, let runningStore, let jesterVersion)):
            self.node = node
            self.jesterVersion = jesterVersion
            self.running = running
            self.runningStore = runningStore
            phase = .streaming
            return .greeted
        case (.awaitingHello, _):
            return .outOfOrder
        case (.streaming, .hello):
            return .stale
        case (.streaming, .ack(let version, let nonce)):
            guard let sent = outstanding, sent.nonce == nonce, sent.version == version else { return .stale }
            outstanding = nil
            running = version
            runningStore = store
            if let refusal = lastRefusal, refusal.version < version { lastRefusal = nil }
            return .accepted(version: version)
        case (.streaming, .nack(let kept, let nonce, let detail)):
            guard let sent = outstanding, sent.nonce == nonce else { return .stale }
            outstanding = nil
            running = kept
            refused[sent.version] = detail
            lastRefusal = Refusal(version: sent.version, detail: detail, at: now)
            return .refused(version: sent.version, detail: detail)
        case (.streaming, .report(let report)):
            lastReport = report
            return .reported
        }
    }

    /// The push to send now that `current` is the control plane's version, or nil for none (not greeted yet, a
    /// push outstanding, the data plane runs it already, or refused it before).
    public mutating func offer(_ current: SnapshotVersion) -> SnapshotPush? {
        guard phase == .streaming, outstanding == nil, running != current.number || runningStore != store,
            refused[current.number] == nil, current.number > 0
        else { return nil }
        pushes += 1
        let nonce = "\(noncePrefix)-\(pushes)"
        outstanding = (current.number, nonce)
        return SnapshotPush(
            version: current.number, nonce: nonce, document: current.document.tree.serialized(), store: store)
    }
}
