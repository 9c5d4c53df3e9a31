// SPDX-License-Identifier: Apache-2.0

/// What `jesterctl cache purge` removes: one key, or every key under a prefix. An enum rather than two optional
/// strings, so a request naming both, or neither, cannot be written.
public enum CachePurgeTarget: Codable, Sendable, Equatable {
    /// The entry stored under exactly this key (its URI as the cache keys it: `https://example.com/a?b`), with
    /// every variant `Vary` made of it.
    case key(String)
    /// Every entry whose key starts with this text (`https://example.com/img/`).
    case prefix(String)
}

/// `jesterctl cache status`: the shared HTTP cache of the whole instance (one index shared by every worker, so
/// the figures are the instance's, not one worker's).
public struct CacheStatusReport: Codable, Sendable, Equatable {
    /// Bytes the stored responses take.
    public var bytesUsed: Int
    /// The most they may take (`max_size`): past it, the least recently used are evicted.
    public var byteBudget: Int
    /// Stored responses (each variant counts).
    public var entries: Int
    /// Requests answered from the cache (fresh, or revalidated with a 304).
    public var hits: Int
    /// Cacheable requests that went upstream because nothing usable was stored.
    public var misses: Int
    /// Responses written to the cache.
    public var stores: Int
    /// Entries removed to make room (not purges, not expiries).
    public var evictions: Int
    /// Requests that waited for another request's fetch of the same key instead of going upstream themselves.
    public var collapsed: Int
    /// `hits / (hits + misses)`, 0 before any lookup: carried so `--json` readers and people see the same figure.
    public var hitRatio: Double

    public init(
        bytesUsed: Int, byteBudget: Int, entries: Int, hits: Int, misses: Int, stores: Int, evictions: Int,
        collapsed: Int
    ) {
        self.bytesUsed = bytesUsed
        self.byteBudget = byteBudget
        self.entries = entries
        self.hits = hits
        self.misses = misses
        self.stores = stores
        self.evictions = evictions
        self.collapsed = collapsed
        let lookups = hits + misses
        self.hitRatio = lookups == 0 ? 0 : Double(hits) / Double(lookups)
    }
}

/// The answer to `jesterctl cache purge`.
public struct CachePurgeResult: Codable, Sendable, Equatable {
    /// Entries removed (0: nothing was stored under that key or prefix, which is not an error).
    public var removed: Int

    public init(removed: Int) {
        self.removed = removed
    }
}

/// `jesterctl cache status`'s human form: kept beside the report so it is tested without a master.
public enum CacheStatusText {
    /// One figure per line, sizes in binary units, the ratio as a percentage with one decimal.
    public static func lines(_ report: CacheStatusReport) -> [String] {
        let used = report.byteBudget > 0 ? " (\(percent(Double(report.bytesUsed) / Double(report.byteBudget))))" : ""
        return [
            "size        \(bytes(report.bytesUsed)) of \(bytes(report.byteBudget))\(used)",
            "entries     \(report.entries)",
            "hits        \(report.hits)",
            "misses      \(report.misses)",
            "hit ratio   \(percent(report.hitRatio))",
            "stores      \(report.stores)",
            "evictions   \(report.evictions)",
            "collapsed   \(report.collapsed)",
        ]
    }

    /// `1.5 GiB`, `12.0 MiB`, `512 KiB`, `300 B`: binary units, as `max_size` is written.
    public static func bytes(_ count: Int) -> String {
        let units = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        for (size, unit) in units where count >= size {
            return oneDecimal(Double(count) / Double(size)) + " " + unit
        }
        return "\(count) B"
    }

    /// `0.873` → `87.3%`.
    public static func percent(_ ratio: Double) -> String {
        oneDecimal(ratio * 100) + "%"
    }

    /// One decimal, rounded, without a formatter (this module stays free of Foundation).
    static func oneDecimal(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(abs(tenths % 10))"
    }
}
