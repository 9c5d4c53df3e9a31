// SPDX-License-Identifier: Apache-2.0
import Glibc
import JesterCache
import JesterSystem

/// What the master does with the store besides serving: purges, the rebuild after a restart, the status.
extension CacheStore {
    /// The numbers `jesterctl cache status` shows.
    public struct Status: Sendable, Equatable {
        public var bytesInUse: Int64
        public var byteBudget: Int64
        public var entries: Int
        public var hits: Int
        public var misses: Int
        public var stores: Int
        public var evictions: Int
        public var collapsed: Int

        /// Hits over lookups, 0 before the first.
        public var hitRatio: Double {
            hits + misses == 0 ? 0 : Double(hits) / Double(hits + misses)
        }
    }

    /// The store's status now.
    public func status() -> Status {
        Status(
            bytesInUse: index.bytesInUse, byteBudget: index.byteBudget, entries: index.entryCount(),
            hits: index.count(.hits), misses: index.count(.misses), stores: index.count(.stores),
            evictions: index.count(.evictions), collapsed: index.count(.collapsed))
    }

    /// One body file found by a walk of the directory.
    public struct FileVisit {
        /// Its path.
        public var path: String
        /// The key its name gives.
        public var key: CacheIndex.Key
        /// Its generation.
        public var generation: UInt64
        /// Its header (nil: unreadable or of another format).
        public var stored: StoredResponse?
        /// Bytes of its header.
        public var headerSize: Int64
        /// Bytes of its body.
        public var bodySize: Int64
    }

    /// Walks every body file (`<directory>/<xx>/<32 hex>-<generation>`); temporary files are left alone.
    public func walkFiles(_ visit: (FileVisit) -> Void) {
        forEachEntryOfBodyDirectories { path, name in
            guard let (key, generation) = Self.parseFileName(name) else { return }
            var found = FileVisit(path: path, key: key, generation: generation, headerSize: 0, bodySize: 0)
            let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
            if fd >= 0 {
                var info = stat()
                if fstat(fd, &info) == 0, let (stored, length) = Self.readHeader(fd) {
                    found.stored = stored
                    found.headerSize = Int64(length)
                    found.bodySize = Int64(info.st_size) - Int64(length)
                }
                close(fd)
            }
            visit(found)
        }
    }

    /// Every name in the two-hex-digit subdirectories, with its path.
    private func forEachEntryOfBodyDirectories(_ body: (_ path: String, _ name: String) -> Void) {
        guard let top = opendir(directory) else { return }
        defer { closedir(top) }
        while let sub = readdir(top) {
            let subName = Self.name(of: sub)
            guard subName.utf8.count == 2, subName.utf8.allSatisfy(Self.isHex) else { continue }
            let subPath = "\(directory)/\(subName)"
            guard let files = opendir(subPath) else { continue }
            while let file = readdir(files) {
                let name = Self.name(of: file)
                body("\(subPath)/\(name)", name)
            }
            closedir(files)
        }
    }

    /// Removes every stored response whose key `matches` (its entry from the index, its file from the disk);
    /// returns how many went. `jesterctl cache purge URL` matches a key's URI, `--prefix` its beginning.
    public func purge(where matches: (CacheKey) -> Bool) -> Int {
        var removed = 0
        walkFiles { file in
            guard let stored = file.stored, matches(stored.key) else { return }
            // The index may name a newer file of the same key; remove the entry only if it is this one.
            if let seen = index.lookup(file.key), case .ready(let entry) = seen.state,
                entry.bodyGeneration == file.generation
            {
                index.remove(file.key)
            }
            unlink(file.path)
            removed += 1
        }
        return removed
    }

    /// Fills a new index from the files a previous index described (the master after a restart, when the shared
    /// memory was gone): every readable file is published again; unreadable ones and left-over temporary files
    /// are deleted. Returns how many entries came back.
    public func rebuild(now: Int64) -> Int {
        var restored = 0
        deleteTemporaryFiles()
        // Collected first: a file named under another seed is renamed below, and a walk must not meet it again.
        var files: [FileVisit] = []
        walkFiles { files.append($0) }
        // New files must not take the generation of a kept one of the same key.
        index.raiseBodyGeneration(past: files.map(\.generation).max() ?? 0)
        for file in files {
            guard let stored = file.stored, file.bodySize >= 0 else {
                unlink(file.path)
                continue
            }
            let key = Self.indexKey(stored.indexHash(seed: index.hashSeed))
            var generation = file.generation
            var renamed = file.path
            if key != file.key {
                // Named under another seed (the seed file was lost): renamed under this index's.
                generation = index.nextBodyGeneration()
                renamed = path(of: key, generation: generation)
                ensureSubdirectory(of: renamed)
                guard rename(file.path, renamed) == 0 else {
                    unlink(file.path)
                    continue
                }
            }
            let monotonicNow = CacheIndex.monotonicNanoseconds()
            let (claim, dropped) = index.claim(
                key, observed: index.lookup(key), owner: owner,
                deadline: monotonicNow + coalescing.lockTimeout, now: now, monotonicNow: monotonicNow)
            if let dropped { discard([dropped]) }
            guard case .claimed(let ticket) = claim else {
                unlink(renamed)
                continue
            }
            let entry = self.entry(
                for: stored, bodySize: file.bodySize, headerSize: file.headerSize, generation: generation,
                now: stored.responseTime)
            // A variant's primary key gets its marker back too.
            if !stored.varyValues.isEmpty {
                let names = stored.varyNames.joined(separator: ",")
                let namesHash = varyNamesHash(names)
                let primary = Self.indexKey(stored.key.hash(seed: index.hashSeed))
                if index.registerVaryNames(names, hash: namesHash), index.lookup(primary) == nil {
                    let (markerClaim, _) = index.claim(
                        primary, observed: nil, owner: owner, deadline: monotonicNow + coalescing.lockTimeout,
                        now: now, monotonicNow: monotonicNow)
                    if case .claimed(let markerTicket) = markerClaim {
                        // Published as of the beginning of time: every variant restored is newer than its marker.
                        _ = index.publish(
                            markerTicket, .varyMarker(namesHash: namesHash, now: 0), monotonicNow: monotonicNow)
                    }
                }
            }
            if case .published = index.publish(ticket, .entry(entry), monotonicNow: CacheIndex.monotonicNanoseconds()) {
                restored += 1
            } else {
                unlink(renamed)
            }
        }
        makeRoom(now: now)
        return restored
    }

    /// Deletes `*.tmp` files: writes a previous process never finished.
    private func deleteTemporaryFiles() {
        forEachEntryOfBodyDirectories { path, name in
            if name.hasSuffix(".tmp") { unlink(path) }
        }
    }

    /// The key and generation of a body file's name; nil for anything else.
    static func parseFileName(_ name: String) -> (CacheIndex.Key, UInt64)? {
        let parts = name.split(separator: "-")
        guard parts.count == 2, parts[0].utf8.count == 32, parts[0].utf8.allSatisfy(isHex),
            let generation = UInt64(parts[1])
        else { return nil }
        var bytes: [UInt8] = []
        var digits = parts[0].utf8.makeIterator()
        while let high = digits.next(), let low = digits.next() {
            bytes.append(hexValue(high) << 4 | hexValue(low))
        }
        let low = (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[$1]) << (8 * UInt64($1)) }
        let high = (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[8 + $1]) << (8 * UInt64($1)) }
        return (CacheIndex.Key(low: low, high: high), generation)
    }

    private static func isHex(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
            || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
    }

    private static func hexValue(_ byte: UInt8) -> UInt8 {
        byte <= UInt8(ascii: "9") ? byte - UInt8(ascii: "0") : byte - UInt8(ascii: "a") + 10
    }

    private static func name(of entry: UnsafeMutablePointer<dirent>) -> String {
        withUnsafePointer(to: entry.pointee.d_name) {
            $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
        }
    }
}
