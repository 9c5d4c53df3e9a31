// SPDX-License-Identifier: Apache-2.0
import Glibc
import JesterCache
import JesterSystem

/// Writes one fetched response into the cache while it streams to the client: the header, then each body piece
/// as it passes, into `<name>.tmp`; renamed into place and published in the index only once the body is complete
/// (Docs/cache-design.md, "Bodies"). A response cut short, larger than allowed, or whose file cannot be written is
/// abandoned: its temporary file goes and its key's fetching flag is given back, so nothing partial is ever served.
public final class CacheBodyWriter {
    /// Where a writer is.
    public enum State: Equatable {
        /// Taking body pieces.
        case writing
        /// Published: a hit serves it from now on.
        case published
        /// Given up (see the type's comment); the flag is back.
        case abandoned
    }

    let store: CacheStore
    /// The key's flag; renewed as the body comes, so a long transfer keeps it (`CacheIndex.renew`).
    private(set) var ticket: CacheIndex.Ticket
    let stored: StoredResponse
    let path: String
    let generation: UInt64
    let headerSize: Int64
    let maxBodySize: Int64?
    private var fd: Int32
    /// Body bytes written so far.
    public private(set) var bodySize: Int64 = 0
    public private(set) var state = State.writing

    init?(
        store: CacheStore, ticket: CacheIndex.Ticket, stored: StoredResponse, path: String, generation: UInt64,
        header: [UInt8], maxBodySize: Int64?
    ) {
        self.store = store
        self.ticket = ticket
        self.stored = stored
        self.path = path
        self.generation = generation
        self.headerSize = Int64(header.count)
        self.maxBodySize = maxBodySize
        store.ensureSubdirectory(of: path)
        fd = Glibc.open(path + ".tmp", O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, CacheStore.fileMode)
        guard fd >= 0 else {
            store.index.release(ticket)
            return nil
        }
        // Readable by the master's group whatever the umask (the packaged unit's is 0077).
        fchmod(fd, CacheStore.fileMode)
        guard header.withUnsafeBytes({ Self.writeAll(fd, $0) }) else {
            state = .abandoned
            close(fd)
            unlink(path + ".tmp")
            store.index.release(ticket)
            return nil
        }
    }

    /// Appends a body piece; false (and the writer abandoned) when the body outgrows the limit or the disk fails.
    @discardableResult
    public func append(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard state == .writing else { return false }
        bodySize += Int64(bytes.count)
        if let maxBodySize, bodySize > maxBodySize {
            // Too large to keep: the next requests go upstream in parallel for a while rather than queue.
            abandon(uncacheable: true)
            return false
        }
        guard Self.writeAll(fd, bytes) else {
            abandon()
            return false
        }
        renewIfDue()
        return true
    }

    /// Past half its lock timeout, the flag's deadline moves a whole lock timeout on from now: others keep
    /// waiting for a fetch that makes progress rather than fetching the same body in parallel.
    private func renewIfDue() {
        let now = CacheIndex.monotonicNanoseconds()
        let timeout = store.coalescing.lockTimeout
        guard now > ticket.deadline - timeout / 2 else { return }
        if let renewed = store.index.renew(ticket, until: now + timeout, monotonicNow: now) { ticket = renewed }
    }

    /// The body is complete: the file goes into place and the entry is published (or, when the flag was lost
    /// meanwhile, the file is deleted). `declaredLength`: the response's `Content-Length`, which the body must
    /// match. True when published.
    @discardableResult
    public func finish(declaredLength: Int64?, now: Int64) -> Bool {
        guard state == .writing else { return false }
        if let declaredLength, declaredLength != bodySize {
            abandon()
            return false
        }
        close(fd)
        fd = -1
        guard rename(path + ".tmp", path) == 0 else {
            unlink(path + ".tmp")
            state = .abandoned
            store.index.release(ticket)
            return false
        }
        let entry = store.entry(
            for: stored, bodySize: bodySize, headerSize: headerSize, generation: generation, now: now)
        let published = store.publish(entry, of: stored, with: ticket, now: now)
        if !published { unlink(path) }
        state = published ? .published : .abandoned
        if published { store.makeRoom(now: now) }
        return published
    }

    /// Gives up: the temporary file goes, the key's flag is given back (`uncacheable`: others go upstream in
    /// parallel for a while rather than wait for a response that will not be shared).
    public func abandon(uncacheable: Bool = false) {
        guard state == .writing else { return }
        state = .abandoned
        close(fd)
        fd = -1
        unlink(path + ".tmp")
        let hold = uncacheable ? CacheIndex.monotonicNanoseconds() + store.coalescing.uncacheableHold : nil
        store.index.release(ticket, uncacheableUntil: hold)
    }

    deinit {
        // A writer dropped without an end (the exchange went away) must not keep its key's flag.
        abandon()
    }

    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += written
        }
        return true
    }
}

extension CacheStore {
    /// Publishes `entry` (of `stored`) for the key `stored` belongs under, with the flag `ticket` holds. The ticket
    /// is for the key the lookup used; when the response's `Vary` points elsewhere (the first store of a varying
    /// response, whose ticket is its primary key's), the primary gets a `Vary` marker and the variant is claimed
    /// and published in turn. False when nothing was published.
    func publish(_ entry: CacheIndexEntry, of stored: StoredResponse, with ticket: CacheIndex.Ticket, now: Int64)
        -> Bool
    {
        let target = Self.indexKey(stored.indexHash(seed: index.hashSeed))
        let monotonicNow = CacheIndex.monotonicNanoseconds()
        if target == ticket.key {
            return published(index.publish(ticket, .entry(entry), monotonicNow: monotonicNow))
        }
        let primary = Self.indexKey(stored.key.hash(seed: index.hashSeed))
        let names = stored.varyNames.joined(separator: ",")
        if ticket.key == primary, !names.isEmpty {
            let namesHash = varyNamesHash(names)
            guard index.registerVaryNames(names, hash: namesHash),
                published(
                    index.publish(ticket, .varyMarker(namesHash: namesHash, now: now), monotonicNow: monotonicNow))
            else {
                index.release(ticket)
                return false
            }
        } else {
            index.release(ticket)
        }
        // The variant's (or, for a response that stopped varying, the primary's) own flag.
        let (claim, dropped) = index.claim(
            target, observed: index.lookup(target), owner: owner, deadline: monotonicNow + coalescing.lockTimeout,
            now: now, monotonicNow: monotonicNow)
        if let dropped { discard([dropped]) }
        guard case .claimed(let second) = claim else { return false }
        return published(index.publish(second, .entry(entry), monotonicNow: CacheIndex.monotonicNanoseconds()))
    }

    private func published(_ publication: CacheIndex.Publication) -> Bool {
        switch publication {
        case .published(let replaced):
            if let replaced { discard([replaced]) }
            return true
        case .lost(let replaced):
            if let replaced { discard([replaced]) }
            return false
        }
    }
}
