import NIOCore

/// One deadline per connection, with at most one scheduled task behind it.
///
/// Re-arming moves the deadline without cancelling and rescheduling (what a per-request `scheduleTask` would
/// cost on every keep-alive request): a task that fires early sees the later deadline and sleeps again, and a
/// disarmed deadline makes it do nothing. Loop-confined.
///
/// The scheduled task and `onFire` hold their owners strongly; `cancel()` (called when the connection closes)
/// breaks that cycle. Weak references would be safer-looking but cost more than they save: an object that was
/// ever weakly referenced moves its reference count to a side table, which makes every retain and release of the
/// connection (dozens per request) take the slow path.
final class ConnectionTimer {
    /// What the deadline is for, so the connection knows what to do when it passes.
    enum Purpose {
        case none
        /// Idle keep-alive connection: close quietly.
        case keepalive
        /// Request head not complete in time: 408.
        case header
        /// No response head from the upstream in time: 504.
        case response
        /// No request body bytes from the client in time: 408 (slow POST).
        case body
        /// The client accepted no response bytes in time: close (slow reader).
        case send
        /// The upstream sent no response bytes for the route's read_timeout: the response is cut short.
        case upstreamRead
    }

    private(set) var purpose = Purpose.none
    private var deadline = NIODeadline.distantFuture
    private var scheduled: Scheduled<Void>?
    private var scheduledFor = NIODeadline.distantFuture
    private var eventLoop: (any EventLoop)?
    private var onFire: ((Purpose) -> Void)?

    func setup(eventLoop: any EventLoop, onFire: @escaping (Purpose) -> Void) {
        self.eventLoop = eventLoop
        self.onFire = onFire
    }

    func isArmed(for purpose: Purpose) -> Bool { self.purpose == purpose }

    /// Arms the deadline `timeout` from now. The hot paths pass a `TimeAmount` converted once per configuration
    /// (`WorkerRuntime.timeouts`, `UpstreamPool.responseTimeout`, `CompiledRoute.responseTimeout`): converting a
    /// `Duration` takes 128-bit division, which showed in profiles at several arms per request.
    func arm(_ purpose: Purpose, after timeout: TimeAmount) {
        self.purpose = purpose
        // The loop's clock, not the wall's: the same thing on a real loop, and what EmbeddedEventLoop advances.
        deadline = (eventLoop?.now ?? .now()) + timeout
        if scheduled == nil || deadline < scheduledFor { schedule(at: deadline) }
    }

    func arm(_ purpose: Purpose, after duration: Duration) {
        arm(purpose, after: TimeAmount(duration))
    }

    func disarm() {
        purpose = .none
        deadline = .distantFuture
    }

    func cancel() {
        disarm()
        scheduled?.cancel()
        scheduled = nil
        onFire = nil
    }

    private func schedule(at when: NIODeadline) {
        guard let eventLoop else { return }
        scheduled?.cancel()
        scheduledFor = when
        // Loop-confined: the isolated view takes the non-Sendable closure without a Sendable promise.
        scheduled = eventLoop.assumeIsolated().scheduleTask(deadline: when) { self.fired() }
    }

    private func fired() {
        scheduled = nil
        guard purpose != .none else { return }
        if (eventLoop?.now ?? .now()) < deadline {
            schedule(at: deadline)
            return
        }
        let expired = purpose
        purpose = .none
        onFire?(expired)
    }
}

extension TimeAmount {
    /// A configuration `Duration` as NIO's time, to the nanosecond (`.seconds(d.components.seconds)` would drop
    /// the fraction: "500ms" would become 0).
    init(_ duration: Duration) {
        self = .nanoseconds(Int64(duration.components.seconds) * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }
}
