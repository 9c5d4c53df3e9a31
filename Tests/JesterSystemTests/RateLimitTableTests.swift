// SPDX-License-Identifier: Apache-2.0
import Dispatch
import Glibc
import JesterCore
import JesterSystem
import Testing

// The worker declares the same conformance (JesterProxy sees both modules); tests need their own.
extension GCRA: RateLimitAlgorithm {}

private func passed(_ decision: GCRA.Decision) -> Bool {
    if case .refuse = decision { false } else { true }
}

/// The instance-wide rate-limit table: mappings of one memfd standing for the master and its workers, threads
/// standing for concurrent workers.
@Suite struct RateLimitTableTests {
    private static let second: Int64 = 1_000_000_000

    @Test func twoMappingsOfOneTableShareEveryKey() throws {
        let master = try RateLimitTable.create(slots: 1_024)
        let worker = try RateLimitTable.attach(fd: dup(master.fd))
        let other = try RateLimitTable.attach(fd: dup(master.fd))
        #expect(worker.slots == 1_024 && worker.hashSeed == master.hashSeed)
        let limit = GCRA(rate: 1, period: .seconds(1), burst: 2)
        let now = RateLimitTable.monotonicNanoseconds()
        // Three requests at once pass, wherever they land; the fourth is refused on either mapping.
        #expect(passed(worker.acquire(key: 42, now: now, limit: limit)))
        #expect(passed(other.acquire(key: 42, now: now, limit: limit)))
        #expect(passed(worker.acquire(key: 42, now: now, limit: limit)))
        #expect(other.acquire(key: 42, now: now, limit: limit) == .refuse(retryAfter: .seconds(1)))
        #expect(worker.acquire(key: 42, now: now, limit: limit) == .refuse(retryAfter: .seconds(1)))
        // Another key is another client; a second later one more passes for the first.
        #expect(passed(master.acquire(key: 43, now: now, limit: limit)))
        #expect(passed(other.acquire(key: 42, now: now + Self.second, limit: limit)))
        #expect(!passed(worker.acquire(key: 42, now: now + Self.second, limit: limit)))
    }

    @Test func aTableOutlivesTheProcessesThatUsedIt() throws {
        // A reload: old workers unmap, new ones attach the master's descriptor; the allowance is not reset.
        let master = try RateLimitTable.create()
        let limit = GCRA(rate: 10, period: .seconds(60))
        let now = RateLimitTable.monotonicNanoseconds()
        do {
            let oldWorker = try RateLimitTable.attach(fd: dup(master.fd))
            #expect(passed(oldWorker.acquire(key: 7, now: now, limit: limit)))
        }
        let newWorker = try RateLimitTable.attach(fd: dup(master.fd))
        #expect(!passed(newWorker.acquire(key: 7, now: now + 1, limit: limit)))
        #expect(master.slots == RateLimitTable.defaultSlots && master.evictions == 0)
    }

    @Test func threadsHammeringOneKeyGetExactlyTheAllowance() async throws {
        let table = try RateLimitTable.create(slots: 64)
        let limit = GCRA(rate: 100, period: .seconds(1), burst: 499)
        let now = RateLimitTable.monotonicNanoseconds()
        // Eight threads, 20,000 attempts each, all at the same instant: exactly 1 + burst pass.
        nonisolated(unsafe) let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: 8)
        defer { counts.deallocate() }
        DispatchQueue.concurrentPerform(iterations: 8) { thread in
            var count = 0
            for _ in 0..<20_000 where passed(table.acquire(key: 9, now: now, limit: limit)) { count += 1 }
            counts[thread] = count
        }
        let passes = counts.reduce(0, +)
        #expect(passes == 500)
        // And over time: each task advances its own clock by 1 ms per attempt over one second, so the tasks'
        // "now"s interleave out of order as workers' do; the key passes the burst plus 99 intervals of 10 ms
        // (the 100th ends at 1 s, not reached), never more.
        let key: UInt64 = 10
        let timed = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    (0..<1_000).reduce(0) { count, step in
                        let at = now + Int64(step) * 1_000_000
                        return count + (passed(table.acquire(key: key, now: at, limit: limit)) ? 1 : 0)
                    }
                }
            }
            return await group.reduce(0, +)
        }
        #expect(timed == 500 + 99)
    }

    @Test func aFullBucketEvictsTheOldestTAT() throws {
        // One bucket of 8 slots: the ninth key must take a slot.
        let table = try RateLimitTable.create(slots: 8)
        #expect(table.buckets == 1)
        let limit = GCRA(rate: 1, period: .seconds(10))
        let now = RateLimitTable.monotonicNanoseconds()
        // Key 1's request is the oldest (TAT now + 10 s), the others' later.
        for key in UInt64(1)...8 { #expect(passed(table.acquire(key: key, now: now + Int64(key), limit: limit))) }
        #expect(table.evictions == 0)
        #expect(passed(table.acquire(key: 9, now: now + 100, limit: limit)))
        #expect(table.evictions == 1 && table.liveEvictions == 1)
        // Key 1 was forgotten: it gets its allowance again (the documented cost of a live eviction), taking the
        // oldest slot in turn (key 2's); key 3 was kept and is still refused.
        #expect(passed(table.acquire(key: 1, now: now + 200, limit: limit)))
        #expect(table.evictions == 2 && table.liveEvictions == 2)
        #expect(!passed(table.acquire(key: 3, now: now + 200, limit: limit)))
        // A key whose TAT is past costs nothing to evict: counted as an eviction, not a live one.
        let later = now + 60 * Self.second
        #expect(passed(table.acquire(key: 100, now: later, limit: limit)))
        #expect(table.evictions == 3 && table.liveEvictions == 2)
    }

    @Test func aRefusalLeavesTheSlotAsItWas() throws {
        let table = try RateLimitTable.create(slots: 8)
        let limit = GCRA(rate: 1, period: .seconds(1))
        let now = RateLimitTable.monotonicNanoseconds()
        #expect(passed(table.acquire(key: 5, now: now, limit: limit)))
        for step in 1...100 {
            #expect(!passed(table.acquire(key: 5, now: now + Int64(step) * 1_000_000, limit: limit)))
        }
        #expect(passed(table.acquire(key: 5, now: now + Self.second, limit: limit)))
    }

    @Test func keyZeroIsNotAnEmptySlot() throws {
        let table = try RateLimitTable.create(slots: 8)
        let limit = GCRA(rate: 1, period: .seconds(1))
        let now = RateLimitTable.monotonicNanoseconds()
        #expect(passed(table.acquire(key: 0, now: now, limit: limit)))
        #expect(!passed(table.acquire(key: 0, now: now, limit: limit)))
    }

    @Test func attachingSomethingElseIsRefused() throws {
        // A failed attach leaves the descriptor to its owner, like the connection table's.
        var pipeEnds: [Int32] = [0, 0]
        #expect(pipe(&pipeEnds) == 0)
        defer { close(pipeEnds[0]); close(pipeEnds[1]) }
        #expect(throws: SystemError.self) { try RateLimitTable.attach(fd: pipeEnds[0]) }
        // A connection table is a memfd too, of another layout.
        let connections = try ConnectionTable.create(partitions: 2, buckets: 8)
        #expect(throws: SystemError.self) { try RateLimitTable.attach(fd: connections.fd) }
        // A rate table cut short (its header promises more slots than the file holds).
        let table = try RateLimitTable.create(slots: 64)
        #expect(ftruncate(table.fd, 64 + 16) == 0)
        #expect(throws: SystemError.self) { try RateLimitTable.attach(fd: table.fd) }
    }

    @Test func theMonotonicClockMovesForward() {
        let first = RateLimitTable.monotonicNanoseconds()
        let second = RateLimitTable.monotonicNanoseconds()
        #expect(first > 0 && second >= first)
    }
}
