// SPDX-License-Identifier: Apache-2.0

/// What the shared cache index keeps of one stored response: the numbers a lookup needs to decide fresh, stale
/// or unusable, and eviction needs to choose, without opening the body file (Docs/cache-design.md, "Index").
///
/// JesterSystem does not import JesterCache (jesterctl links this module and stays small), so these are plain
/// numbers; the worker converts them to and from JesterCache's `Freshness` and `StoredResponse`. Times are
/// wall-clock seconds since the Unix epoch, like `Freshness`'s: `Date`, `Expires` and `Age` are wall-clock values.
public struct CacheIndexEntry: Sendable, Equatable {
    /// Yes/no facts about the response the lookup needs (RFC 9111 §4.2.4, §5.2.2; RFC 8246).
    public struct Options: OptionSet, Sendable, Equatable {
        public let rawValue: UInt32
        /// Creates options from their stored bits.
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// Unqualified `no-cache`: every use needs a validation first.
        public static let requiresValidation = Options(rawValue: 1 << 0)
        /// Never served stale (must-revalidate, proxy-revalidate, s-maxage).
        public static let forbidsStale = Options(rawValue: 1 << 1)
        /// `immutable`: a client's reload need not reach the origin while fresh.
        public static let immutable = Options(rawValue: 1 << 2)
        /// Has `ETag` or `Last-Modified`: a stale copy can be revalidated, so it is worth keeping past its use.
        public static let hasValidator = Options(rawValue: 1 << 3)
    }

    /// The response's status code.
    public var status: Int32
    /// Options of the response (above).
    public var options: Options
    /// When the request that fetched it was sent (request_time, RFC 9111 §4.2.3).
    public var requestTime: Int64
    /// When the response was received (response_time).
    public var responseTime: Int64
    /// When it was stored or last refreshed (for `jesterctl cache` and prefix purges).
    public var storedAt: Int64
    /// The freshness lifetime in seconds (§4.2.1).
    public var lifetime: Int64
    /// The age it had on arrival (§4.2.3's corrected_initial_age).
    public var correctedInitialAge: Int64
    /// Seconds past its lifetime it may be served while revalidated (RFC 5861 §3).
    public var staleWhileRevalidate: Int32
    /// Seconds past its lifetime it may be served when the origin fails (RFC 5861 §4).
    public var staleIfError: Int32
    /// Bytes of the body, as stored.
    public var bodySize: Int64
    /// Bytes of the file's header (key, fields): with `bodySize`, what the entry costs the `max_size` budget.
    public var headerSize: Int64
    /// The body file's generation: the file is `<hash>-<generation>`, a new name for every store or refresh.
    public var bodyGeneration: UInt64
    /// For a variant (a response with `Vary`): the id of its sorted `Vary` field names, as its primary key's
    /// marker names them; 0 for a response without `Vary`.
    public var varyHash: UInt64
    /// When a lookup last used it (seconds; written at most once a second per entry): the LRU clock.
    public var lastUsed: Int64

    /// An entry; `lastUsed` starts at `storedAt`.
    public init(
        status: Int32, options: Options = [], requestTime: Int64, responseTime: Int64, storedAt: Int64,
        lifetime: Int64, correctedInitialAge: Int64 = 0, staleWhileRevalidate: Int32 = 0, staleIfError: Int32 = 0,
        bodySize: Int64, headerSize: Int64 = 0, bodyGeneration: UInt64, varyHash: UInt64 = 0
    ) {
        self.status = status
        self.options = options
        self.requestTime = requestTime
        self.responseTime = responseTime
        self.storedAt = storedAt
        self.lifetime = lifetime
        self.correctedInitialAge = correctedInitialAge
        self.staleWhileRevalidate = staleWhileRevalidate
        self.staleIfError = staleIfError
        self.bodySize = bodySize
        self.headerSize = headerSize
        self.bodyGeneration = bodyGeneration
        self.varyHash = varyHash
        lastUsed = storedAt
    }

    /// Bytes it counts against the budget.
    public var fileSize: Int64 { bodySize + headerSize }

    /// The first second it is stale: current_age = corrected_initial_age + (now - response_time) reaches the
    /// lifetime (§4.2.3, §4.2).
    public var freshUntil: Int64 { responseTime - correctedInitialAge + lifetime }

    /// The first second it can no longer be served without a validation, stale extensions included.
    public var usefulUntil: Int64 {
        options.contains(.forbidsStale)
            ? freshUntil : freshUntil + Int64(max(staleWhileRevalidate, staleIfError, 0))
    }
}

/// What a slot of the index holds, as a process read it.
///
/// There is no tombstone: a key lives in any slot of its bucket and every lookup scans the whole bucket, so a
/// removed slot is simply empty again; what a tombstone would tell a reader caught mid-read (the slot changed)
/// the control word's version tells it.
public enum CacheIndexSlotState: Sendable, Equatable {
    /// The key is held but there is no entry to serve: a first fetch in progress, a refresh being written (for
    /// the few stores it takes), or a key marked uncacheable. Readers treat it as a miss with the flag below.
    case reserved
    /// A stored response.
    case ready(CacheIndexEntry)
    /// The primary key of responses with `Vary`: `namesHash` names the sorted field list; the variants live
    /// under `CacheKey.variantHash` keys.
    case varyMarker(namesHash: UInt64, lastUsed: Int64)
}

/// A key's fetching flag as stored (JesterCache's `FetchFlag`, which the worker maps it to one to one).
/// Times are monotonic nanoseconds (CLOCK_MONOTONIC), like FetchCoalescing's.
public enum CacheIndexFlag: Sendable, Equatable {
    /// Nobody is fetching.
    case idle
    /// Worker `owner` (its pid: what the master names it by when it reaps it) is fetching, until `deadline`.
    case fetching(owner: Int32, deadline: Int64)
    /// The last fetch could not be stored: requests go upstream in parallel until `until`.
    case uncacheable(until: Int64)
}

/// The control word of a slot: state, flag, a version and the flag's owner in 64 bits, changed only by a 16-byte
/// compare-and-swap together with the key's tag (`cjester_atomic_cas128`).
///
/// Layout (bit 0 first): state (4 bits), flag (4), version (24), owner (32). The version grows on every change,
/// so the low 32 bits change on every swap: they are the futex word waiters sleep on, and the seqlock readers
/// compare before and after reading the other words.
struct CacheIndexControl: Equatable {
    /// The stored state's number.
    enum State: UInt64 {
        case empty = 0, reserved = 1, ready = 2, varyMarker = 3
    }
    /// The stored flag's number.
    enum Flag: UInt64 {
        case idle = 0, fetching = 1, uncacheable = 2
    }

    /// What the slot holds.
    var state: State
    /// The key's fetching flag.
    var flag: Flag
    /// Grows by one on every swap (24 bits, wrapping).
    var version: UInt64
    /// The flag's owner (a worker's pid) when fetching.
    var owner: Int32

    /// A control word from its parts.
    init(state: State, flag: Flag, version: UInt64, owner: Int32 = 0) {
        self.state = state
        self.flag = flag
        self.version = version & 0xFF_FFFF
        self.owner = owner
    }

    /// Decodes a stored word; an unknown state or flag (not written by this layout) reads as empty and idle.
    init(raw: UInt64) {
        state = State(rawValue: raw & 0xF) ?? .empty
        flag = Flag(rawValue: (raw >> 4) & 0xF) ?? .idle
        version = (raw >> 8) & 0xFF_FFFF
        owner = Int32(bitPattern: UInt32(truncatingIfNeeded: raw >> 32))
    }

    /// The stored word.
    var raw: UInt64 {
        state.rawValue | flag.rawValue << 4 | (version & 0xFF_FFFF) << 8
            | UInt64(UInt32(bitPattern: owner)) << 32
    }

    /// The same control with another state, flag and owner, one version later.
    func next(_ state: State, _ flag: Flag, owner: Int32 = 0) -> CacheIndexControl {
        CacheIndexControl(state: state, flag: flag, version: version + 1, owner: owner)
    }
}
