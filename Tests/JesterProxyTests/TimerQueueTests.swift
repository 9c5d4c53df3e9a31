// SPDX-License-Identifier: Apache-2.0
import NIOCore
import NIOEmbedded
import Testing

@testable import JesterProxy

/// The worker's deadline heap, on the embedded loop's clock.
@Suite struct TimerQueueTests {
    let loop = EmbeddedEventLoop()

    @Test func timersFireInDeadlineOrderAndOnlyOnce() {
        let queue = TimerQueue(eventLoop: loop)
        var fired: [Int] = []
        let delays = [7, 3, 9, 1, 5, 2, 8, 6, 4, 10]
        let timers = delays.map { delay in
            let timer = ConnectionTimer()
            timer.setup(queue: queue) { _ in fired.append(delay) }
            timer.arm(.keepalive, after: .seconds(Int64(delay)))
            return timer
        }
        #expect(queue.count == 10)
        loop.advanceTime(by: .milliseconds(5500))
        #expect(fired == [1, 2, 3, 4, 5])
        loop.advanceTime(by: .seconds(10))
        #expect(fired == Array(1...10))
        #expect(queue.count == 0)
        _ = timers
    }

    @Test func reArmingLaterWaitsForTheNewDeadline() {
        let queue = TimerQueue(eventLoop: loop)
        var fired: [ConnectionTimer.Purpose] = []
        let timer = ConnectionTimer()
        timer.setup(queue: queue) { fired.append($0) }
        timer.arm(.response, after: .seconds(2))
        loop.advanceTime(by: .seconds(1))
        // A keep-alive request: the deadline moves out without the queue being touched...
        timer.arm(.keepalive, after: .seconds(5))
        loop.advanceTime(by: .seconds(2))
        #expect(fired.isEmpty)
        // ...and is kept: the timer requeued itself for it.
        #expect(queue.count == 1)
        loop.advanceTime(by: .seconds(3))
        #expect(fired == [.keepalive])
    }

    @Test func reArmingEarlierMovesTheTimerUp() {
        let queue = TimerQueue(eventLoop: loop)
        var fired = 0
        let timer = ConnectionTimer()
        timer.setup(queue: queue) { _ in fired += 1 }
        timer.arm(.keepalive, after: .seconds(60))
        timer.arm(.header, after: .milliseconds(500))
        loop.advanceTime(by: .milliseconds(600))
        #expect(fired == 1)
    }

    @Test func disarmedAndCancelledTimersStayQuiet() {
        let queue = TimerQueue(eventLoop: loop)
        var fired = 0
        let disarmed = ConnectionTimer()
        disarmed.setup(queue: queue) { _ in fired += 1 }
        disarmed.arm(.body, after: .seconds(1))
        disarmed.disarm()
        let cancelled = ConnectionTimer()
        cancelled.setup(queue: queue) { _ in fired += 1 }
        cancelled.arm(.body, after: .seconds(1))
        cancelled.cancel()
        // Cancelling leaves the queue at once (a closed connection is not kept alive by it).
        #expect(queue.count == 1)
        loop.advanceTime(by: .seconds(2))
        #expect(fired == 0)
        #expect(queue.count == 0)
    }

    @Test func aFiringTimerMayCancelAndArmOthers() {
        let queue = TimerQueue(eventLoop: loop)
        var log: [String] = []
        let second = ConnectionTimer()
        let first = ConnectionTimer()
        first.setup(queue: queue) { _ in
            log.append("first")
            second.cancel()
            first.arm(.keepalive, after: .seconds(1))
        }
        second.setup(queue: queue) { _ in log.append("second") }
        first.arm(.header, after: .seconds(1))
        second.arm(.header, after: .seconds(1))
        loop.advanceTime(by: .seconds(1))
        #expect(log == ["first"])
        loop.advanceTime(by: .seconds(1))
        #expect(log == ["first", "first"])
        first.cancel()
    }

    @Test func removalKeepsTheHeapOrderedUnderChurn() {
        let queue = TimerQueue(eventLoop: loop)
        var fired: [Int] = []
        var generator = SystemRandomNumberGenerator()
        var timers: [(delay: Int, timer: ConnectionTimer)] = []
        for index in 0..<300 {
            let delay = Int.random(in: 1...1000, using: &generator)
            let timer = ConnectionTimer()
            timer.setup(queue: queue) { _ in fired.append(delay) }
            timer.arm(.keepalive, after: .milliseconds(Int64(delay)))
            timers.append((delay, timer))
            if index % 3 == 0 { timers.removeFirst().timer.cancel() }
        }
        loop.advanceTime(by: .seconds(2))
        #expect(fired == timers.map(\.delay).sorted())
        #expect(queue.count == 0)
    }
}
