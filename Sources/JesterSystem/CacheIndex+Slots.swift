// SPDX-License-Identifier: Apache-2.0
import CJesterPosix
import Glibc

extension CacheIndex {
    /// A key's slot as a lookup found it: what it holds and its fetching flag, at one version of the slot. Passed
    /// back to `claim`, `wait` and `touch`, which act only if the slot is still at that version.
    public struct Observation: Sendable, Equatable {
        /// The key looked up.
        public let key: Key
        /// The slot's number in the table.
        public let slot: Int
        /// What the slot holds.
        public let state: CacheIndexSlotState
        /// The key's fetching flag (JesterCache's `FetchCoalescing` decides on it).
        public let flag: CacheIndexFlag
        /// The control word read: what `claim` swaps from, and the futex value `wait` sleeps on.
        let control: CacheIndexControl
    }

    /// Proof of holding a key's fetching flag, from `claim`: what `publish` and `release` need.
    public struct Ticket: Sendable, Equatable {
        /// The key.
        public let key: Key
        /// Its slot.
        public let slot: Int
        /// The flag's deadline (monotonic nanoseconds): past it, another process may take the flag over.
        public let deadline: Int64
        /// The control word the claim stored: what `publish` and `release` swap from.
        let control: CacheIndexControl
    }

    /// What `claim` did.
    public enum Claim: Sendable, Equatable {
        /// The caller holds the key's flag: fetch, then `publish` or `release`.
        case claimed(Ticket)
        /// The slot changed since it was observed (another process claimed, published or removed it): look up
        /// and decide again.
        case changed
        /// Every slot of the key's bucket is held by a live fetch: go upstream alone, store nothing.
        case bucketFull
    }

    /// An entry taken out of the index (replaced, removed or evicted): the caller unlinks its body file,
    /// `<hash>-<bodyGeneration>` (open descriptors still read it whole).
    public struct Dropped: Sendable, Equatable {
        /// The entry's key (the tag stands for the low half: a low half of 0 reads back as 1).
        public let key: Key
        /// Its body file's generation.
        public let bodyGeneration: UInt64
        /// The bytes it counted against the budget (already subtracted).
        public let fileSize: Int64

        /// A dropped entry (the index makes them; tests compare with them).
        public init(key: Key, bodyGeneration: UInt64, fileSize: Int64) {
            self.key = key
            self.bodyGeneration = bodyGeneration
            self.fileSize = fileSize
        }
    }

    /// What a fetch leaves in the slot.
    public enum Content: Sendable, Equatable {
        /// A stored response, whose body file is complete and renamed into place.
        case entry(CacheIndexEntry)
        /// A `Vary` marker naming the sorted field list `namesHash`, published at `now` (wall seconds).
        case varyMarker(namesHash: UInt64, now: Int64)
    }

    /// What `publish` did.
    public enum Publication: Sendable, Equatable {
        /// Visible to every process; `replaced` is the entry it took the place of, if any.
        case published(replaced: Dropped?)
        /// The flag was no longer the caller's (taken over past its deadline, the key removed by a purge, or the
        /// master cleared it): nothing was published; the caller deletes its new body file. `replaced` as above
        /// (an entry being refreshed is gone once its writer started).
        case lost(replaced: Dropped?)
    }

    /// One slot's words read together (a seqlock read: the control did not change meanwhile).
    struct Snapshot {
        /// The tag word (the key's low half; 0 when empty).
        var tag: UInt64
        /// The key's high half.
        var high: UInt64
        /// The control word.
        var control: CacheIndexControl
        /// The flag's deadline or `uncacheable` time (monotonic nanoseconds).
        var deadline: Int64
        /// The entry words (meaningful when ready; a marker's are its names hash and `lastUsed`).
        var entry: CacheIndexEntry

        /// The flag as the public type says it.
        var flag: CacheIndexFlag {
            switch control.flag {
            case .idle: .idle
            case .fetching: .fetching(owner: control.owner, deadline: deadline)
            case .uncacheable: .uncacheable(until: deadline)
            }
        }

        /// The state as the public type says it; nil when empty.
        var state: CacheIndexSlotState? {
            switch control.state {
            case .empty: nil
            case .reserved: .reserved
            case .ready: .ready(entry)
            case .varyMarker: .varyMarker(namesHash: entry.varyHash, lastUsed: entry.lastUsed)
            }
        }

        /// The slot as eviction sees it at `monotonicNow` (a flag past its deadline is nobody's).
        func occupancy(monotonicNow: Int64) -> CacheIndexEviction.Occupancy {
            let fetching = control.flag == .fetching && deadline > monotonicNow
            switch control.state {
            case .empty: return .empty
            case .reserved: return .reserved(flag)
            case .ready:
                return .ready(
                    lastUsed: entry.lastUsed, usefulUntil: entry.usefulUntil,
                    revalidatable: entry.options.contains(.hasValidator), size: entry.fileSize, fetching: fetching)
            case .varyMarker: return .varyMarker(lastUsed: entry.lastUsed, fetching: fetching)
            }
        }
    }

    /// Reads `slot` whole: the control before and after must match (a seqlock read), else it reads again.
    func snapshot(_ slot: Int) -> Snapshot {
        var spins = 0
        while true {
            let before = load(slot, 8)
            let control = CacheIndexControl(raw: UInt64(bitPattern: before))
            let snapshot = Snapshot(
                tag: tag(slot), high: UInt64(bitPattern: load(slot, 16)), control: control, deadline: load(slot, 24),
                entry: readEntry(slot))
            // Every swap changes the version, so an equal control means no swap happened while reading.
            if load(slot, 8) == before { return snapshot }
            spins += 1
            if spins % 64 == 0 { sched_yield() }
        }
    }

    // MARK: Lookup

    /// The slot holding `key`, or nil when the key is in no slot (a miss with an idle flag: `claim` with nil).
    public func lookup(_ key: Key) -> Observation? {
        let first = firstSlot(of: key)
        for slot in first..<first + Self.slotsPerBucket {
            let seen = snapshot(slot)
            // A slot whose high half differs holds another key with the same tag (or one being claimed, its
            // high half not yet written): not this key.
            guard seen.tag == key.tag, let state = seen.state, seen.high == key.high else { continue }
            return Observation(key: key, slot: slot, state: state, flag: seen.flag, control: seen.control)
        }
        return nil
    }

    /// Records that `observed` served a request at `now` (wall seconds): its LRU clock, written at most once a
    /// second per entry, so a hot key costs no shared write per request.
    public func touch(_ observed: Observation, now: Int64) {
        guard load(observed.slot, 32) < now, control(observed.slot) == observed.control else { return }
        // Not under the seqlock: the word stands alone, and a lost race leaves a time within a second.
        store(observed.slot, 32, now)
    }

    /// Sleeps until `observed`'s slot changes (its fetch published or released, the key removed) or until
    /// `deadline` (monotonic nanoseconds); true when it changed. Then look up again.
    public func wait(for observed: Observation, until deadline: Int64) -> Bool {
        let word = (slotPointer(observed.slot) + 8).assumingMemoryBound(to: UInt32.self)
        let expected = UInt32(truncatingIfNeeded: observed.control.raw)
        while control(observed.slot) == observed.control {
            let left = deadline - Self.monotonicNanoseconds()
            if left <= 0 { return false }
            // EAGAIN (changed already), EINTR and spurious wake-ups all lead back to the check above.
            _ = cjester_futex_wait(word, expected, left)
        }
        return true
    }

    // MARK: The fetching flag

    /// Takes `key`'s fetching flag for worker `owner` until `deadline` (monotonic nanoseconds), when
    /// `FetchCoalescing` said `claim`: from `observed` (nil: the key was in no slot, so a slot is taken for it,
    /// evicting the bucket's least recently used entry if it is full). `now` is wall seconds (for the choice),
    /// `monotonicNow` decides which flags are past their deadline. `dropped` is an entry evicted for the slot.
    public func claim(
        _ key: Key, observed: Observation?, owner: Int32, deadline: Int64, now: Int64, monotonicNow: Int64
    ) -> (claim: Claim, dropped: Dropped?) {
        if let observed {
            precondition(observed.key == key, "an observation of another key")
            // The deadline goes in first: whoever sees the new control sees it. A claimant that loses the race
            // overwrites the winner's deadline with its own, a few nanoseconds apart.
            store(observed.slot, 24, deadline)
            let claimed = observed.control.next(observed.control.state, .fetching, owner: owner)
            guard swap(observed.slot, from: (key.tag, observed.control), to: (key.tag, claimed)) else {
                return (.changed, nil)
            }
            return (.claimed(Ticket(key: key, slot: observed.slot, deadline: deadline, control: claimed)), nil)
        }
        let first = firstSlot(of: key)
        let bucket = (first..<first + Self.slotsPerBucket).map(snapshot)
        // Taken meanwhile (a reserved slot's high half may not be written yet: count it as the key's).
        let taken = bucket.contains {
            $0.tag == key.tag && $0.control.state != .empty && ($0.high == key.high || $0.control.state == .reserved)
        }
        if taken { return (.changed, nil) }
        let candidates = bucket.enumerated().map {
            CacheIndexEviction.Candidate(
                slot: first + $0.offset, occupancy: $0.element.occupancy(monotonicNow: monotonicNow))
        }
        guard let slot = CacheIndexEviction.slotToReuse(in: candidates, now: now, monotonicNow: monotonicNow) else {
            return (.bucketFull, nil)
        }
        let victim = bucket[slot - first]
        store(slot, 24, deadline)
        let claimed = victim.control.next(.reserved, .fetching, owner: owner)
        // Waiters on a reserved slot taken over must look again: their key is no longer there.
        guard swap(slot, from: (victim.tag, victim.control), to: (key.tag, claimed), wake: true) else {
            return (.changed, nil)
        }
        store(slot, 16, Int64(bitPattern: key.high))
        var dropped: Dropped?
        if victim.control.state == .ready {
            dropped = Dropped(
                key: Key(low: victim.tag, high: victim.high), bodyGeneration: victim.entry.bodyGeneration,
                fileSize: victim.entry.fileSize)
            addBytes(-victim.entry.fileSize)
        }
        if victim.control.state == .ready || victim.control.state == .varyMarker { increment(.evictions) }
        // Two processes that missed at once may have taken two slots for the key. Each looks after taking its
        // own: at least the later sees the earlier, and gives its slot back.
        let duplicate = (first..<first + Self.slotsPerBucket).contains {
            $0 != slot && tag($0) == key.tag && control($0).state != .empty
        }
        if duplicate {
            _ = swap(slot, from: (key.tag, claimed), to: (0, claimed.next(.empty, .idle)), wake: true)
            return (.changed, dropped)
        }
        return (.claimed(Ticket(key: key, slot: slot, deadline: deadline, control: claimed)), dropped)
    }

    /// Ends the fetch of `ticket` by publishing `content` and wakes the waiters; a published entry's bytes count
    /// against the budget (call `makeRoom` after). A writer at or past its deadline (`monotonicNow`) publishes
    /// nothing: another process may be taking the flag over.
    public func publish(_ ticket: Ticket, _ content: Content, monotonicNow: Int64) -> Publication {
        guard monotonicNow < ticket.deadline else {
            _ = release(ticket)
            return .lost(replaced: nil)
        }
        // Hide the slot first (reserved: no reader takes its words for an entry), with a swap that proves the
        // flag is still ours.
        let hidden = ticket.control.next(.reserved, .fetching, owner: ticket.control.owner)
        guard swap(ticket.slot, from: (ticket.key.tag, ticket.control), to: (ticket.key.tag, hidden)) else {
            return .lost(replaced: nil)
        }
        var replaced: Dropped?
        if ticket.control.state == .ready {
            let old = readEntry(ticket.slot)
            replaced = Dropped(key: ticket.key, bodyGeneration: old.bodyGeneration, fileSize: old.fileSize)
            addBytes(-old.fileSize)
        }
        store(ticket.slot, 16, Int64(bitPattern: ticket.key.high))
        let state: CacheIndexControl.State
        switch content {
        case .entry(let entry):
            writeEntry(ticket.slot, entry)
            state = .ready
        case .varyMarker(let namesHash, let now):
            store(ticket.slot, 64, Int64(bitPattern: namesHash))
            store(ticket.slot, 32, now)
            state = .varyMarker
        }
        guard
            swap(
                ticket.slot, from: (ticket.key.tag, hidden), to: (ticket.key.tag, hidden.next(state, .idle)),
                wake: true)
        else { return .lost(replaced: replaced) }
        if case .entry(let entry) = content { addBytes(entry.fileSize) }
        increment(.stores)
        return .published(replaced: replaced)
    }

    /// Ends the fetch of `ticket` without storing and wakes the waiters: the flag goes idle (the fetch failed:
    /// the next request may try at once), or `uncacheable` until `uncacheableUntil` (monotonic nanoseconds; the
    /// response may not be stored). A key with no entry leaves its slot, unless marked. False when the flag was
    /// no longer the caller's.
    @discardableResult
    public func release(_ ticket: Ticket, uncacheableUntil: Int64? = nil) -> Bool {
        let state = ticket.control.state
        let to: (tag: UInt64, control: CacheIndexControl)
        if let uncacheableUntil {
            store(ticket.slot, 24, uncacheableUntil)
            to = (ticket.key.tag, ticket.control.next(state, .uncacheable))
        } else if state == .reserved {
            to = (0, ticket.control.next(.empty, .idle))
        } else {
            to = (ticket.key.tag, ticket.control.next(state, .idle))
        }
        return swap(ticket.slot, from: (ticket.key.tag, ticket.control), to: to, wake: true)
    }

    // MARK: Removal and eviction

    /// Removes `key` (an invalidation or a purge), whatever its state; a fetch in progress for it then publishes
    /// nothing. Returns the entry removed, nil when there was none (or only a marker or a reservation).
    @discardableResult
    public func remove(_ key: Key) -> Dropped? {
        while let seen = lookup(key) {
            let emptied = seen.control.next(.empty, .idle)
            guard swap(seen.slot, from: (key.tag, seen.control), to: (0, emptied), wake: true) else { continue }
            guard case .ready(let entry) = seen.state else { return nil }
            addBytes(-entry.fileSize)
            return Dropped(key: key, bodyGeneration: entry.bodyGeneration, fileSize: entry.fileSize)
        }
        return nil
    }

    /// Clears every flag worker `owner` held (the master, right after `waitpid` returned its pid, before the
    /// pid can name another process; `FetchCoalescing.afterExit`): its entries stay, idle; keys it was fetching for
    /// the first time, or whose refresh it was writing, are freed. Waiters wake and decide again. Returns how many
    /// flags it cleared. Reads every slot (allocating the table's pages).
    @discardableResult
    public func clearFlags(ownedBy owner: Int32) -> Int {
        var cleared = 0
        for slot in 0..<slots {
            while true {
                let tag = tag(slot)
                let control = control(slot)
                guard control.flag == .fetching, control.owner == owner else { break }
                let to =
                    control.state == .reserved
                    ? (tag: UInt64(0), control: control.next(.empty, .idle))
                    : (tag: tag, control: control.next(control.state, .idle))
                if swap(slot, from: (tag, control), to: to, wake: true) {
                    cleared += 1
                    break
                }
            }
        }
        return cleared
    }

    /// Evicts entries, chosen by `CacheIndexEviction.victim` among `sampleSize` entries at a time, until the bytes
    /// in use fit the budget (or a sweep of the whole table found nothing to drop). `now` is wall seconds.
    /// Returns what was evicted: the caller unlinks those files.
    ///
    /// A sample is the first `sampleSize` entries from a random slot on: keys land in slots by their hash, so
    /// neighbours are as random as any, and a sparse table (a few large entries) still yields a sample, where
    /// picking random slots would mostly find empty ones.
    public func makeRoom<Generator: RandomNumberGenerator>(
        now: Int64, monotonicNow: Int64, sampleSize: Int = 16, using generator: inout Generator
    ) -> [Dropped] {
        var dropped: [Dropped] = []
        var fruitless = 0
        while bytesInUse > byteBudget && fruitless < 8 {
            var sample: [Int: Snapshot] = [:]
            let start = Int.random(in: 0..<slots, using: &generator)
            for step in 0..<slots where sample.count < sampleSize {
                let slot = (start + step) % slots
                let seen = snapshot(slot)
                if seen.control.state == .ready { sample[slot] = seen }
            }
            let candidates = sample.map {
                CacheIndexEviction.Candidate(slot: $0.key, occupancy: $0.value.occupancy(monotonicNow: monotonicNow))
            }
            guard let slot = CacheIndexEviction.victim(among: candidates, now: now), let victim = sample[slot],
                swap(slot, from: (victim.tag, victim.control), to: (0, victim.control.next(.empty, .idle)), wake: true)
            else {
                // Nothing may go (every entry is being refreshed), or another process changed the slot first.
                fruitless += 1
                continue
            }
            addBytes(-victim.entry.fileSize)
            increment(.evictions)
            dropped.append(
                Dropped(
                    key: Key(low: victim.tag, high: victim.high), bodyGeneration: victim.entry.bodyGeneration,
                    fileSize: victim.entry.fileSize))
        }
        return dropped
    }

    /// Pushes `ticket`'s deadline out to `deadline` while its fetch goes on (a large body arriving at the pace of
    /// a slow client), so the flag is not taken over from a writer that is making progress. Only before the old
    /// deadline passes (no one may take the flag before then) and while the flag is still the caller's; the
    /// renewed ticket, or nil when it is not.
    public func renew(_ ticket: Ticket, until deadline: Int64, monotonicNow: Int64) -> Ticket? {
        guard monotonicNow < ticket.deadline, control(ticket.slot) == ticket.control else { return nil }
        store(ticket.slot, 24, deadline)
        // A takeover between the check and the store (the caller stalled past its deadline) changed the control.
        guard control(ticket.slot) == ticket.control else { return nil }
        return Ticket(key: ticket.key, slot: ticket.slot, deadline: deadline, control: ticket.control)
    }

    /// How many slots hold a stored response (for `jesterctl cache status`; reads every slot).
    public func entryCount() -> Int {
        (0..<slots).reduce(0) { $0 + (control($1).state == .ready ? 1 : 0) }
    }

    /// `makeRoom` with the system's random numbers.
    public func makeRoom(now: Int64, monotonicNow: Int64) -> [Dropped] {
        var generator = SystemRandomNumberGenerator()
        return makeRoom(now: now, monotonicNow: monotonicNow, using: &generator)
    }
}
