// SPDX-License-Identifier: Apache-2.0
import Dispatch
import Glibc
import JesterSystem
import Testing

/// The shared cache index: mappings of one memfd standing for the master and its workers, threads standing for
/// concurrent workers. Times: `wall` seconds for entries, monotonic nanoseconds for fetching deadlines.
@Suite struct CacheIndexTests {
    private static let second: Int64 = 1_000_000_000
    private static let wall: Int64 = 1_800_000_000

    private static func key(_ number: UInt64, bucket: UInt64 = 0) -> CacheIndex.Key {
        CacheIndex.Key(low: number &* 0x9E37_79B9_7F4A_7C15 | 1, high: bucket)
    }

    private static func entry(size: Int64, generation: UInt64, storedAt: Int64 = wall) -> CacheIndexEntry {
        CacheIndexEntry(
            status: 200, options: [.hasValidator, .immutable], requestTime: storedAt - 1, responseTime: storedAt,
            storedAt: storedAt, lifetime: 60, correctedInitialAge: 2, staleWhileRevalidate: 30, staleIfError: -1,
            bodySize: size - 100, headerSize: 100, bodyGeneration: generation, varyHash: 0xABCD)
    }

    /// Claims `key` (absent) for `owner` and publishes `entry`; fails the test otherwise.
    private static func store(
        _ index: CacheIndex, _ key: CacheIndex.Key, _ entry: CacheIndexEntry, owner: Int32 = 1
    ) -> CacheIndex.Dropped? {
        let now = CacheIndex.monotonicNanoseconds()
        let (claim, dropped) = index.claim(
            key, observed: index.lookup(key), owner: owner, deadline: now + 5 * second, now: entry.storedAt,
            monotonicNow: now)
        guard case .claimed(let ticket) = claim else {
            Issue.record("claim of \(key): \(claim)")
            return nil
        }
        #expect(index.publish(ticket, .entry(entry), monotonicNow: now) == .published(replaced: nil))
        return dropped
    }

    @Test func anEntryPublishedByOneWorkerIsSeenWholeByAnother() throws {
        let master = try CacheIndex.create(slots: 1_024, byteBudget: 1 << 20)
        let worker = try CacheIndex.attach(fd: dup(master.fd))
        let other = try CacheIndex.attach(fd: dup(master.fd))
        #expect(worker.slots == 1_024 && worker.hashSeed == master.hashSeed && worker.byteBudget == 1 << 20)
        let key = Self.key(1, bucket: 77)
        #expect(worker.lookup(key) == nil)
        let now = CacheIndex.monotonicNanoseconds()
        let (claim, dropped) = worker.claim(
            key, observed: nil, owner: 3, deadline: now + Self.second, now: Self.wall, monotonicNow: now)
        guard case .claimed(let ticket) = claim else { throw Failure("claim: \(claim)") }
        #expect(dropped == nil)
        // While the fetch runs the others see the key reserved, with worker 3's flag.
        let seen = try #require(other.lookup(key))
        #expect(seen.state == .reserved && seen.flag == .fetching(owner: 3, deadline: now + Self.second))
        let stored = Self.entry(size: 1_000, generation: 9)
        #expect(worker.publish(ticket, .entry(stored), monotonicNow: now) == .published(replaced: nil))
        let found = try #require(other.lookup(key))
        #expect(found.state == .ready(stored) && found.flag == .idle)
        #expect(master.bytesInUse == 1_000 && master.count(.stores) == 1)
        // Same tag, another high half: another key, not found.
        #expect(other.lookup(CacheIndex.Key(low: key.low, high: key.high + 1)) == nil)
    }

    @Test func theIndexSurvivesReattachingItsDescriptor() throws {
        // A binary upgrade: the master hands the memfd over; the new master and its workers attach it.
        let master = try CacheIndex.create(slots: 64, byteBudget: 1 << 20)
        let handedOver = dup(master.fd)
        do {
            let oldWorker = try CacheIndex.attach(fd: dup(master.fd))
            for number in UInt64(1)...5 {
                _ = Self.store(oldWorker, Self.key(number, bucket: number), Self.entry(size: 200, generation: number))
            }
        }
        let generation = master.nextBodyGeneration()
        let newMaster = try CacheIndex.attach(fd: handedOver)
        #expect(newMaster.bytesInUse == 1_000 && newMaster.count(.stores) == 5 && newMaster.hashSeed == master.hashSeed)
        #expect(newMaster.nextBodyGeneration() == generation + 1)
        for number in UInt64(1)...5 {
            let found = try #require(newMaster.lookup(Self.key(number, bucket: number)))
            #expect(found.state == .ready(Self.entry(size: 200, generation: number)))
        }
    }

    @Test func aRefreshReplacesTheEntryAndHandsBackTheOldFile() throws {
        let index = try CacheIndex.create(slots: 64, byteBudget: 1 << 20)
        let key = Self.key(2)
        _ = Self.store(index, key, Self.entry(size: 500, generation: 1))
        let now = CacheIndex.monotonicNanoseconds()
        let observed = try #require(index.lookup(key))
        let (claim, _) = index.claim(
            key, observed: observed, owner: 2, deadline: now + Self.second, now: Self.wall, monotonicNow: now)
        guard case .claimed(let ticket) = claim else { throw Failure("claim: \(claim)") }
        // A stale entry stays served while its revalidation runs (stale-while-revalidate).
        let during = try #require(index.lookup(key))
        #expect(during.state == .ready(Self.entry(size: 500, generation: 1)))
        #expect(during.flag == .fetching(owner: 2, deadline: now + Self.second))
        // A second claim from the old observation fails: the slot changed.
        #expect(
            index.claim(key, observed: observed, owner: 4, deadline: now, now: Self.wall, monotonicNow: now).claim
                == .changed)
        let refreshed = Self.entry(size: 800, generation: 2, storedAt: Self.wall + 10)
        let replaced = CacheIndex.Dropped(key: key, bodyGeneration: 1, fileSize: 500)
        #expect(index.publish(ticket, .entry(refreshed), monotonicNow: now) == .published(replaced: replaced))
        #expect(try #require(index.lookup(key)).state == .ready(refreshed))
        #expect(index.bytesInUse == 800 && index.count(.stores) == 2)
    }

    @Test func releasingFreesAKeyOrMarksItUncacheable() throws {
        let index = try CacheIndex.create(slots: 64, byteBudget: 1 << 20)
        let now = CacheIndex.monotonicNanoseconds()
        let key = Self.key(3)
        func claimed() throws -> CacheIndex.Ticket {
            let (claim, _) = index.claim(
                key, observed: index.lookup(key), owner: 1, deadline: now + Self.second, now: Self.wall,
                monotonicNow: now)
            guard case .claimed(let ticket) = claim else { throw Failure("claim: \(claim)") }
            return ticket
        }
        // A failed fetch: the key leaves the index.
        #expect(index.release(try claimed()))
        #expect(index.lookup(key) == nil)
        // An answer that may not be stored: the key stays, marked, without an entry.
        #expect(index.release(try claimed(), uncacheableUntil: now + 10 * Self.second))
        let marked = try #require(index.lookup(key))
        #expect(marked.state == .reserved && marked.flag == .uncacheable(until: now + 10 * Self.second))
        // A release of a flag that is not the caller's any more changes nothing.
        let ticket = try claimed()
        index.remove(key)
        #expect(!index.release(ticket))
        #expect(index.lookup(key) == nil)
    }

    @Test func aVaryMarkerIsPublishedLikeAnEntry() throws {
        let index = try CacheIndex.create(slots: 64, byteBudget: 1 << 20)
        let now = CacheIndex.monotonicNanoseconds()
        let key = Self.key(4)
        let (claim, _) = index.claim(
            key, observed: nil, owner: 1, deadline: now + Self.second, now: Self.wall, monotonicNow: now)
        guard case .claimed(let ticket) = claim else { throw Failure("claim: \(claim)") }
        #expect(
            index.publish(ticket, .varyMarker(namesHash: 42, now: Self.wall), monotonicNow: now)
                == .published(replaced: nil))
        #expect(try #require(index.lookup(key)).state == .varyMarker(namesHash: 42, lastUsed: Self.wall))
        #expect(index.bytesInUse == 0)
    }

    @Test func varyFieldListsAreRegisteredOnceAndReadByEveryMapping() throws {
        let index = try CacheIndex.create(slots: 8, byteBudget: 0)
        let other = try CacheIndex.attach(fd: dup(index.fd))
        #expect(other.varyNames(5) == nil)
        #expect(index.registerVaryNames("accept-encoding,origin", hash: 5))
        #expect(index.registerVaryNames("accept-encoding,origin", hash: 5))
        #expect(other.varyNames(5) == "accept-encoding,origin")
        // Lists whose hashes share a home entry take the next ones.
        let home = UInt64(CacheIndex.varyNamesEntries)
        for step in UInt64(1)...15 { #expect(other.registerVaryNames("list \(step)", hash: 5 + step * home)) }
        #expect(index.varyNames(5 + 15 * home) == "list 15" && index.varyNames(5) == "accept-encoding,origin")
        // The sixteenth in a row has no room; a list over the limit or empty is refused.
        #expect(!index.registerVaryNames("one too many", hash: 5 + 16 * home))
        #expect(index.varyNames(5 + 16 * home) == nil)
        #expect(!index.registerVaryNames(String(repeating: "a", count: CacheIndex.varyNamesMaxBytes + 1), hash: 9))
        #expect(index.registerVaryNames(String(repeating: "a", count: CacheIndex.varyNamesMaxBytes), hash: 9))
        #expect(!index.registerVaryNames("", hash: 10))
        // The directory and the slots do not overlap: an entry stored after leaves the lists whole.
        _ = Self.store(index, Self.key(12), Self.entry(size: 10, generation: 1))
        #expect(other.varyNames(5) == "accept-encoding,origin")
        #expect(other.varyNames(9) == String(repeating: "a", count: CacheIndex.varyNamesMaxBytes))
    }

    @Test func aVaryListLeftUnpublishedIsWrittenByTheNextWriter() throws {
        // A writer killed after taking its entry ({hash, 0} at the hash's home entry, right after the header).
        let index = try CacheIndex.create(slots: 8, byteBudget: 0)
        var taken: (UInt64, Int64) = (77, 0)
        #expect(pwrite(index.fd, &taken, 16, off_t(128 + 77 * 256)) == 16)
        #expect(index.varyNames(77) == nil)
        #expect(index.registerVaryNames("accept-language", hash: 77))
        #expect(index.varyNames(77) == "accept-language")
    }

    @Test func removalDropsTheEntryAndDefeatsAFetchInProgress() throws {
        let index = try CacheIndex.create(slots: 64, byteBudget: 1 << 20)
        let key = Self.key(5)
        _ = Self.store(index, key, Self.entry(size: 300, generation: 7))
        #expect(index.remove(key) == CacheIndex.Dropped(key: key, bodyGeneration: 7, fileSize: 300))
        #expect(index.lookup(key) == nil && index.bytesInUse == 0)
        #expect(index.remove(key) == nil)
        // A purge while a worker fetches the key: what it fetched is not published.
        let now = CacheIndex.monotonicNanoseconds()
        let (claim, _) = index.claim(
            key, observed: nil, owner: 1, deadline: now + Self.second, now: Self.wall, monotonicNow: now)
        guard case .claimed(let ticket) = claim else { throw Failure("claim: \(claim)") }
        #expect(index.remove(key) == nil)
        #expect(
            index.publish(ticket, .entry(Self.entry(size: 300, generation: 8)), monotonicNow: now)
                == .lost(replaced: nil))
        #expect(index.lookup(key) == nil && index.bytesInUse == 0)
    }

    @Test func aFullBucketGivesItsLeastRecentlyUsedSlot() throws {
        // One bucket of 8 slots: the ninth key must take one.
        let index = try CacheIndex.create(slots: 8, byteBudget: 1 << 20)
        #expect(index.buckets == 1)
        for number in UInt64(1)...8 {
            _ = Self.store(index, Self.key(number), Self.entry(size: 100, generation: number))
        }
        // Every entry used since, but key 3 longest ago.
        for number in UInt64(1)...8 where number != 3 {
            index.touch(try #require(index.lookup(Self.key(number))), now: Self.wall + 50)
        }
        let dropped = Self.store(index, Self.key(9), Self.entry(size: 100, generation: 9))
        #expect(dropped == CacheIndex.Dropped(key: Self.key(3), bodyGeneration: 3, fileSize: 100))
        #expect(index.lookup(Self.key(3)) == nil && index.lookup(Self.key(9)) != nil)
        #expect(index.count(.evictions) == 1 && index.bytesInUse == 800)
    }

    @Test func aBucketOfLiveFetchesTakesNoMoreUntilADeadlinePasses() throws {
        let index = try CacheIndex.create(slots: 8, byteBudget: 1 << 20)
        let now = CacheIndex.monotonicNanoseconds()
        for number in UInt64(1)...8 {
            let deadline = now + (number == 5 ? 1 : 10) * Self.second
            let (claim, _) = index.claim(
                Self.key(number), observed: nil, owner: 1, deadline: deadline, now: Self.wall, monotonicNow: now)
            guard case .claimed = claim else { throw Failure("claim: \(claim)") }
        }
        let late = Self.key(9)
        #expect(
            index.claim(late, observed: nil, owner: 2, deadline: now, now: Self.wall, monotonicNow: now).claim
                == .bucketFull)
        // Two seconds on, key 5's owner is past its deadline: its slot is taken.
        let later = now + 2 * Self.second
        let (claim, _) = index.claim(
            late, observed: nil, owner: 2, deadline: later + Self.second, now: Self.wall, monotonicNow: later)
        guard case .claimed = claim else { throw Failure("claim: \(claim)") }
        #expect(index.lookup(Self.key(5)) == nil)
    }

    @Test func makeRoomEvictsDownToTheBudget() throws {
        let index = try CacheIndex.create(slots: 16, byteBudget: 1_000)
        for number in UInt64(1)...6 {
            _ = Self.store(index, Self.key(number, bucket: number), Self.entry(size: 300, generation: number))
        }
        #expect(index.bytesInUse == 1_800)
        var generator = SystemRandomNumberGenerator()
        let dropped = index.makeRoom(now: Self.wall, monotonicNow: CacheIndex.monotonicNanoseconds(), using: &generator)
        #expect(dropped.count == 3 && index.bytesInUse == 900 && index.count(.evictions) == 3)
        for gone in dropped { #expect(index.lookup(gone.key) == nil) }
        // Under the budget, nothing more goes.
        #expect(index.makeRoom(now: Self.wall, monotonicNow: CacheIndex.monotonicNanoseconds()).isEmpty)
    }

    @Test func makeRoomFindsTheFewLargeEntriesOfASparseTable() throws {
        // 65,536 slots, four entries of 400 MB against 1 GB: random slots would almost never hit one.
        let index = try CacheIndex.create(byteBudget: 1_000_000_000)
        for number in UInt64(1)...4 {
            _ = Self.store(
                index, Self.key(number, bucket: number * 1_000),
                Self.entry(size: 400_000_000, generation: number, storedAt: Self.wall + Int64(number)))
        }
        let dropped = index.makeRoom(now: Self.wall + 10, monotonicNow: CacheIndex.monotonicNanoseconds())
        // The two least recently used go (stored first), bringing 1.6 GB under 1 GB.
        #expect(Set(dropped.map(\.bodyGeneration)) == [1, 2] && index.bytesInUse == 800_000_000)
    }

    @Test func makeRoomStopsWhenNothingMayGo() throws {
        // The only entry is being revalidated: it stays, over the budget, and makeRoom returns.
        let index = try CacheIndex.create(slots: 64, byteBudget: 10)
        let key = Self.key(13)
        _ = Self.store(index, key, Self.entry(size: 100, generation: 1))
        let now = CacheIndex.monotonicNanoseconds()
        let claim = index.claim(
            key, observed: index.lookup(key), owner: 1, deadline: now + Self.second, now: Self.wall, monotonicNow: now)
        guard case .claimed = claim.claim else { throw Failure("claim: \(claim)") }
        #expect(index.makeRoom(now: Self.wall, monotonicNow: now).isEmpty && index.bytesInUse == 100)
        // Once its owner is past the deadline, it may go.
        #expect(index.makeRoom(now: Self.wall, monotonicNow: now + 2 * Self.second).count == 1)
    }

    @Test func aDeadOwnersFlagIsTakenOverAfterItsDeadline() throws {
        let index = try CacheIndex.create(slots: 64, byteBudget: 1 << 20)
        let key = Self.key(6)
        let now = CacheIndex.monotonicNanoseconds()
        let (first, _) = index.claim(
            key, observed: nil, owner: 1, deadline: now + Self.second, now: Self.wall, monotonicNow: now)
        guard case .claimed(let stalled) = first else { throw Failure("claim: \(first)") }
        // Worker 2 finds worker 1's flag; past the deadline (FetchCoalescing says claim) it takes the flag over.
        let seen = try #require(index.lookup(key))
        #expect(seen.flag == .fetching(owner: 1, deadline: now + Self.second))
        let later = now + 2 * Self.second
        let (second, _) = index.claim(
            key, observed: seen, owner: 2, deadline: later + Self.second, now: Self.wall, monotonicNow: later)
        guard case .claimed(let takeover) = second else { throw Failure("claim: \(second)") }
        #expect(try #require(index.lookup(key)).flag == .fetching(owner: 2, deadline: later + Self.second))
        // Worker 1 wakes up late: past its deadline it publishes nothing; even with a clock that says otherwise,
        // the swap fails, the flag being another's.
        #expect(
            index.publish(stalled, .entry(Self.entry(size: 10, generation: 1)), monotonicNow: later)
                == .lost(replaced: nil))
        #expect(
            index.publish(stalled, .entry(Self.entry(size: 10, generation: 1)), monotonicNow: now)
                == .lost(replaced: nil))
        let fetched = Self.entry(size: 10, generation: 2)
        #expect(index.publish(takeover, .entry(fetched), monotonicNow: later) == .published(replaced: nil))
        #expect(try #require(index.lookup(key)).state == .ready(fetched))
    }

    @Test func theMasterClearsAnExitedWorkersFlags() throws {
        let index = try CacheIndex.create(slots: 64, byteBudget: 1 << 20)
        let now = CacheIndex.monotonicNanoseconds()
        let stored = Self.key(7, bucket: 1)
        let fresh = Self.key(8, bucket: 2)
        let othersKey = Self.key(9, bucket: 3)
        _ = Self.store(index, stored, Self.entry(size: 100, generation: 1))
        // Worker 4 revalidates one key and fetches another for the first time; worker 5 fetches a third.
        for (key, owner) in [(stored, Int32(4)), (fresh, 4), (othersKey, 5)] {
            let claim = index.claim(
                key, observed: index.lookup(key), owner: owner, deadline: now + Self.second, now: Self.wall,
                monotonicNow: now
            ).claim
            guard case .claimed = claim else { throw Failure("claim: \(claim)") }
        }
        #expect(index.clearFlags(ownedBy: 4) == 2)
        let kept = try #require(index.lookup(stored))
        #expect(kept.state == .ready(Self.entry(size: 100, generation: 1)) && kept.flag == .idle)
        #expect(index.lookup(fresh) == nil)
        #expect(try #require(index.lookup(othersKey)).flag == .fetching(owner: 5, deadline: now + Self.second))
        #expect(index.clearFlags(ownedBy: 4) == 0)
    }

    @Test func workersRacingForOneKeysFlagLeaveExactlyOneWinner() throws {
        // Four threads miss the same key at once while four others purge the entries filling its bucket, so the
        // claimants see different free slots (the case where two could take two slots for one key); 2,000 rounds,
        // a new key each. In every round exactly one claims the flag, and the key has one slot.
        let index = try CacheIndex.create(slots: 32, byteBudget: 1 << 30)
        let now = CacheIndex.monotonicNanoseconds()
        for round in UInt64(1)...2_000 {
            let bucket = round % 4
            let key = Self.key(round, bucket: bucket)
            let fillers = (0..<UInt64(8)).map { Self.key(1_000_000 + round * 8 + $0, bucket: bucket) }
            for filler in fillers { _ = Self.store(index, filler, Self.entry(size: 1, generation: 1), owner: 99) }
            nonisolated(unsafe) let wins = UnsafeMutableBufferPointer<Int>.allocate(capacity: 8)
            defer { wins.deallocate() }
            DispatchQueue.concurrentPerform(iterations: 8) { thread in
                wins[thread] = 0
                if thread >= 4 {
                    for filler in fillers[(thread - 4) * 2..<(thread - 4) * 2 + 2] { index.remove(filler) }
                    return
                }
                while true {
                    let seen = index.lookup(key)
                    if let seen, case .fetching = seen.flag { return }  // another holds it: wait (not here)
                    let (claim, _) = index.claim(
                        key, observed: seen, owner: Int32(thread), deadline: now + 60 * Self.second, now: Self.wall,
                        monotonicNow: now)
                    switch claim {
                    case .claimed:
                        wins[thread] = 1
                        return
                    case .changed: continue
                    case .bucketFull: return
                    }
                }
            }
            #expect(wins.reduce(0, +) == 1, "round \(round)")
            let first = Int(key.high % UInt64(index.buckets)) * CacheIndex.slotsPerBucket
            let seen = try #require(index.lookup(key))
            #expect((first..<first + 8).contains(seen.slot))
            // Released at once: the slots are free for the next rounds.
            guard case .fetching(let owner, _) = seen.flag else { throw Failure("round \(round): \(seen.flag)") }
            #expect(index.clearFlags(ownedBy: owner) == 1)
            #expect(index.lookup(key) == nil, "round \(round): a second slot for the key")
        }
    }

    @Test func workersRacingToRevalidateAStoredEntryLeaveExactlyOneWinner() throws {
        // The key is stored; eight threads find it stale at once and claim its flag from what they read.
        let index = try CacheIndex.create(slots: 8, byteBudget: 1 << 30)
        let key = Self.key(11)
        let stored = Self.entry(size: 10, generation: 1)
        _ = Self.store(index, key, stored)
        let now = CacheIndex.monotonicNanoseconds()
        for round in 1...1_000 {
            nonisolated(unsafe) let wins = UnsafeMutableBufferPointer<Int>.allocate(capacity: 8)
            defer { wins.deallocate() }
            DispatchQueue.concurrentPerform(iterations: 8) { thread in
                wins[thread] = 0
                while let seen = index.lookup(key), seen.flag == .idle {
                    let (claim, _) = index.claim(
                        key, observed: seen, owner: Int32(thread), deadline: now + 60 * Self.second, now: Self.wall,
                        monotonicNow: now)
                    if case .claimed = claim {
                        wins[thread] = 1
                        return
                    }
                }
            }
            #expect(wins.reduce(0, +) == 1, "round \(round)")
            let seen = try #require(index.lookup(key))
            #expect(seen.state == .ready(stored))
            guard case .fetching(let owner, _) = seen.flag else { throw Failure("round \(round): \(seen.flag)") }
            #expect(index.clearFlags(ownedBy: owner) == 1)
        }
    }

    @Test func readersNeverSeeAHalfWrittenEntry() throws {
        // One thread refreshes a key 20,000 times with entries whose every field derives from one number; three
        // others read it meanwhile. Every entry a reader sees must be one that was published, whole.
        let index = try CacheIndex.create(slots: 8, byteBudget: 1 << 40)
        let key = Self.key(14)
        @Sendable func entry(_ number: Int64) -> CacheIndexEntry {
            CacheIndexEntry(
                status: Int32(200 + number % 300), requestTime: number, responseTime: number + 1, storedAt: number,
                lifetime: number * 3, correctedInitialAge: number * 5, staleWhileRevalidate: Int32(number % 1_000),
                staleIfError: Int32(number % 999), bodySize: number * 7, headerSize: number * 11,
                bodyGeneration: UInt64(number), varyHash: UInt64(number) &* 13)
        }
        _ = Self.store(index, key, entry(1))
        nonisolated(unsafe) let torn = UnsafeMutableBufferPointer<Int>.allocate(capacity: 4)
        defer { torn.deallocate() }
        DispatchQueue.concurrentPerform(iterations: 4) { thread in
            torn[thread] = 0
            if thread == 0 {
                for number in Int64(2)...20_000 {
                    let now = CacheIndex.monotonicNanoseconds()
                    guard let seen = index.lookup(key) else { continue }
                    let (claim, _) = index.claim(
                        key, observed: seen, owner: 1, deadline: now + 60 * Self.second, now: Self.wall,
                        monotonicNow: now)
                    guard case .claimed(let ticket) = claim else { continue }
                    _ = index.publish(ticket, .entry(entry(number)), monotonicNow: now)
                }
                return
            }
            for _ in 0..<40_000 {
                guard case .ready(let seen) = index.lookup(key)?.state else { continue }
                var expected = entry(Int64(seen.bodyGeneration))
                expected.lastUsed = seen.lastUsed
                if seen != expected { torn[thread] += 1 }
            }
        }
        #expect(torn.reduce(0, +) == 0)
        #expect(try #require(index.lookup(key)).state == .ready(entry(20_000)))
    }

    @Test func waitersWakeWhenTheOwnerPublishes() async throws {
        // The owner and the waiter use two mappings of the memfd (two addresses of the same pages), as two
        // processes do: a process-private futex would never wake the waiter.
        let index = try CacheIndex.create(slots: 64, byteBudget: 1 << 20)
        let waiter = try CacheIndex.attach(fd: dup(index.fd))
        let key = Self.key(10)
        let now = CacheIndex.monotonicNanoseconds()
        let (claim, _) = index.claim(
            key, observed: nil, owner: 1, deadline: now + 10 * Self.second, now: Self.wall, monotonicNow: now)
        guard case .claimed(let ticket) = claim else { throw Failure("claim: \(claim)") }
        let seen = try #require(waiter.lookup(key))
        // Nothing changes: the wait ends at its deadline, 50 ms.
        let start = CacheIndex.monotonicNanoseconds()
        #expect(!waiter.wait(for: seen, until: start + 50_000_000))
        #expect(CacheIndex.monotonicNanoseconds() - start >= 50_000_000)
        // The owner publishes 100 ms into a wait of 10 s: the waiter wakes then and finds the entry.
        let stored = Self.entry(size: 10, generation: 1)
        let publisher = Thread {
            usleep(100_000)
            _ = index.publish(ticket, .entry(stored), monotonicNow: CacheIndex.monotonicNanoseconds())
        }
        let waitStart = CacheIndex.monotonicNanoseconds()
        publisher.start()
        #expect(waiter.wait(for: seen, until: waitStart + 10 * Self.second))
        #expect(CacheIndex.monotonicNanoseconds() - waitStart < 5 * Self.second)
        #expect(try #require(waiter.lookup(key)).state == .ready(stored))
        publisher.join()
    }

    @Test func aWorkerProcessKilledMidFetchIsClearedByItsPid() throws {
        // A forked child stands for a worker: it claims a stored key's flag (revalidating it) under its pid, says
        // so on a pipe, and is killed. The parent, as the master, reaps it and clears what it held. (The child
        // only calls code that does not allocate, which a fork of a threaded process allows.)
        let index = try CacheIndex.create(slots: 64, byteBudget: 1 << 20)
        let key = Self.key(15)
        let stored = Self.entry(size: 10, generation: 1)
        _ = Self.store(index, key, stored)
        let observed = try #require(index.lookup(key))
        let deadline = CacheIndex.monotonicNanoseconds() + 60 * Self.second
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer { close(ends[0]) }
        let child = fork()
        if child == 0 {
            let (claim, _) = index.claim(
                key, observed: observed, owner: getpid(), deadline: deadline, now: Self.wall, monotonicNow: 0)
            var byte: UInt8 = if case .claimed = claim { 1 } else { 0 }
            _ = write(ends[1], &byte, 1)
            while true { pause() }
        }
        close(ends[1])
        #expect(child > 0)
        var poller = pollfd(fd: ends[0], events: Int16(POLLIN), revents: 0)
        var byte: UInt8 = 0
        let ready = poll(&poller, 1, 10_000) == 1 && read(ends[0], &byte, 1) == 1
        kill(child, SIGKILL)
        var status: Int32 = 0
        #expect(waitpid(child, &status, 0) == child)
        #expect(ready && byte == 1)
        let held = try #require(index.lookup(key))
        #expect(held.flag == .fetching(owner: child, deadline: deadline) && held.state == .ready(stored))
        #expect(index.clearFlags(ownedBy: child) == 1)
        let cleared = try #require(index.lookup(key))
        #expect(cleared.flag == .idle && cleared.state == .ready(stored))
    }

    @Test func aWaiterInOneProcessWakesWhenAnotherPublishes() throws {
        // The child claims the stored key's flag, sleeps 200 ms, publishes a new entry and exits; the parent,
        // once it sees the flag held, waits on it (a futex shared between processes) and finds the new entry.
        let index = try CacheIndex.create(slots: 64, byteBudget: 1 << 20)
        let key = Self.key(16)
        _ = Self.store(index, key, Self.entry(size: 10, generation: 1))
        let observed = try #require(index.lookup(key))
        let refreshed = Self.entry(size: 20, generation: 2)
        let deadline = CacheIndex.monotonicNanoseconds() + 60 * Self.second
        let child = fork()
        if child == 0 {
            let (claim, _) = index.claim(
                key, observed: observed, owner: getpid(), deadline: deadline, now: Self.wall, monotonicNow: 0)
            guard case .claimed(let ticket) = claim else { _exit(1) }
            usleep(200_000)
            let published = index.publish(ticket, .entry(refreshed), monotonicNow: CacheIndex.monotonicNanoseconds())
            let replaced = CacheIndex.Dropped(key: key, bodyGeneration: 1, fileSize: 10)
            _exit(published == .published(replaced: replaced) ? 0 : 2)
        }
        #expect(child > 0)
        let start = CacheIndex.monotonicNanoseconds()
        var seen = try #require(index.lookup(key))
        while seen.flag == .idle, CacheIndex.monotonicNanoseconds() - start < 5 * Self.second {
            usleep(1_000)
            seen = try #require(index.lookup(key))
        }
        #expect(seen.flag == .fetching(owner: child, deadline: deadline))
        #expect(index.wait(for: seen, until: start + 10 * Self.second))
        #expect(CacheIndex.monotonicNanoseconds() - start < 5 * Self.second)
        #expect(try #require(index.lookup(key)).state == .ready(refreshed))
        // Reaped within 10 s, or killed (only while not yet reaped: its pid is ours to signal until then).
        var status: Int32 = 0
        var reaped = waitpid(child, &status, WNOHANG)
        while reaped == 0, CacheIndex.monotonicNanoseconds() - start < 10 * Self.second {
            usleep(10_000)
            reaped = waitpid(child, &status, WNOHANG)
        }
        if reaped == 0 {
            kill(child, SIGKILL)
            waitpid(child, &status, 0)
        }
        #expect(reaped == child && status == 0)
    }

    @Test func attachingSomethingElseIsRefused() throws {
        var pipeEnds: [Int32] = [0, 0]
        #expect(pipe(&pipeEnds) == 0)
        defer { close(pipeEnds[0]); close(pipeEnds[1]) }
        #expect(throws: SystemError.self) { try CacheIndex.attach(fd: pipeEnds[0]) }
        // A rate-limit table is a memfd too, of another layout.
        let rates = try RateLimitTable.create(slots: 8)
        #expect(throws: SystemError.self) { try CacheIndex.attach(fd: rates.fd) }
        // An index cut short (its header promises more slots than the file holds).
        let index = try CacheIndex.create(slots: 64, byteBudget: 0)
        #expect(ftruncate(index.fd, 128 + 128) == 0)
        #expect(throws: SystemError.self) { try CacheIndex.attach(fd: index.fd) }
    }
}

/// A failed precondition of a test, thrown so the test stops there.
private struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A pthread running one closure (the waiter test needs a second thread that blocks, outside the task pool).
private final class Thread: @unchecked Sendable {
    private let body: @Sendable () -> Void
    private var thread = pthread_t()

    init(_ body: @escaping @Sendable () -> Void) { self.body = body }

    func start() {
        let box = Unmanaged.passRetained(self).toOpaque()
        pthread_create(
            &thread, nil,
            { box in
                let this = Unmanaged<Thread>.fromOpaque(box!).takeRetainedValue()
                this.body()
                return nil
            }, box)
    }

    func join() { pthread_join(thread, nil) }
}
