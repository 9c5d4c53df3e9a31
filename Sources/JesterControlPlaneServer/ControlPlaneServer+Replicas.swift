// SPDX-License-Identifier: Apache-2.0
import JesterControlPlane
import NIOConcurrencyHelpers

/// Replicas sharing etcd: what the others store (versions, audit records, data planes' refusals) is read on the
/// store's watch thread, so the loop never waits on etcd for it, and made current on the loop in order.
extension ControlPlaneServer {
    /// What was read from the store, to be taken on the loop.
    struct StoreChanges: Sendable {
        var versions: [SnapshotVersion]
        /// Empty when they could not be read: the records listed stay.
        var audit: [AuditRecord]
        /// Nil when the store does not share them or they could not be read.
        var refusals: [String: DataPlaneRefusals]?
        /// `localWrites` when the reading began: if a write of this replica's ended since, the audit records and
        /// refusals read may be older than its own, and they are read again.
        var localWritesSeen: Int
    }

    /// Starts the store's watch (etcd; the file store has none to start).
    func startWatchingTheStore() {
        // The newest version this thread has read and handed to the loop: events come faster than the loop takes
        // what was read (a version and its audit record are two), and a version is read once, not per event.
        let handedOver = NIOLockedValueBox(0)
        store.watch { [weak self] in
            guard let self else { return }
            let after = max(committedVersion.withLockedValue { $0 }, handedOver.withLockedValue { $0 })
            guard let changes = readStoreChanges(after: after) else { return }
            if let last = changes.versions.last { handedOver.withLockedValue { $0 = last.number } }
            // Under the lock `stop` takes to close, so nothing is handed to a closed loop.
            loopClosed.withLockedValue { closed in
                if !closed { loop.execute { self.adopt(changes) } }
            }
        }
    }

    /// Makes `version` current, after it was stored (here or by another replica).
    func commit(_ version: SnapshotVersion) {
        api.commit(version)
        committedVersion.withLockedValue { $0 = version.number }
    }

    /// Reads the versions after `after`, the recent audit records and the refusals; nil when the versions cannot
    /// be read (logged). Off the loop (the watch's thread), or on it when a change must be decided again.
    func readStoreChanges(after: Int) -> StoreChanges? {
        let writes = localWrites.withLockedValue { $0 }
        let versions: [SnapshotVersion]
        do {
            versions = try store.loadVersions(after: after)
        } catch {
            logger.error("cannot read the versions other replicas made", metadata: ["error": "\(error.description)"])
            return nil
        }
        var refusals: [String: DataPlaneRefusals]?
        if store.sharesRefusals {
            do {
                refusals = try store.loadRefusals(of: nil)
            } catch {
                logger.error("cannot read what data planes refused", metadata: ["error": "\(error.description)"])
            }
        }
        return StoreChanges(
            versions: versions, audit: store.loadAudit(limit: ControlPlaneAPI.recentAuditLimit), refusals: refusals,
            localWritesSeen: writes)
    }

    /// Reads and takes what other replicas stored since the current version, now, on the loop: a change that
    /// lost its version number is decided again over it.
    func catchUp() {
        if let changes = readStoreChanges(after: api.current.number) { adopt(changes) }
    }

    /// Takes what was read, on the loop: versions that follow the current one are made current in order, the
    /// audit log and the refusals are replaced by the store's, and the data planes get what they should have.
    func adopt(_ changes: StoreChanges) {
        let before = api.current.number
        // Versions this loop has made meanwhile (or read already) are skipped: read again, they are the same.
        for version in changes.versions where version.number == api.current.number + 1 { commit(version) }
        if api.current.number > before {
            logger.info("versions made by another replica read", metadata: [
                "from": "\(before + 1)", "to": "\(api.current.number)",
            ])
        }
        guard changes.localWritesSeen == localWrites.withLockedValue({ $0 }) else {
            // Read while this replica wrote: read again, here (writes happen on this loop, so this read is not).
            catchUp()
            return
        }
        if !changes.audit.isEmpty { api.replaceRecentAudit(changes.audit) }
        if let shared = changes.refusals {
            // Refusals heard and retries asked at other replicas. A node whose own refusals this replica could
            // not write keeps them and they are written again; what was read predates that write, so it is not
            // taken for those nodes in this pass.
            let unwritten = refusalsNotShared
            for node in unwritten { shareRefusals(of: node) }
            for node in Set(shared.keys).union(api.dataPlanes.entries.keys)
            where !unwritten.contains(node) && !refusalsNotShared.contains(node) {
                api.dataPlanes.adoptRefusals(shared[node] ?? DataPlaneRefusals(), of: node, now: Self.timestamp())
            }
        }
        pushCurrentVersion()
    }
}
