// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterControl
import JesterControlPlane

/// The control plane's embedded storage: one file per version and an append-only audit log, in a directory the
/// control plane owns (`/var/lib/jester-control-plane` in the package).
///
/// Files, not a database, because what is stored is write-once: a version is never edited, the audit log is
/// only appended to. A file per version is written whole, flushed and renamed into place, so a crash leaves the
/// version either complete or absent; the directory needs no server, no schema migration and no library, and an
/// operator can read it with `jq` or back it up with `cp`. Its layout (a key per version) is the one an etcd store
/// for replicas uses, with etcd's transactions in place of `rename`.
///
/// ```
/// DIR/lock                     held (flock) while a control plane uses DIR
/// DIR/id                       the store's identity, made with it: version numbers mean something within it
/// DIR/versions/00000001.json   {"version": 1, "created_at": …, "actor": …, "changes": […], "document": {…}}
/// DIR/audit.log                one AuditRecord per line
/// ```
public final class FileSnapshotStore: SnapshotStore {
    public let directory: String
    public var location: String { directory }
    /// The store's identity (a random UUID made with the directory): data planes keep it with the version they
    /// run, so version 7 of a store made anew (or of another control plane) is not taken for the one they have.
    public let identity: String
    private let lockDescriptor: Int32
    private let auditDescriptor: Int32
    private var lastAppendFailed = false

    public typealias StoreError = SnapshotStoreError

    /// Opens (creating) the store and takes its lock: a second control plane on the same directory would make
    /// versions with the same numbers.
    public init(directory: String) throws(StoreError) {
        self.directory = directory
        for path in [directory, directory + "/versions"] {
            if mkdir(path, 0o750) != 0, errno != EEXIST {
                throw StoreError(description: "cannot create \(path): \(Self.lastError())")
            }
        }
        lockDescriptor = open(directory + "/lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lockDescriptor >= 0 else {
            throw StoreError(description: "cannot open \(directory)/lock: \(Self.lastError())")
        }
        guard flock(lockDescriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(lockDescriptor)
            throw StoreError(description: "\(directory) is in use by another control plane (its lock is held)")
        }
        auditDescriptor = open(directory + "/audit.log", O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard auditDescriptor >= 0 else {
            close(lockDescriptor)
            throw StoreError(description: "cannot open \(directory)/audit.log: \(Self.lastError())")
        }
        let idPath = directory + "/id"
        if let data = FileManager.default.contents(atPath: idPath),
            let text = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines),
            !text.isEmpty
        {
            identity = text
        } else {
            identity = UUID().uuidString.lowercased()
            // Flushed (and the directory below): an id lost to a power cut would make every data plane re-apply.
            let descriptor = open(idPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
            let written = descriptor >= 0 && Self.writeAll(descriptor, Array((identity + "\n").utf8))
                && fsync(descriptor) == 0
            if descriptor >= 0 { close(descriptor) }
            guard written else {
                close(auditDescriptor)
                close(lockDescriptor)
                throw StoreError(description: "cannot write \(idPath): \(Self.lastError())")
            }
        }
        // A log cut in the middle of a line (a crash, a full disk) gets its next record on a line of its own.
        let size = lseek(auditDescriptor, 0, SEEK_END)
        var last: UInt8 = 0
        if size > 0, pread(auditDescriptor, &last, 1, size - 1) == 1, last != UInt8(ascii: "\n") {
            lastAppendFailed = true
        }
        // The entries just made (versions/, audit.log) survive a power loss only once their directory is flushed.
        try syncDirectory(directory)
    }

    deinit {
        close(auditDescriptor)
        close(lockDescriptor)
    }

    /// Every stored version after `after`, oldest first. They must run 1, 2, … without a gap: a missing or
    /// unreadable version is refused with its file named, since serving without it would reuse its number for
    /// another document.
    public func loadVersions(after: Int) throws(StoreError) -> [SnapshotVersion] {
        let versionsDirectory = directory + "/versions"
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: versionsDirectory)
        } catch {
            throw StoreError(description: "cannot list \(versionsDirectory): \(error.localizedDescription)")
        }
        var versions: [SnapshotVersion] = []
        for name in names.sorted() {
            let path = versionsDirectory + "/" + name
            if name.hasPrefix("."), name.hasSuffix(".json") {
                // A version whose write was interrupted before its link: it was never answered as made.
                unlink(path)
                continue
            }
            guard name.count == 13, name.hasSuffix(".json"), let number = Int(name.dropLast(5)),
                Self.fileName(number) == name
            else { continue }
            guard number == versions.count + 1 else {
                throw StoreError(description: "\(path): version \(versions.count + 1) is missing before it")
            }
            guard let data = FileManager.default.contents(atPath: path) else {
                throw StoreError(description: "cannot read \(path)")
            }
            versions.append(try SnapshotVersion.stored(Array(data), number: number, at: path))
        }
        return Array(versions.dropFirst(after))
    }

    /// Only this process uses the directory (its lock says so): it remembers refusals itself.
    public var sharesRefusals: Bool { false }
    public func loadRefusals(of node: String?) throws(StoreError) -> [String: DataPlaneRefusals] { [:] }
    public func saveRefusals(_ refusals: DataPlaneRefusals, of node: String) throws(StoreError) {}

    /// Only this process writes the directory (its lock says so): nothing to watch.
    public func watch(_ changed: @escaping @Sendable () -> Void) {}
    public func stopWatching() {}

    /// The last `limit` audit records (lines that are not records are skipped: a line cut by a crash).
    public func loadAudit(limit: Int) -> [AuditRecord] {
        guard let data = FileManager.default.contents(atPath: directory + "/audit.log") else { return [] }
        let lines = data.split(separator: UInt8(ascii: "\n")).suffix(limit)
        return lines.compactMap { line in (try? JSONTree.parse(Array(line))).flatMap(AuditRecord.read) }
    }

    /// Stores one version durably: written to a hidden file and flushed, linked to its name (which fails if a
    /// file has it: a version is never overwritten), and the directory flushed, so once this returns the version
    /// survives a crash or a power loss. If it throws, the version's file is gone again: a version the client was
    /// told was not made must not appear at the next start.
    public func store(_ version: SnapshotVersion) throws(StoreError) {
        let name = Self.fileName(version.number)
        let versionsDirectory = directory + "/versions"
        let temporary = versionsDirectory + "/." + name
        let final = versionsDirectory + "/" + name
        var bytes = version.tree.serialized()
        bytes.append(UInt8(ascii: "\n"))
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard descriptor >= 0 else { throw StoreError(description: "cannot create \(temporary): \(Self.lastError())") }
        defer { unlink(temporary) }
        let written = Self.writeAll(descriptor, bytes) && fsync(descriptor) == 0
        let writeError = Self.lastError()
        close(descriptor)
        guard written else { throw StoreError(description: "cannot write \(temporary): \(writeError)") }
        guard link(temporary, final) == 0 else {
            throw StoreError(description: "cannot store \(final): \(Self.lastError())")
        }
        do {
            try syncDirectory(versionsDirectory)
        } catch {
            unlink(final)
            try? syncDirectory(versionsDirectory)
            throw error
        }
    }

    /// `00000042.json`: zero-padded so that names sort as numbers.
    static func fileName(_ number: Int) -> String {
        let digits = String(number)
        return String(repeating: "0", count: max(0, 8 - digits.count)) + digits + ".json"
    }

    /// Appends one record to the audit log and flushes it.
    public func append(_ record: AuditRecord) throws(StoreError) {
        // After a failed append the log may end inside a line: start afresh, so this record stays readable.
        var line: [UInt8] = lastAppendFailed ? [UInt8(ascii: "\n")] : []
        line += record.tree.serialized()
        line.append(UInt8(ascii: "\n"))
        // O_APPEND: one write of one line lands whole at the end.
        guard Self.writeAll(auditDescriptor, line), fdatasync(auditDescriptor) == 0 else {
            lastAppendFailed = true
            throw StoreError(description: "cannot append to \(directory)/audit.log: \(Self.lastError())")
        }
        lastAppendFailed = false
    }

    private func syncDirectory(_ path: String) throws(StoreError) {
        let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw StoreError(description: "cannot open \(path): \(Self.lastError())") }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw StoreError(description: "cannot flush \(path): \(Self.lastError())") }
    }

    private static func writeAll(_ descriptor: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if written < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += written
        }
        return true
    }

    private static func lastError() -> String { String(cString: strerror(errno)) }
}
