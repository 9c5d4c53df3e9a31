// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterTracing
import Synchronization

/// Sends finished spans to an OTLP/HTTP collector in batches, from a thread of its own.
///
/// The data plane only appends to a bounded queue (`enqueue`: one lock held for an append, no I/O, no wait
/// for the exporter); the exporter's thread takes the whole queue at once (a swap) and sends it in batches of
/// `maxBatchSize`, every `scheduleDelay` or as soon as a batch is full. A collector that is slow, refuses or
/// hangs holds up only that thread: meanwhile the queue fills, and spans that find it full are dropped and
/// counted (`statistics`), never waited for. Exports are retried per `OTLPRetryPolicy` within its bound.
///
/// One exporter per process (a worker's); `shutdown` sends what is queued within a deadline.
public final class OTLPExporter: Sendable {
    /// The exporter's settings; defaults are OpenTelemetry's batch span processor's.
    public struct Configuration: Sendable {
        public var endpoint: OTLPEndpoint
        /// Who sends (service.name, service.instance.id, service.version).
        public var resource: OTLPResource
        /// Spans held at most; more are dropped (OpenTelemetry's `maxQueueSize`).
        public var maxQueueSize: Int
        /// Spans per export request (`maxExportBatchSize`).
        public var maxBatchSize: Int
        /// How long spans wait for a batch to fill before they are sent anyway (`scheduledDelayMillis`).
        public var scheduleDelay: Duration
        /// One try of one export, connection to answer (`exportTimeoutMillis`).
        public var exportTimeout: Duration
        /// Retries of an export that failed.
        public var retry: OTLPRetryPolicy

        public init(
            endpoint: OTLPEndpoint, resource: OTLPResource, maxQueueSize: Int = 2048, maxBatchSize: Int = 512,
            scheduleDelay: Duration = .seconds(5), exportTimeout: Duration = .seconds(10),
            retry: OTLPRetryPolicy = OTLPRetryPolicy()
        ) {
            self.endpoint = endpoint
            self.resource = resource
            self.maxQueueSize = max(maxQueueSize, 1)
            self.maxBatchSize = max(min(maxBatchSize, maxQueueSize), 1)
            self.scheduleDelay = scheduleDelay
            self.exportTimeout = exportTimeout
            self.retry = retry
        }
    }

    /// Counts since the exporter started, for metrics and the live tier.
    public struct Statistics: Sendable, Hashable {
        /// Spans the collector accepted.
        public var exported = 0
        /// Spans dropped because the queue was full (the collector too slow or away).
        public var dropped = 0
        /// Spans given up after the collector refused them or the retry bound passed.
        public var failed = 0
        /// Export requests sent, retries included.
        public var requests = 0
        /// Retries (subset of `requests`).
        public var retries = 0
    }

    private struct State {
        var queue: [Span] = []
        var statistics = Statistics()
        /// Whether the thread has been woken for the batch now filling (one wake per batch, not per span).
        var woken = false
        var stopping = false
        /// When stopping: exports and their retries end by then (the caller's shutdown deadline).
        var stopDeadline = ContinuousClock.Instant.now
        var stopped = false
    }

    public let configuration: Configuration
    private let state: Mutex<State>
    private let condition = NSCondition()
    private let client: OTLPHTTPClient

    /// Starts the exporter's thread.
    public init(configuration: Configuration) {
        self.configuration = configuration
        var initial = State()
        initial.queue.reserveCapacity(configuration.maxQueueSize)
        state = Mutex(initial)
        client = OTLPHTTPClient(
            endpoint: configuration.endpoint, userAgent: "jester/\(configuration.resource.scopeVersion)")
        let thread = Thread { [self] in self.run() }
        thread.name = "jester-otlp"
        thread.start()
    }

    /// Queues finished spans (a request's, from `RequestTrace.finish`). Never waits on the collector: when the
    /// queue has no room the spans are dropped and counted. Returns whether they were queued.
    @discardableResult
    public func enqueue(_ spans: [Span]) -> Bool {
        guard !spans.isEmpty else { return true }
        let (accepted, wake) = state.withLock { state -> (Bool, Bool) in
            guard !state.stopping, state.queue.count + spans.count <= configuration.maxQueueSize else {
                state.statistics.dropped += spans.count
                return (false, false)
            }
            state.queue += spans
            guard !state.woken, state.queue.count >= configuration.maxBatchSize else { return (true, false) }
            state.woken = true
            return (true, true)
        }
        if wake { signal() }
        return accepted
    }

    /// The counts so far.
    public var statistics: Statistics { state.withLock { $0.statistics } }

    /// Sends what is queued (retrying within `timeout`) and stops the thread; returns whether that finished
    /// before `timeout`. Spans enqueued from now on are dropped. An export in flight is cut at the deadline.
    @discardableResult
    public func shutdown(timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        state.withLock { state in
            state.stopping = true
            state.stopDeadline = deadline
        }
        signal()
        condition.lock()
        defer { condition.unlock() }
        while !state.withLock({ $0.stopped }) {
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard remaining > .zero else { return false }
            _ = condition.wait(until: Date(timeIntervalSinceNow: min(remaining.seconds, 0.1)))
        }
        return true
    }

    private func signal() {
        condition.lock()
        condition.broadcast()
        condition.unlock()
    }

    /// The thread: wait for a full batch, the schedule or shutdown; take the queue; send it.
    private func run() {
        var nextExport = ContinuousClock.now + configuration.scheduleDelay
        while true {
            condition.lock()
            while !state.withLock({ $0.woken || $0.stopping }) {
                let remaining = ContinuousClock.now.duration(to: nextExport)
                if remaining <= .zero { break }
                _ = condition.wait(until: Date(timeIntervalSinceNow: remaining.seconds))
            }
            condition.unlock()
            var replacement: [Span] = []
            replacement.reserveCapacity(configuration.maxQueueSize)
            let (spans, stopping) = state.withLock { state -> ([Span], Bool) in
                swap(&state.queue, &replacement)
                state.woken = false
                return (replacement, state.stopping)
            }
            nextExport = ContinuousClock.now + configuration.scheduleDelay
            var start = 0
            while start < spans.count {
                let end = min(start + configuration.maxBatchSize, spans.count)
                export(Array(spans[start..<end]))
                start = end
            }
            if stopping, state.withLock({ $0.queue.isEmpty }) {
                state.withLock { $0.stopped = true }
                signal()
                return
            }
        }
    }

    /// Sends one batch, retrying as the policy says; once stopping, within the shutdown's deadline.
    private func export(_ batch: [Span]) {
        let body = OTLPEncoder.exportRequest(batch, resource: configuration.resource)
        let started = ContinuousClock.now
        var attempt = 0
        while true {
            var deadline = ContinuousClock.now + configuration.exportTimeout
            if let stopDeadline = state.withLock({ $0.stopping ? $0.stopDeadline : nil }) {
                deadline = min(deadline, stopDeadline)
            }
            let outcome = client.post(body, deadline: deadline)
            var action = configuration.retry.action(after: outcome, attempt: attempt, elapsed: .now - started)
            state.withLock { state in
                state.statistics.requests += 1
                if case .retry(let delay) = action, state.stopping, .now + delay >= state.stopDeadline {
                    action = .giveUp
                }
                switch action {
                case .delivered: state.statistics.exported += batch.count
                case .giveUp: state.statistics.failed += batch.count
                case .retry: state.statistics.retries += 1
                }
            }
            guard case .retry(let delay) = action else { return }
            attempt += 1
            pause(delay)
        }
    }

    /// Sleeps for a retry's delay (a stopping exporter only retries when the delay ends before its deadline).
    private func pause(_ delay: Duration) {
        let deadline = ContinuousClock.now + delay
        condition.lock()
        defer { condition.unlock() }
        while true {
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard remaining > .zero else { return }
            _ = condition.wait(until: Date(timeIntervalSinceNow: remaining.seconds))
        }
    }
}

extension Duration {
    /// In seconds, for Foundation's dates.
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
