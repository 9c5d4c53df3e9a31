// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterControl
import JesterControlPlane
import JesterLogging
import Logging

/// The control plane's store for replicas: several `jester control-plane --etcd …` processes share one etcd
/// cluster (the v3 API), so any of them serves the API and pushes the same versions to the data planes.
///
/// The layout is the file store's, with keys for files and etcd's transactions for `link`:
///
/// ```
/// PREFIX/id                        the store's identity, made by the first replica (created only if absent)
/// PREFIX/versions/000000000001     a SnapshotVersion's JSON, created only if absent
/// PREFIX/audit/TIME-RANDOM         one AuditRecord's JSON
/// PREFIX/refusals/NODE             the versions a data plane refused (DataPlaneRefusals), written by the replica
///                                  that heard the NACK or the retry
/// ```
///
/// A version is created with a transaction that succeeds only if its key does not exist, so when two replicas
/// decide version N at once exactly one stores it; the other is told (`isConflict`), reads what it missed and
/// decides its change again over it. Every replica watches the prefix and reads new versions as they appear, so
/// a change made through one replica reaches the data planes of all of them.
public final class EtcdSnapshotStore: SnapshotStore {
    public let identity: String
    public let location: String
    private let client: EtcdClient
    private let prefix: String
    private let watching = EtcdClient.Watching()
    private let logger = Logger(component: .controlPlane)

    /// Seconds a watch may stay without a byte before it is made anew (and what it may have missed read).
    static let watchIdle = 30

    /// Connects to etcd and reads (or, for the first replica, makes) the store's identity. `prefix` is the keys'
    /// common start; replicas of one control plane give the same one.
    public init(endpoints: [String], prefix: String) throws(SnapshotStoreError) {
        client = try EtcdClient(endpoints: endpoints)
        self.prefix = prefix.hasSuffix("/") ? prefix : prefix + "/"
        location = "etcd \(client.endpoints.map(\.description).joined(separator: ",")) \(self.prefix)"
        let candidate = UUID().uuidString.lowercased()
        _ = try client.createIfAbsent(self.prefix + "id", Array(candidate.utf8))
        guard let stored = try client.range(from: self.prefix + "id").first, !stored.value.isEmpty else {
            throw SnapshotStoreError(description: "etcd holds no \(self.prefix)id after it was created")
        }
        identity = String(decoding: stored.value, as: UTF8.self)
    }

    private func versionKey(_ number: Int) -> String {
        let digits = String(number)
        return prefix + "versions/" + String(repeating: "0", count: max(0, 12 - digits.count)) + digits
    }

    public func loadVersions(after: Int) throws(SnapshotStoreError) -> [SnapshotVersion] {
        var versions: [SnapshotVersion] = []
        var start = versionKey(after + 1)
        let end = EtcdClient.prefixEnd(prefix + "versions/")
        // In pages: a version holds a whole document, and etcd answers a range in one message.
        while true {
            let page = try client.range(from: start, to: end, limit: 32)
            for entry in page {
                let expected = after + versions.count + 1
                guard entry.key == versionKey(expected) else {
                    throw SnapshotStoreError(description:
                        "etcd: \(entry.key) found where \(versionKey(expected)) was expected (a version is missing)")
                }
                versions.append(try SnapshotVersion.stored(entry.value, number: expected, at: "etcd: \(entry.key)"))
            }
            guard page.count == 32, let last = page.last else { return versions }
            start = last.key + "\0"
        }
    }

    /// The audit records read so far (the newest `ControlPlaneAPI.recentAuditLimit`, by key), and the newest
    /// revision among them: each read asks etcd only for records created since, since a record can be as large as
    /// a version's list of changes and the watch reads on every event.
    private let auditLock = NSLock()
    private var auditRecords: [String: AuditRecord] = [:]
    private var auditRevision = 0

    public func loadAudit(limit: Int) -> [AuditRecord] {
        guard limit > 0 else { return [] }
        return auditLock.withLock {
            do {
                let start = prefix + "audit/"
                // The newest records created since the last read (all of them the first time), at most as many as
                // are kept: keys sort by time, but another replica's clock may be behind, so revisions (etcd's
                // one order) say what is new.
                let entries = try client.range(
                    from: start, to: EtcdClient.prefixEnd(start), limit: max(limit, ControlPlaneAPI.recentAuditLimit),
                    descending: true, byCreation: true, createdAfter: auditRevision == 0 ? nil : auditRevision)
                for entry in entries {
                    auditRevision = max(auditRevision, entry.createRevision)
                    guard let record = (try? JSONTree.parse(entry.value)).flatMap(AuditRecord.read) else { continue }
                    auditRecords[entry.key] = record
                }
                let keys = auditRecords.keys.sorted()
                for key in keys.dropLast(ControlPlaneAPI.recentAuditLimit) { auditRecords[key] = nil }
                return keys.suffix(min(limit, ControlPlaneAPI.recentAuditLimit)).compactMap { auditRecords[$0] }
            } catch {
                logger.error("cannot read the audit log", metadata: ["error": "\(error)"])
                return []
            }
        }
    }

    /// How long storing one version may take, all attempts together: the control plane's loop waits for it.
    static let storeDeadline = 10.0

    public func store(_ version: SnapshotVersion) throws(SnapshotStoreError) {
        let key = versionKey(version.number)
        let bytes = version.tree.serialized()
        let conflict = SnapshotStoreError(
            description: "version \(version.number) was made meanwhile by another replica", isConflict: true)
        let started = Date()
        var lastError = SnapshotStoreError(description: "no answer")
        var uncertain = false
        // An answer lost after etcd may have committed (a timeout, a member gone, a 5xx) leaves the outcome
        // unknown: the create is made again, and what is then stored under the number decides. This very
        // content: made (by the earlier attempt). Other content: another replica's version (a conflict).
        for attempt in 0..<3 {
            if attempt > 0 {
                guard Date().timeIntervalSince(started) < Self.storeDeadline else { break }
                Thread.sleep(forTimeInterval: 0.2 * Double(attempt))
            }
            do throws(SnapshotStoreError) {
                if try client.createIfAbsent(key, bytes) { return }
                // The number is taken (the compare failed): by this content, or by another replica's.
                guard let stored = try client.range(from: key).first, stored.value == bytes else { throw conflict }
                return
            } catch where error.isConflict {
                throw error
            } catch {
                uncertain = uncertain || error.isUncertain
                lastError = error
            }
        }
        guard uncertain else {
            throw SnapshotStoreError(description: "version \(version.number) was not stored: \(lastError.description)")
        }
        throw SnapshotStoreError(description:
            "etcd did not say whether version \(version.number) was stored (\(lastError.description)): "
                + "if it was, it appears in the history and reaches the data planes", isUncertain: true)
    }

    public func append(_ record: AuditRecord) throws(SnapshotStoreError) {
        // The time first, so the keys sort as the log; the random part keeps two replicas' records apart.
        let random = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        try client.put(prefix + "audit/" + record.at + "-" + random, record.tree.serialized())
    }

    public var sharesRefusals: Bool { true }

    public func loadRefusals(of node: String?) throws(SnapshotStoreError) -> [String: DataPlaneRefusals] {
        let start = prefix + "refusals/"
        let entries: [EtcdClient.KeyValue]
        if let node {
            entries = try client.range(from: start + node)
        } else {
            entries = try client.range(from: start, to: EtcdClient.prefixEnd(start))
        }
        var refusals: [String: DataPlaneRefusals] = [:]
        for entry in entries {
            guard let tree = try? JSONTree.parse(entry.value), let read = DataPlaneRefusals.read(tree) else {
                logger.warning("skipping an unreadable refusal record", metadata: ["key": "\(entry.key)"])
                continue
            }
            refusals[String(entry.key.dropFirst(start.count))] = read
        }
        return refusals
    }

    public func saveRefusals(_ refusals: DataPlaneRefusals, of node: String) throws(SnapshotStoreError) {
        try client.put(prefix + "refusals/" + node, refusals.tree.serialized())
    }

    public func watch(_ changed: @escaping @Sendable () -> Void) {
        let client = self.client
        let watching = self.watching
        let logger = self.logger
        let start = prefix
        let end = EtcdClient.prefixEnd(prefix)  // versions, audit records and refusals
        let thread = Thread {
            var failures = 0
            while !watching.isStopped {
                do {
                    // Every piece that arrives may be a new version: the control plane reads what it lacks.
                    try client.watch(from: start, to: end, idle: Self.watchIdle, watching: watching) {
                        failures = 0
                        changed()
                    }
                } catch {
                    failures += 1
                    if failures == 1 {
                        logger.warning("cannot watch etcd; retrying", metadata: ["error": "\(error)"])
                    }
                }
                guard !watching.isStopped else { return }
                // What happens until the next watch is made is read when it is: its first piece (etcd's "created")
                // calls `changed` too. While etcd cannot be reached, nothing is read.
                Thread.sleep(forTimeInterval: min(5, 0.2 * Double(1 << min(failures, 5))))
            }
        }
        thread.name = "etcd-watch"
        thread.start()
    }

    public func stopWatching() {
        watching.stop()
    }
}
