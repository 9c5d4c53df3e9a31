// SPDX-License-Identifier: Apache-2.0
/// A key's fetching flag in the shared index, as a process read it: who, if anyone, is fetching the key from
/// upstream for everyone (Docs/cache-design.md, "Request coalescing").
///
/// Times are monotonic nanoseconds (CLOCK_MONOTONIC, the same in every process of the machine, like the rate-limit
/// table's): a deadline must not move when the wall clock is stepped.
public enum FetchFlag: Sendable, Equatable {
    /// Nobody is fetching.
    case idle
    /// Worker `owner` (its partition number, which the master knows) is fetching, and will be done by `deadline`.
    case fetching(owner: Int32, deadline: Int64)
    /// The last fetch could not be stored (a `private` or `no-store` answer): until `until`, requests go upstream
    /// in parallel instead of queueing behind one another for a response that will not be shared.
    case uncacheable(until: Int64)
}

/// What a request that missed (or must revalidate) does about the key's fetching flag.
public enum CoalescingAction: Sendable, Equatable {
    /// Swap the flag from what was read to `fetching(owner: self, deadline: now + lockTimeout)`; if the swap
    /// fails (another process changed it first), read it again and decide again. The winner fetches and stores.
    case claim(deadline: Int64)
    /// Wait for the owner (a futex wait on the flag's word) until `until` at the latest, then read the index
    /// again: a stored entry is served (`Cache-Status: ...; collapsed`), else decide again.
    case wait(until: Int64)
    /// Go upstream without the flag, and store nothing: the owner is taking too long, or the key is not cacheable
    /// right now.
    case forwardAlone
}

/// The coalescing rules: one fetch per key across every worker, others waiting a bounded time (nginx's
/// `proxy_cache_lock` and `proxy_cache_lock_timeout`, Varnish's hit-for-miss for what cannot be stored).
public struct FetchCoalescing: Sendable, Equatable {
    /// How long an owner may hold the flag, and a waiter wait, in nanoseconds.
    public var lockTimeout: Int64
    /// How long a key stays `uncacheable` after a fetch that could not be stored, in nanoseconds.
    public var uncacheableHold: Int64

    /// Rules with a lock timeout (default 5 s, as nginx's) and an uncacheable hold (default 10 s).
    public init(lockTimeout: Int64 = 5_000_000_000, uncacheableHold: Int64 = 10_000_000_000) {
        self.lockTimeout = lockTimeout
        self.uncacheableHold = uncacheableHold
    }

    /// The action of a request that read `flag` at `now`; `waitingSince` is when it first started waiting (nil: it
    /// has not waited yet), which bounds its total wait to `lockTimeout` however often the flag changes hands.
    /// Who asks does not matter: a flag of the asker's own worker is another request's fetch.
    public func decide(flag: FetchFlag, now: Int64, waitingSince: Int64? = nil) -> CoalescingAction {
        switch flag {
        case .idle:
            return .claim(deadline: now + lockTimeout)
        case .uncacheable(let until):
            return until > now ? .forwardAlone : .claim(deadline: now + lockTimeout)
        case .fetching(_, let deadline):
            // An owner past its deadline (slow, or dead before the master cleared it) is taken over. A flag of
            // this worker's own is another request's fetch: wait for it like everyone else.
            if deadline <= now { return .claim(deadline: now + lockTimeout) }
            let giveUp = (waitingSince ?? now) + lockTimeout
            return giveUp <= now ? .forwardAlone : .wait(until: min(deadline, giveUp))
        }
    }

    /// The flag the owner leaves when its fetch ends at `now`: idle when the response was stored (or the fetch
    /// failed: the next request may try again at once), `uncacheable` when the response may not be stored.
    public func release(stored: Bool, failed: Bool = false, now: Int64) -> FetchFlag {
        stored || failed ? .idle : .uncacheable(until: now + uncacheableHold)
    }

    /// The flag after worker `worker` exited (the master reaps it, then clears what it held).
    public static func afterExit(of worker: Int32, _ flag: FetchFlag) -> FetchFlag {
        if case .fetching(let owner, _) = flag, owner == worker { return .idle }
        return flag
    }
}
