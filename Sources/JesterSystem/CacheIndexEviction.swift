// SPDX-License-Identifier: Apache-2.0

/// Which entry of the shared cache index goes when room is needed: sampled LRU by size (Docs/cache-design.md,
/// "Eviction"). Pure: the index reads a few slots and asks; times are passed in.
///
/// Sampled LRU (as Redis does) needs no list shared between processes, so no lock and nothing a killed worker
/// could leave half-linked. Entries past every use that cannot be revalidated go first: they can only miss.
public enum CacheIndexEviction {
    /// One slot as eviction sees it.
    public struct Candidate: Sendable, Equatable {
        /// The slot's number in the table.
        public var slot: Int
        /// What it holds.
        public var occupancy: Occupancy

        /// A candidate.
        public init(slot: Int, occupancy: Occupancy) {
            self.slot = slot
            self.occupancy = occupancy
        }
    }

    /// A slot's contents, reduced to what the choice depends on.
    public enum Occupancy: Sendable, Equatable {
        /// Nothing: free.
        case empty
        /// A key held without an entry, with its flag: free once nobody holds it for a fetch.
        case reserved(CacheIndexFlag)
        /// An entry; `fetching` when a worker holds its flag (a revalidation) and is not past its deadline.
        case ready(lastUsed: Int64, usefulUntil: Int64, revalidatable: Bool, size: Int64, fetching: Bool)
        /// A `Vary` marker (no bytes of its own).
        case varyMarker(lastUsed: Int64, fetching: Bool)
    }

    /// The entry to drop among `sample` (random slots) to bring the bytes under the budget at `now` (wall
    /// seconds), or nil when none may go: only entries go (markers and reserved keys hold no bytes), and never
    /// one a worker is refreshing. Dead entries (past `usefulUntil`, no validator) first, then the least
    /// recently used; between equally old ones, the larger.
    public static func victim(among sample: [Candidate], now: Int64) -> Int? {
        var best: (slot: Int, dead: Bool, lastUsed: Int64, size: Int64)?
        for candidate in sample {
            let occupancy = candidate.occupancy
            guard case .ready(let lastUsed, let usefulUntil, let revalidatable, let size, let fetching) = occupancy,
                !fetching
            else { continue }
            let dead = usefulUntil <= now && !revalidatable
            if let current = best {
                let better =
                    dead != current.dead
                    ? dead : lastUsed != current.lastUsed ? lastUsed < current.lastUsed : size > current.size
                if !better { continue }
            }
            best = (candidate.slot, dead, lastUsed, size)
        }
        return best?.slot
    }

    /// The slot of a full-or-not bucket a new key takes, or nil when every slot is held by a live fetch: an empty
    /// slot, else a reserved one nobody is fetching for (or whose owner is past `monotonicNow`: dead or too slow),
    /// else the bucket's least recently used entry or marker not being refreshed (dead entries first).
    public static func slotToReuse(in bucket: [Candidate], now: Int64, monotonicNow: Int64) -> Int? {
        if let empty = bucket.first(where: { $0.occupancy == .empty }) { return empty.slot }
        for candidate in bucket {
            guard case .reserved(let flag) = candidate.occupancy else { continue }
            switch flag {
            case .idle: return candidate.slot
            case .uncacheable(let until) where until <= monotonicNow: return candidate.slot
            case .fetching(_, let deadline) where deadline <= monotonicNow: return candidate.slot
            default: continue
            }
        }
        // Markers compete as entries of no size: they go when they are the least recently used.
        let asEntries = bucket.map { candidate -> Candidate in
            guard case .varyMarker(let lastUsed, let fetching) = candidate.occupancy else { return candidate }
            return Candidate(
                slot: candidate.slot,
                occupancy: .ready(
                    lastUsed: lastUsed, usefulUntil: .max, revalidatable: true, size: 0, fetching: fetching))
        }
        return victim(among: asEntries, now: now)
    }
}
