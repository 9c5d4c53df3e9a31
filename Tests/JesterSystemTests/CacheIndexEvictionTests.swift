// SPDX-License-Identifier: Apache-2.0
import JesterSystem
import Testing

/// The cache index's eviction choices and entry arithmetic, pure.
@Suite struct CacheIndexEvictionTests {
    private typealias Candidate = CacheIndexEviction.Candidate

    private static func ready(
        _ slot: Int, lastUsed: Int64, usefulUntil: Int64 = 1_000, revalidatable: Bool = false, size: Int64 = 10,
        fetching: Bool = false
    ) -> Candidate {
        Candidate(
            slot: slot,
            occupancy: .ready(
                lastUsed: lastUsed, usefulUntil: usefulUntil, revalidatable: revalidatable, size: size,
                fetching: fetching))
    }

    @Test func theLeastRecentlyUsedEntryGoesAndTheLargerOnATie() {
        let sample = [Self.ready(1, lastUsed: 50), Self.ready(2, lastUsed: 20), Self.ready(3, lastUsed: 30)]
        #expect(CacheIndexEviction.victim(among: sample, now: 100) == 2)
        let tie = [Self.ready(1, lastUsed: 20, size: 5), Self.ready(2, lastUsed: 20, size: 9)]
        #expect(CacheIndexEviction.victim(among: tie, now: 100) == 2)
    }

    @Test func deadEntriesGoFirst() {
        // Slot 2 is past every use and has no validator: it can only miss, so it goes before older ones. Slot 3
        // is as stale but revalidatable: an ordinary LRU candidate.
        let sample = [
            Self.ready(1, lastUsed: 10), Self.ready(2, lastUsed: 90, usefulUntil: 50),
            Self.ready(3, lastUsed: 5, usefulUntil: 50, revalidatable: true),
        ]
        #expect(CacheIndexEviction.victim(among: sample, now: 100) == 2)
        #expect(CacheIndexEviction.victim(among: Array(sample.dropFirst(2)) + [sample[0]], now: 100) == 3)
    }

    @Test func nothingBeingRefreshedOrWithoutBytesIsEvicted() {
        let sample = [
            Self.ready(1, lastUsed: 1, fetching: true), Candidate(slot: 2, occupancy: .empty),
            Candidate(slot: 3, occupancy: .reserved(.idle)),
            Candidate(slot: 4, occupancy: .varyMarker(lastUsed: 0, fetching: false)),
        ]
        #expect(CacheIndexEviction.victim(among: sample, now: 100) == nil)
        #expect(CacheIndexEviction.victim(among: sample + [Self.ready(5, lastUsed: 99)], now: 100) == 5)
    }

    @Test func aNewKeyTakesAFreeSlotThenAnAbandonedOneThenTheOldest() {
        let live = Candidate(slot: 0, occupancy: .reserved(.fetching(owner: 1, deadline: 2_000)))
        let old = Self.ready(1, lastUsed: 10)
        let marker = Candidate(slot: 2, occupancy: .varyMarker(lastUsed: 5, fetching: false))
        let full = [live, old, marker]
        func reuse(_ bucket: [Candidate], monotonicNow: Int64 = 1_000) -> Int? {
            CacheIndexEviction.slotToReuse(in: bucket, now: 100, monotonicNow: monotonicNow)
        }
        #expect(reuse(full + [Candidate(slot: 3, occupancy: .empty)]) == 3)
        #expect(reuse(full + [Candidate(slot: 3, occupancy: .reserved(.idle))]) == 3)
        #expect(reuse(full + [Candidate(slot: 3, occupancy: .reserved(.uncacheable(until: 999)))]) == 3)
        #expect(reuse(full + [Candidate(slot: 3, occupancy: .reserved(.uncacheable(until: 1_001)))]) == 2)
        // The least recently used of entries and markers (the marker, here), never a live fetch.
        #expect(reuse(full) == 2)
        #expect(reuse([live, old]) == 1)
        #expect(reuse([live]) == nil)
        // Past its deadline, the fetch's owner is dead or too slow: its reservation is free.
        #expect(reuse([live], monotonicNow: 2_000) == 0)
    }

    @Test func anEntryIsFreshThenUsefulForItsStaleExtensions() {
        var entry = CacheIndexEntry(
            status: 200, requestTime: 1_000, responseTime: 1_001, storedAt: 1_001, lifetime: 60,
            correctedInitialAge: 11, staleWhileRevalidate: 30, staleIfError: 90, bodySize: 1_000, headerSize: 24,
            bodyGeneration: 1)
        #expect(entry.freshUntil == 1_050 && entry.usefulUntil == 1_140 && entry.fileSize == 1_024)
        #expect(entry.lastUsed == 1_001)
        entry.options.insert(.forbidsStale)
        #expect(entry.usefulUntil == 1_050)
    }
}
