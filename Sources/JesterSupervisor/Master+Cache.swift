// SPDX-License-Identifier: Apache-2.0
import Glibc
import JesterCache
import JesterCacheStore
import JesterConfig
import JesterControl
import JesterSystem
import Logging

/// The shared HTTP cache from the master's side (Docs/cache-design.md): it makes the index when a route first
/// caches and keeps it for every later generation and across binary upgrades, owns the directory of bodies,
/// clears the fetching flags of workers it reaps, rebuilds the index from the files after a restart, and answers
/// `jesterctl cache`.
extension Master {
    /// Makes the store when `configuration` has a route with `cache` and none exists yet: the directory (created
    /// and given to the workers' user), then the index, filled from the files a previous run left. Throws (the
    /// configuration is refused) when the directory cannot be made.
    func prepareCache(for configuration: Configuration) throws {
        guard cacheStore == nil, configuration.routes.contains(where: { $0.cache != nil }) else { return }
        let settings = configuration.cache ?? CacheStoreSettings()
        try Self.makeCacheDirectory(settings.path, owner: identity)
        let index: CacheIndex
        do {
            index = try CacheIndex.create(slots: settings.entries, byteBudget: settings.maxSize)
        } catch {
            logger.error("no shared HTTP cache: the index cannot be made; routes with cache forward every request",
                metadata: ["error": "\(error)"])
            return
        }
        let store = CacheStore(
            index: index, directory: settings.path, lockTimeout: settings.lockTimeout,
            uncacheableHold: settings.uncacheableHold)
        cacheStore = store
        let restored = store.rebuild(now: Int64(time(nil)))
        logger.info("shared HTTP cache ready", metadata: [
            "path": "\(settings.path)", "max_size": .stringConvertible(settings.maxSize),
            "entries_restored": .stringConvertible(restored),
        ])
    }

    /// The store a new binary takes over from the old one's index (a binary upgrade), or nil to make a new one.
    func adoptCacheIndex(fd: Int32?, configuration: Configuration) {
        guard let fd else { return }
        do {
            let settings = configuration.cache ?? CacheStoreSettings()
            let store = CacheStore(
                index: try CacheIndex.attach(fd: fd), directory: settings.path, lockTimeout: settings.lockTimeout,
                uncacheableHold: settings.uncacheableHold)
            cacheStore = store
            // The old master added these counts to the metrics it handed over: only what grows from here is new.
            let status = store.status()
            cacheCountsExported = [status.hits, status.misses, status.stores, status.evictions, status.collapsed]
        } catch {
            logger.error("upgrade: cannot map the cache index; making a new one from the files",
                metadata: ["error": "\(error)"])
        }
    }

    /// A reaped worker's fetches will never end: their keys are freed for the next request.
    func cacheWorkerExited(_ pid: Int32) {
        cacheStore?.index.clearFlags(ownedBy: pid)
    }

    /// `jesterctl cache status` and `jesterctl cache purge`.
    func answerCacheRequest(_ request: ControlMessage, replyTo target: (any ControlReplyTarget)?) {
        guard let store = cacheStore else {
            reply(.failure(message: "the HTTP cache is not enabled: no route caches", reason: .notFound), to: target)
            return
        }
        switch request {
        case .cachePurge(let purge):
            let removed: Int
            switch purge {
            case .key(let uri): removed = store.purge { $0.uri == uri }
            case .prefix(let prefix): removed = store.purge { $0.uri.hasPrefix(prefix) }
            }
            logger.notice("cache purged", metadata: ["target": "\(purge)", "removed": .stringConvertible(removed)])
            reply(.cachePurged(CachePurgeResult(removed: removed)), to: target)
        default:
            let status = store.status()
            reply(
                .cacheReport(
                    CacheStatusReport(
                        bytesUsed: Int(status.bytesInUse), byteBudget: Int(status.byteBudget), entries: status.entries,
                        hits: status.hits, misses: status.misses, stores: status.stores, evictions: status.evictions,
                        collapsed: status.collapsed)), to: target)
        }
    }

    /// Refuses a cache path the workers' user could not reach (a parent without search permission for it, such as
    /// a 0700 directory of root's): every store would fail, so the configuration is refused, saying where.
    static func checkSearchable(_ path: String, by owner: Identity) throws {
        var prefix = ""
        for component in path.split(separator: "/").dropLast() {
            prefix += "/" + component
            var info = stat()
            guard stat(prefix, &info) == 0 else { continue }
            let mode = info.st_mode
            let searchable =
                mode & S_IXOTH != 0 || (info.st_uid == owner.userID && mode & S_IXUSR != 0)
                || (info.st_gid == owner.groupID && mode & S_IXGRP != 0)
            if !searchable {
                throw SystemError(
                    "cache path", "\(path): \(prefix) is not searchable by the workers' user \(owner.userName)",
                    errno: EACCES)
            }
        }
    }

    /// Creates `path` (and its parents) if missing; the workers' user must own it, since workers write the bodies.
    static func makeCacheDirectory(_ path: String, owner: Identity?) throws {
        var prefix = ""
        for component in path.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, 0o750) != 0, errno != EEXIST {
                throw SystemError("mkdir", prefix)
            }
        }
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw SystemError("stat", "\(path) (the cache path must be a directory)", errno: ENOTDIR)
        }
        if let owner, info.st_uid != owner.userID {
            guard chown(path, owner.userID, owner.groupID) == 0 else { throw SystemError("chown", path) }
        }
        if let owner { try checkSearchable(path, by: owner) }
        // The two-hex-digit subdirectories, made here with the same owner so workers never need to.
        for high in 0..<16 {
            for low in 0..<16 {
                let sub = path + "/" + String(high, radix: 16) + String(low, radix: 16)
                if mkdir(sub, 0o750) == 0 || errno == EEXIST, let owner {
                    _ = chown(sub, owner.userID, owner.groupID)
                }
            }
        }
    }
}
