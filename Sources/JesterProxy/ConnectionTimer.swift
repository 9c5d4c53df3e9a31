// SPDX-License-Identifier: Apache-2.0
import NIOCore

/// One deadline per connection, kept in its worker's `TimerQueue`.
///
/// Re-arming moves the deadline without touching the queue when the timer is already queued for an earlier
/// moment (what happens on every keep-alive request): at that moment it sees the later deadline and queues itself
/// again, and a disarmed deadline makes it do nothing. Loop-confined.
///
/// The queue holds a queued timer strongly, and `onFire` holds its owner strongly; `cancel()` (called when the
/// connection closes) breaks that cycle. Weak references would be safer-looking but cost more than they save: an
/// object that was ever weakly referenced moves its reference count to a side table, which makes every retain and
/// release of the connection (dozens per request) take the slow path.
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
        /// A QUIC connection's next deadline (loss recovery, acknowledgements, pacing, idle and handshake
        /// timeouts): its session handles the expiry.
        case quic
    }

    private(set) var purpose = Purpose.none
    private var deadline = NIODeadline.distantFuture
    private var queue: TimerQueue?
    private var onFire: ((Purpose) -> Void)?
    /// Where the queue keeps this timer: its heap slot (-1: not queued) and the moment it is queued for, which is
    /// never later than `deadline` while armed.
    fileprivate var heapIndex = -1
    fileprivate var queuedFor = NIODeadline.distantFuture

    func setup(queue: TimerQueue, onFire: @escaping (Purpose) -> Void) {
        self.queue = queue
        self.onFire = onFire
    }

    func isArmed(for purpose: Purpose) -> Bool { self.purpose == purpose }

    /// Arms the deadline `timeout` from now. The hot paths pass a `TimeAmount` converted once per configuration
    /// (`WorkerRuntime.timeouts`, `UpstreamPool.responseTimeout`, `CompiledRoute.responseTimeout`): converting a
    /// `Duration` takes 128-bit division, which showed in profiles at several arms per request.
    func arm(_ purpose: Purpose, after timeout: TimeAmount) {
        guard let queue else { return }
        self.purpose = purpose
        deadline = queue.now + timeout
        queue.enqueue(self, for: deadline)
    }

    func disarm() {
        purpose = .none
        deadline = .distantFuture
    }

    func cancel() {
        disarm()
        queue?.remove(self)
        onFire = nil
    }

    /// The queued moment came (the timer has left the queue).
    fileprivate func reached(now: NIODeadline) {
        guard purpose != .none else { return }
        if now < deadline {
            queue?.enqueue(self, for: deadline)
            return
        }
        let expired = purpose
        purpose = .none
        onFire?(expired)
    }
}

/// The deadlines of a worker's connections in one binary heap, with a single NIO task scheduled for the earliest.
///
/// A task per connection (`scheduleTask`) allocates the task, a promise and its future each time, and cancelling
/// one searches the loop's whole task queue; a worker accepting thousands of connections a second arms and
/// cancels one for each. Here a timer is a slot in an array: queueing and removing it are O(log n) and allocate
/// nothing. Loop-confined.
final class TimerQueue {
    private let eventLoop: any EventLoop
    /// A min-heap on `queuedFor`.
    private var heap: [ConnectionTimer] = []
    private var wakeup: Scheduled<Void>?
    private var wakeupAt = NIODeadline.distantFuture
    /// Set while due timers run: the wakeup is scheduled once, after them.
    private var waking = false

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// The loop's clock, not the wall's: the same thing on a real loop, and what EmbeddedEventLoop advances.
    var now: NIODeadline { eventLoop.now }

    /// How many timers are queued (for tests).
    var count: Int { heap.count }

    /// Queues `timer` for `when`, or moves it earlier; a timer queued for an earlier moment stays as it is.
    fileprivate func enqueue(_ timer: ConnectionTimer, for when: NIODeadline) {
        if timer.heapIndex >= 0 {
            guard when < timer.queuedFor else { return }
            timer.queuedFor = when
            siftUp(timer.heapIndex)
        } else {
            timer.queuedFor = when
            timer.heapIndex = heap.count
            heap.append(timer)
            siftUp(heap.count - 1)
        }
        if !waking, when < wakeupAt { scheduleWakeup(at: when) }
    }

    /// Takes `timer` out of the queue. The wakeup may now come early; it then finds nothing due.
    fileprivate func remove(_ timer: ConnectionTimer) {
        let index = timer.heapIndex
        guard index >= 0 else { return }
        timer.heapIndex = -1
        let last = heap.removeLast()
        guard index < heap.count else { return }
        heap[index] = last
        last.heapIndex = index
        siftDown(index)
        siftUp(last.heapIndex)
    }

    private func scheduleWakeup(at when: NIODeadline) {
        wakeup?.cancel()
        wakeupAt = when
        // Strong: the queue lives until its last wakeup, at most the longest timeout after its runtime is gone.
        wakeup = eventLoop.assumeIsolated().scheduleTask(deadline: when) { self.wake() }
    }

    private func wake() {
        wakeup = nil
        wakeupAt = .distantFuture
        waking = true
        let now = eventLoop.now
        while let first = heap.first, first.queuedFor <= now {
            remove(first)
            first.reached(now: now)
        }
        waking = false
        if let first = heap.first { scheduleWakeup(at: first.queuedFor) }
    }

    private func siftUp(_ start: Int) {
        var index = start
        while index > 0 {
            let parent = (index - 1) / 2
            guard heap[index].queuedFor < heap[parent].queuedFor else { return }
            swapAt(index, parent)
            index = parent
        }
    }

    private func siftDown(_ start: Int) {
        var index = start
        while true {
            let left = 2 * index + 1
            guard left < heap.count else { return }
            let right = left + 1
            let smaller = right < heap.count && heap[right].queuedFor < heap[left].queuedFor ? right : left
            guard heap[smaller].queuedFor < heap[index].queuedFor else { return }
            swapAt(index, smaller)
            index = smaller
        }
    }

    private func swapAt(_ a: Int, _ b: Int) {
        heap.swapAt(a, b)
        heap[a].heapIndex = a
        heap[b].heapIndex = b
    }
}

extension TimeAmount {
    /// A configuration `Duration` as NIO's time, to the nanosecond (`.seconds(d.components.seconds)` would drop
    /// the fraction: "500ms" would become 0).
    init(_ duration: Duration) {
        self = .nanoseconds(Int64(duration.components.seconds) * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }
}
