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
            index = try CacheIndex.create(
                slots: settings.entries, byteBudget: settings.maxSize, seed: Self.cacheSeed(in: settings.path))
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

    /// The hash seed the files under `directory` are named with (`seed`, 16 bytes, the master's only), made and
    /// kept on first use: a restart then finds every file under its name. nil (a new seed, the files renamed by
    /// the rebuild) when it cannot be read or written.
    static func cacheSeed(in directory: String) -> (UInt64, UInt64)? {
        let path = directory + "/seed"
        var bytes = [UInt8](repeating: 0, count: 16)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            defer { close(fd) }
            if bytes.withUnsafeMutableBytes({ read(fd, $0.baseAddress, 16) }) == 16 {
                return bytes.withUnsafeBytes { ($0.load(fromByteOffset: 0, as: UInt64.self),
                    $0.load(fromByteOffset: 8, as: UInt64.self)) }
            }
        }
        let seed = (UInt64.random(in: .min ... .max), UInt64.random(in: .min ... .max))
        withUnsafeBytes(of: seed.0) { bytes.replaceSubrange(0..<8, with: $0) }
        withUnsafeBytes(of: seed.1) { bytes.replaceSubrange(8..<16, with: $0) }
        let temporary = path + ".tmp"
        let out = open(temporary, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o600)
        guard out >= 0 else { return nil }
        let written = bytes.withUnsafeBytes { write(out, $0.baseAddress, 16) }
        close(out)
        guard written == 16, rename(temporary, path) == 0 else {
            unlink(temporary)
            return nil
        }
        return seed
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

    /// Creates `path` (and its parents) if missing. The cache directory belongs to the workers' user and the
    /// master's group, mode 2770 (setgid): workers write there, and everything they make keeps the group, so the
    /// master (root without CAP_DAC_OVERRIDE in the packaged unit) reads, purges and rebuilds through the group.
    /// The Debian package creates /var/cache/jester so; elsewhere the master makes and hands it over.
    static func makeCacheDirectory(_ path: String, owner: Identity?) throws {
        var prefix = ""
        let components = path.split(separator: "/")
        for (index, component) in components.enumerated() {
            prefix += "/" + component
            let isCacheDirectory = index == components.count - 1
            if mkdir(prefix, isCacheDirectory ? CacheStore.directoryMode : 0o755) == 0 {
                if isCacheDirectory { chmod(prefix, CacheStore.directoryMode) }
            } else if errno != EEXIST {
                throw SystemError("mkdir", prefix)
            }
        }
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw SystemError("stat", "\(path) (the cache path must be a directory)", errno: ENOTDIR)
        }
        if let owner, info.st_uid != owner.userID || info.st_gid != getgid() {
            guard chown(path, owner.userID, getgid()) == 0 else {
                throw SystemError("chown", "\(path) (to the workers' user; the Debian package creates it so)")
            }
            chmod(path, CacheStore.directoryMode)
        }
        if let owner { try checkSearchable(path, by: owner) }
    }
}
