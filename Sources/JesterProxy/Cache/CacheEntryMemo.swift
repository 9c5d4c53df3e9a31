// SPDX-License-Identifier: Apache-2.0
import JesterCache
import JesterCacheStore
import JesterSystem
import NIOCore

/// The entries of the shared cache this worker served lately, kept open and decoded: a hit on one costs an index
/// lookup, not an `open`, a `pread` and a header decode; a small body is kept in memory, and the head's unchanging
/// part (status line and stored fields) is kept rendered, so only `Age`, `Cache-Status` and the length are written
/// per answer.
///
/// Keyed by the index key and checked against the slot's body generation on every use, so an entry refreshed,
/// replaced or purged on any worker is never served from here: the index decides what exists, this only saves
/// reading it again. One memo entry per key (a new generation replaces the old), at most `capacity` of them (each
/// holds a descriptor, of a file possibly unlinked since), small bodies within `memoryBudget`. Loop-confined.
final class CacheEntryMemo: @unchecked Sendable {
    /// One remembered entry.
    struct Entry {
        let generation: UInt64
        let stored: StoredResponse
        let body: CacheBodyFile
        /// The whole body, when it is at most `inMemoryBodyLimit`.
        let bodyBytes: ByteBuffer?
        /// "HTTP/1.1 status reason" and the stored fields (without framing), rendered.
        let headPrefix: ByteBuffer
    }

    static let capacity = 256
    static let inMemoryBodyLimit: Int64 = 16 * 1024
    static let memoryBudget = 8 << 20

    let store: CacheStore
    private let allocator: ByteBufferAllocator
    private var entries: [CacheIndex.Key: Entry] = [:]
    private var memoryBytes = 0
    /// Opens since the last sweep (`sweepInterval`).
    private var opensSinceSweep = 0
    /// Every so many opens, entries the index no longer holds at their generation (evicted, purged, refreshed
    /// on another worker) are let go, so their files' space is freed on a quiet worker too.
    static let sweepInterval = 64

    init(store: CacheStore, allocator: ByteBufferAllocator) {
        self.store = store
        self.allocator = allocator
    }

    /// The entry of `key` at the slot's `entry` (its generation), from memory or opened and remembered.
    func open(_ key: CacheIndex.Key, _ slot: CacheIndexEntry) -> (StoredResponse, CacheBodyFile)? {
        if let known = entries[key], known.generation == slot.bodyGeneration { return (known.stored, known.body) }
        opensSinceSweep += 1
        if opensSinceSweep >= Self.sweepInterval { sweep() }
        guard let (stored, body) = store.open(key, entry: slot) else { return nil }
        remember(key, Entry(
            generation: slot.bodyGeneration, stored: stored, body: body, bodyBytes: readSmallBody(body),
            headPrefix: Self.headPrefix(stored, allocator: allocator)))
        return (stored, body)
    }

    /// What is remembered of `key` at `generation`.
    func entry(_ key: CacheIndex.Key, generation: UInt64) -> Entry? {
        guard let known = entries[key], known.generation == generation else { return nil }
        return known
    }

    private func sweep() {
        opensSinceSweep = 0
        for (key, entry) in entries {
            if let seen = store.index.lookup(key), case .ready(let slot) = seen.state,
                slot.bodyGeneration == entry.generation
            {
                continue
            }
            memoryBytes -= entries.removeValue(forKey: key)?.bodyBytes?.readableBytes ?? 0
        }
    }

    private func remember(_ key: CacheIndex.Key, _ entry: Entry) {
        if let old = entries.removeValue(forKey: key) { memoryBytes -= old.bodyBytes?.readableBytes ?? 0 }
        while entries.count >= Self.capacity || memoryBytes + (entry.bodyBytes?.readableBytes ?? 0) > Self.memoryBudget,
            let victim = entries.keys.randomElement()
        {
            memoryBytes -= entries.removeValue(forKey: victim)?.bodyBytes?.readableBytes ?? 0
        }
        entries[key] = entry
        memoryBytes += entry.bodyBytes?.readableBytes ?? 0
    }

    private func readSmallBody(_ body: CacheBodyFile) -> ByteBuffer? {
        guard body.bodySize <= Self.inMemoryBodyLimit else { return nil }
        let size = Int(body.bodySize)
        var buffer = allocator.buffer(capacity: size)
        let read = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { raw in
            max(0, body.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<size]), at: 0))
        }
        return read == size ? buffer : nil
    }

    /// The status line and stored fields of `stored`, without framing fields (each answer adds its own length).
    static func headPrefix(_ stored: StoredResponse, allocator: ByteBufferAllocator) -> ByteBuffer {
        var out = allocator.buffer(capacity: 256)
        out.writeString("HTTP/1.1 \(stored.status) \(HTTPStatus.reason(stored.status))\r\n")
        for field in stored.fields.fields {
            let name = field.name.lowercased()
            if name == "content-length" || name == "transfer-encoding" { continue }
            out.writeString(field.name)
            out.writeStaticString(": ")
            out.writeString(field.value)
            out.writeStaticString("\r\n")
        }
        return out
    }
}
