// SPDX-License-Identifier: Apache-2.0
import JesterControl
import JesterControlPlane

/// Why a store cannot be opened, read or written.
public struct SnapshotStoreError: Error, CustomStringConvertible {
    public var description: String
    /// The version's number was taken by another replica first (etcd only): the change is decided again over the
    /// versions it missed, never stored over them.
    public var isConflict = false
    /// The write may have been stored after all (etcd did not answer whether it was): the client is told so,
    /// not that nothing changed.
    public var isUncertain = false

    public init(description: String, isConflict: Bool = false, isUncertain: Bool = false) {
        self.description = description
        self.isConflict = isConflict
        self.isUncertain = isUncertain
    }
}

/// Where the control plane keeps its versions and audit log: files (`FileSnapshotStore`, one control plane) or
/// etcd (`EtcdSnapshotStore`, replicas sharing it). Both store a version under its number and never over another,
/// so two writers of the same number cannot both succeed: that is what lets replicas share a history.
///
/// Calls block the caller (the control plane's one loop) until the change is durable, as an answer is sent only
/// once what it says is stored.
public protocol SnapshotStore: AnyObject {
    /// The store's identity (a UUID made with it): data planes keep it with the version they run.
    var identity: String { get }
    /// Where it is, for logs and status (a directory, or etcd's endpoints and key prefix).
    var location: String { get }
    /// Every stored version from `after + 1` on, oldest first, without a gap.
    func loadVersions(after: Int) throws(SnapshotStoreError) -> [SnapshotVersion]
    /// The last `limit` audit records, oldest first.
    func loadAudit(limit: Int) -> [AuditRecord]
    /// Stores one version durably, or throws (`isConflict` when its number was taken meanwhile).
    func store(_ version: SnapshotVersion) throws(SnapshotStoreError)
    /// Appends one audit record durably.
    func append(_ record: AuditRecord) throws(SnapshotStoreError)
    /// Whether the versions data planes refused are kept here for other replicas (etcd); a store one control
    /// plane uses alone keeps none (that control plane remembers them).
    var sharesRefusals: Bool { get }
    /// What data planes refused, by node: `node`'s alone, or all of them (nil).
    func loadRefusals(of node: String?) throws(SnapshotStoreError) -> [String: DataPlaneRefusals]
    /// Keeps what `node` refused (none: forgotten).
    func saveRefusals(_ refusals: DataPlaneRefusals, of node: String) throws(SnapshotStoreError)
    /// Calls `changed`, on a thread of the store's, whenever another writer may have stored something; returns
    /// at once. A store only one process writes never calls it.
    func watch(_ changed: @escaping @Sendable () -> Void)
    /// Ends the watch, if any.
    func stopWatching()
}

extension SnapshotVersion {
    /// A stored version read back (a file, an etcd value), which must be version `number`; what is wrong with it
    /// names `place`.
    static func stored(_ bytes: [UInt8], number: Int, at place: String) throws(SnapshotStoreError) -> SnapshotVersion {
        let tree: JSONTree
        do {
            tree = try JSONTree.parse(bytes)
        } catch {
            throw SnapshotStoreError(description: "\(place) is not JSON: \(error)")
        }
        switch SnapshotVersion.read(tree) {
        case .success(let version) where version.number == number:
            return version
        case .success(let version):
            throw SnapshotStoreError(description: "\(place) holds version \(version.number)")
        case .failure(let problem):
            throw SnapshotStoreError(description: "\(place): \(problem)")
        }
    }
}

extension SnapshotStore {
    /// Every stored version, oldest first.
    public func loadVersions() throws(SnapshotStoreError) -> [SnapshotVersion] { try loadVersions(after: 0) }
}
