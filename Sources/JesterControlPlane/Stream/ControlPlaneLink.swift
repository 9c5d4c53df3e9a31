// SPDX-License-Identifier: Apache-2.0

/// A data plane's link to its control plane, as the master runs it: a pure state machine (events in, actions
/// out; time and randomness passed in), like the supervisor's.
///
/// - It connects, says who it is and what it runs (`hello`), and applies each pushed version through the
///   master's reload transaction, one at a time. A push that arrives while one is being applied waits; a later
///   one replaces it (only the newest matters). A push of the version already served is acknowledged at once.
/// - An applied version is acknowledged and kept on disk as the last good snapshot (`persist`), which the master
///   loads at start when the control plane cannot be reached. A refused one is NACKed with why, and the version
///   served stays (the reload transaction left it untouched).
/// - A lost stream or a failed connection is retried after a backoff that doubles from `initialBackoff` to
///   `maximumBackoff`, half of it random ("equal jitter"), so a fleet that lost its control plane at once does not
///   return at once. A stream that delivers a push has proven itself, and the next loss starts from the first
///   backoff again.
/// - An apply still running when its stream is lost finishes; its answer would name a nonce the new stream never
///   sent, so it is not sent, and the `hello` on the new stream says what is served.
public struct ControlPlaneLink: Sendable {
    public enum State: Sendable, Equatable {
        case idle
        case connecting(attempt: Int)
        case streaming(attempt: Int)
        case waiting(attempt: Int)
    }

    public enum Event: Sendable, Equatable {
        case start
        case connected
        /// The connection or the stream failed; `jitter` is a random number in [0, 1).
        case connectFailed(reason: String, jitter: Double)
        case streamLost(reason: String, jitter: Double)
        case received(SnapshotPush)
        /// The reload transaction applied the push with `nonce`; the document it served.
        case applied(nonce: String)
        /// The reload transaction refused the push with `nonce` (the configuration in use keeps serving).
        case applyRefused(nonce: String, detail: String)
        case timerFired
        /// The stream has stayed open a while: it works, so the next loss starts from the first backoff (a data
        /// plane that runs the current version may never get a push to prove it).
        case streamStable
        case stop
    }

    public enum Action: Sendable, Equatable {
        case connect
        case send(SnapshotStreamReply)
        /// Load the bootstrap file with this snapshot and run the reload transaction; answer with `applied` or
        /// `applyRefused`.
        case apply(SnapshotPush)
        /// Keep this as the last good snapshot.
        case persist(version: Int, document: [UInt8], store: String)
        case scheduleReconnect(after: Duration)
        case closeStream
    }

    public let node: String
    public let initialBackoff: Duration
    public let maximumBackoff: Duration
    public private(set) var state = State.idle
    /// The version served (nil: the bootstrap file alone), and the store it came from.
    public private(set) var running: Int?
    public private(set) var runningStore: String?
    /// The push being applied, and the stream it came on.
    public private(set) var applying: (push: SnapshotPush, stream: Int)?
    /// The newest push that arrived while another was applied.
    public private(set) var queued: SnapshotPush?
    public private(set) var lastRefusal: (version: Int, detail: String)?
    /// Counts streams, so an answer is only sent on the stream its push came on.
    private var stream = 0

    /// `running`: the version of the last good snapshot the master started with (nil: none).
    public init(
        node: String, running: Int?, runningStore: String? = nil, initialBackoff: Duration = .milliseconds(500),
        maximumBackoff: Duration = .seconds(30)
    ) {
        self.node = node
        self.running = running
        self.runningStore = runningStore
        self.initialBackoff = initialBackoff
        self.maximumBackoff = maximumBackoff
    }

    public mutating func handle(_ event: Event) -> [Action] {
        switch (state, event) {
        case (.idle, .start):
            state = .connecting(attempt: 0)
            return [.connect]
        case (.connecting(let attempt), .connected):
            stream += 1
            state = .streaming(attempt: attempt)
            return [.send(.hello(node: node, running: running, store: runningStore))]
        case (.connecting(let attempt), .connectFailed(_, let jitter)),
            (.streaming(let attempt), .streamLost(_, let jitter)):
            queued = nil  // the next stream pushes what is current then
            state = .waiting(attempt: attempt + 1)
            return [.scheduleReconnect(after: backoff(attempt: attempt, jitter: jitter))]
        case (.waiting(let attempt), .timerFired):
            state = .connecting(attempt: attempt)
            return [.connect]
        case (.streaming, .streamStable):
            state = .streaming(attempt: 0)
            return []
        case (.streaming, .received(let push)):
            state = .streaming(attempt: 0)
            return take(push)
        case (_, .applied(let nonce)):
            guard let current = applying, current.push.nonce == nonce else { return [] }
            let (push, from) = (current.push, current.stream)
            applying = nil
            running = push.version
            runningStore = push.store
            lastRefusal = nil
            var actions: [Action] = [.persist(version: push.version, document: push.document, store: push.store)]
            if case .streaming = state, from == stream { actions.append(.send(.ack(version: push.version, nonce: nonce))) }
            return actions + next()
        case (_, .applyRefused(let nonce, let detail)):
            guard let current = applying, current.push.nonce == nonce else { return [] }
            let (push, from) = (current.push, current.stream)
            applying = nil
            lastRefusal = (push.version, detail)
            var actions: [Action] = []
            if case .streaming = state, from == stream {
                actions.append(.send(.nack(kept: running, nonce: nonce, detail: detail)))
            }
            return actions + next()
        case (_, .stop):
            let wasOpen = state != .idle
            state = .idle
            queued = nil
            return wasOpen ? [.closeStream] : []
        default:
            return []
        }
    }

    private mutating func take(_ push: SnapshotPush) -> [Action] {
        if applying == nil, push.version == running, push.store == runningStore {
            return [.send(.ack(version: push.version, nonce: push.nonce))]
        }
        guard applying == nil else {
            queued = push
            return []
        }
        applying = (push, stream)
        return [.apply(push)]
    }

    private mutating func next() -> [Action] {
        guard let push = queued else { return [] }
        queued = nil
        return take(push)
    }

    /// The delay before reconnect attempt `attempt + 1`: half of min(maximum, initial × 2^attempt) fixed, the
    /// other half scaled by `jitter`.
    func backoff(attempt: Int, jitter: Double) -> Duration {
        let doubled = initialBackoff * (1 << min(attempt, 20))
        let cap = doubled < maximumBackoff ? doubled : maximumBackoff
        return cap / 2 + (cap / 2) * min(max(jitter, 0), 1)
    }
}
