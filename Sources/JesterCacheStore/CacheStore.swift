// SPDX-License-Identifier: Apache-2.0
import Glibc
import JesterCache
import JesterSystem

/// The shared HTTP cache of one instance as a process sees it: the index in shared memory (`CacheIndex`) and the
/// body files under `directory` (Docs/cache-design.md). Workers look up, store and invalidate through it; the
/// master purges, rebuilds after a restart and reports through it.
///
/// It carries out what JesterCache decided, and decides nothing itself beyond the file names. Calls are
/// synchronous file operations (open, pread, write, rename, unlink), like nginx's cache without `aio`: bodies
/// are read in pieces as the client takes them and the page cache serves hot entries.
public final class CacheStore: @unchecked Sendable {
    /// The index every process of the instance maps.
    public let index: CacheIndex
    /// The directory of body files.
    public let directory: String
    /// The coalescing rules (the configured lock timeout and uncacheable hold).
    public let coalescing: FetchCoalescing
    /// This process, the owner its fetching flags name (the master clears them by pid when it reaps it).
    public let owner: Int32

    public init(index: CacheIndex, directory: String, coalescing: FetchCoalescing, owner: Int32 = getpid()) {
        self.index = index
        self.directory = directory
        self.coalescing = coalescing
        self.owner = owner
    }

    /// A store whose coalescing waits at most `lockTimeout` and holds uncacheable keys for `uncacheableHold`.
    public convenience init(index: CacheIndex, directory: String, lockTimeout: Duration, uncacheableHold: Duration) {
        func nanoseconds(_ duration: Duration) -> Int64 {
            duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
        }
        self.init(
            index: index, directory: directory,
            coalescing: FetchCoalescing(
                lockTimeout: nanoseconds(lockTimeout), uncacheableHold: nanoseconds(uncacheableHold)))
    }

    // MARK: Keys and files

    /// The index's key for a hash.
    public static func indexKey(_ hash: CacheKeyHash) -> CacheIndex.Key {
        CacheIndex.Key(low: hash.low, high: hash.high)
    }

    /// The body file of `key` at `generation`: `<directory>/<first two hex digits>/<32 hex digits>-<generation>`.
    public func path(of key: CacheIndex.Key, generation: UInt64) -> String {
        let name = CacheKeyHash(low: key.low, high: key.high).description
        return "\(directory)/\(name.prefix(2))/\(name)-\(generation)"
    }

    /// The id of a sorted `Vary` name list, which a marker stores and the names directory files it under.
    public func varyNamesHash(_ names: String) -> UInt64 {
        var hasher = CacheKeyHasher(seed: index.hashSeed)
        hasher.combine("vary-names")
        hasher.combine(names)
        return hasher.finalize().low
    }

    // MARK: Lookup

    /// What a lookup found for a request: the observation of the slot its fetching flag lives in (the variant's
    /// when the primary entry is a `Vary` marker), and the stored response and its open body, if any.
    public struct Found {
        /// The key whose flag coalesces this request's fetch.
        public var flagKey: CacheIndex.Key
        /// That key's slot as read (nil: in no slot).
        public var observation: CacheIndex.Observation?
        /// The primary key had an entry or marker (tells `vary-miss` from `uri-miss`).
        public var primaryFound: Bool
        /// The stored response, read from its file.
        public var stored: StoredResponse?
        /// Its body, open.
        public var body: CacheBodyFile?
        /// The entry's words, for the body file's name.
        public var entry: CacheIndexEntry?
    }

    /// Opens a slot's entry: its stored response and body (`open(_:entry:)`, or a worker's memo of recent ones).
    public typealias EntryOpener = (CacheIndex.Key, CacheIndexEntry) -> (StoredResponse, CacheBodyFile)?

    /// Looks `request` up: the primary key, and through a `Vary` marker the variant its values select. A slot
    /// whose file is gone, damaged or of another key is a miss. `opener` reads the entry (default: its file).
    public func find(request: CacheRequest, plan: CacheRequestPlan, opener: EntryOpener? = nil) -> Found {
        let primary = Self.indexKey(plan.key.hash(seed: index.hashSeed))
        guard let seen = index.lookup(primary) else {
            return Found(flagKey: primary, observation: nil, primaryFound: false)
        }
        var flagKey = primary
        var observation: CacheIndex.Observation? = seen
        /// Variants stored before their marker was (re)published were invalidated with the marker.
        var markedAt = Int64.min
        if case .varyMarker(let namesHash, let publishedAt) = seen.state {
            markedAt = publishedAt
            guard let text = index.varyNames(namesHash) else {
                return Found(flagKey: primary, observation: seen, primaryFound: true)
            }
            let names = text.split(separator: ",").map(String.init)
            let values = VaryValue.values(of: names, in: request.fields)
            flagKey = Self.indexKey(plan.key.variantHash(values: values, seed: index.hashSeed))
            observation = index.lookup(flagKey)
        }
        var found = Found(flagKey: flagKey, observation: observation, primaryFound: true)
        if let observation, case .ready(let entry) = observation.state, entry.storedAt >= markedAt,
            let (stored, body) = (opener ?? open)(flagKey, entry)
        {
            found.stored = stored
            found.body = body
            found.entry = entry
        }
        return found
    }

    /// The stored response and open body of `key`'s entry; nil when its file is missing or unreadable.
    public func open(_ key: CacheIndex.Key, entry: CacheIndexEntry) -> (StoredResponse, CacheBodyFile)? {
        let fd = Glibc.open(path(of: key, generation: entry.bodyGeneration), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        guard let (stored, headerLength) = Self.readHeader(fd), Int64(headerLength) == entry.headerSize else {
            close(fd)
            return nil
        }
        return (stored, CacheBodyFile(fd: fd, bodyStart: Int64(headerLength), bodySize: entry.bodySize))
    }

    /// Reads the header at the start of an open body file.
    static func readHeader(_ fd: Int32) -> (StoredResponse, Int)? {
        var bytes = [UInt8](repeating: 0, count: 4096)
        var count = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard count >= 8, let length = CacheFileHeader.length(prefix: bytes[0..<count]) else { return nil }
        if length > count {
            bytes = [UInt8](repeating: 0, count: length)
            count = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
            guard count == length else { return nil }
        }
        guard let decoded = try? CacheFileHeader.decode(Array(bytes[0..<count])) else { return nil }
        return (decoded.stored, decoded.length)
    }

    // MARK: Storing

    /// A writer for the response `stored` under the flag `ticket` holds; nil when the file cannot be made (the
    /// response is then forwarded without being stored).
    public func writer(for stored: StoredResponse, ticket: CacheIndex.Ticket, maxBodySize: Int64?) -> CacheBodyWriter? {
        let generation = index.nextBodyGeneration()
        // Named by the key it is published under: the variant's for a varying response, whose ticket may be the
        // primary key's (`publish(_:of:with:now:)`).
        let finalPath = path(of: Self.indexKey(stored.indexHash(seed: index.hashSeed)), generation: generation)
        let header = CacheFileHeader.encode(stored)
        return CacheBodyWriter(
            store: self, ticket: ticket, stored: stored, path: finalPath, generation: generation, header: header,
            maxBodySize: maxBodySize)
    }

    /// The index words of `stored`, stored at `now` with a body of `bodySize` bytes.
    func entry(for stored: StoredResponse, bodySize: Int64, headerSize: Int64, generation: UInt64, now: Int64)
        -> CacheIndexEntry
    {
        let freshness = stored.freshness
        var options: CacheIndexEntry.Options = []
        if freshness.requiresValidation { options.insert(.requiresValidation) }
        if freshness.forbidsStale { options.insert(.forbidsStale) }
        if freshness.immutable { options.insert(.immutable) }
        if stored.entityTag != nil || stored.lastModified != nil { options.insert(.hasValidator) }
        let names = stored.varyNames.joined(separator: ",")
        return CacheIndexEntry(
            status: Int32(stored.status), options: options, requestTime: stored.requestTime,
            responseTime: stored.responseTime, storedAt: now, lifetime: freshness.lifetime,
            correctedInitialAge: freshness.correctedInitialAge,
            staleWhileRevalidate: Int32(clamping: freshness.staleWhileRevalidate),
            staleIfError: Int32(clamping: freshness.staleIfError), bodySize: bodySize, headerSize: headerSize,
            bodyGeneration: generation, varyHash: names.isEmpty ? 0 : varyNamesHash(names))
    }

    /// Makes room for what was just published and deletes the files of what left the index.
    public func makeRoom(now: Int64) {
        discard(index.makeRoom(now: now, monotonicNow: CacheIndex.monotonicNanoseconds()))
    }

    /// Deletes the body files of entries taken out of the index (open descriptors still read them whole).
    public func discard(_ dropped: [CacheIndex.Dropped]) {
        for entry in dropped { unlink(path(of: entry.key, generation: entry.bodyGeneration)) }
    }

    /// Removes `hash`'s entry and its file (an invalidation, or an entry the origin replaced).
    public func remove(_ hash: CacheKeyHash) {
        if let dropped = index.remove(Self.indexKey(hash)) { discard([dropped]) }
    }

    /// Removes every stored variant of `key` (RFC 9111 §4.4: an unsafe method's invalidation): the primary
    /// entry, or its `Vary` marker. Variants are not looked for (only the files name them, and a walk of the
    /// files has no place on a worker's event loop): a marker published again later is newer than every variant
    /// stored before, and `find` serves no variant older than its marker; they age out of the index.
    public func invalidate(_ key: CacheKey) {
        let primary = Self.indexKey(key.hash(seed: index.hashSeed))
        if let dropped = index.remove(primary) { discard([dropped]) }
    }

    /// Makes a fresh body file's directory (`<directory>/<xx>`) if it is missing.
    /// Makes a body file's directory (`<directory>/<xx>`, by the worker that first writes there) if it is
    /// missing: group-writable and setgid, so everything in it keeps the cache directory's group (root's, when the
    /// master runs as root) and the master reads, purges and rebuilds what workers write without a capability
    /// that would let it read any file (Docs/cache-design.md, "Files and permissions"). The umask would clip the
    /// mode, so it is set again.
    func ensureSubdirectory(of path: String) {
        guard let slash = path.lastIndex(of: "/") else { return }
        let directory = String(path[..<slash])
        if mkdir(directory, Self.directoryMode) == 0 { chmod(directory, Self.directoryMode) }
    }

    /// rwxrws---: the owner (the workers' user) and the group (the master's) read and write; setgid.
    public static let directoryMode: mode_t = 0o2770
    /// rw-r-----: the workers write, the master's group reads.
    public static let fileMode: mode_t = 0o640
}

/// An open body file: the stored body starts after its header.
public final class CacheBodyFile: @unchecked Sendable {
    public let fd: Int32
    /// Where the body starts in the file.
    public let bodyStart: Int64
    /// Bytes of body.
    public let bodySize: Int64

    public init(fd: Int32, bodyStart: Int64, bodySize: Int64) {
        self.fd = fd
        self.bodyStart = bodyStart
        self.bodySize = bodySize
    }

    /// Reads up to `buffer.count` body bytes from `offset` (of the body); the count read, 0 at the end, -1 on an
    /// error.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) -> Int {
        let wanted = Int(min(Int64(buffer.count), max(0, bodySize - offset)))
        guard wanted > 0 else { return 0 }
        return pread(fd, buffer.baseAddress, wanted, off_t(bodyStart + offset))
    }

    deinit { close(fd) }
}
