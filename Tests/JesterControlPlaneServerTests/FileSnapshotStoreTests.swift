// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterControl
import JesterControlPlane
@testable import JesterControlPlaneServer
import Testing

/// The embedded store on a real directory: versions written and read back, never overwritten, a second process
/// kept out, an interrupted write forgotten, and the audit log read back past a torn line.

private func temporaryDirectory() -> String {
    let path = NSTemporaryDirectory() + "jester-store-\(UUID().uuidString)"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

private func version(_ number: Int) -> SnapshotVersion {
    var document = SnapshotDocument()
    document.put(.upstreams, "u\(number)", .object(["targets": .array([.string("127.0.0.1:9000")])]))
    return SnapshotVersion(
        number: number, createdAt: "2026-12-07T00:00:00Z", actor: "alice", action: .put,
        changes: [ResourceChange(kind: .upstreams, name: "u\(number)", change: .added)], document: document)
}

@Test func versionsAreStoredReadBackAndNeverOverwritten() throws {
    let directory = temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    do {
        let store = try FileSnapshotStore(directory: directory)
        try store.store(version(1))
        try store.store(version(2))
        #expect(throws: FileSnapshotStore.StoreError.self) { try store.store(version(2)) }
        #expect(try store.loadVersions() == [version(1), version(2)])
        // A second control plane on the same directory is kept out while this one holds it.
        #expect(throws: FileSnapshotStore.StoreError.self) { _ = try FileSnapshotStore(directory: directory) }
    }
    // An interrupted write (its hidden file) is forgotten at the next start; other files are left alone.
    FileManager.default.createFile(atPath: directory + "/versions/.00000003.json", contents: Data("{".utf8))
    FileManager.default.createFile(atPath: directory + "/versions/notes.txt", contents: Data("x".utf8))
    let reopened = try FileSnapshotStore(directory: directory)
    #expect(try reopened.loadVersions().map(\.number) == [1, 2])
    #expect(!FileManager.default.fileExists(atPath: directory + "/versions/.00000003.json"))
    #expect(FileManager.default.fileExists(atPath: directory + "/versions/notes.txt"))
    #expect(FileSnapshotStore.fileName(42) == "00000042.json")
}

@Test func auditRecordsAreReadBackAndATornLineIsSkipped() throws {
    let directory = temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let first = AuditRecord(
        at: "t1", actor: "alice", method: "PUT", path: "/api/v1/upstreams/a", outcome: .accepted, status: 201,
        version: 1, changes: [ResourceChange(kind: .upstreams, name: "a", change: .added)])
    do {
        let store = try FileSnapshotStore(directory: directory)
        try store.append(first)
    }
    // A crash in the middle of a line.
    let handle = try #require(FileHandle(forWritingAtPath: directory + "/audit.log"))
    handle.seekToEndOfFile()
    handle.write(Data(#"{"at":"t2","actor":"bo"#.utf8))
    try handle.close()
    let reopened = try FileSnapshotStore(directory: directory)
    var second = first
    second.at = "t3"
    try reopened.append(second)
    // The torn line is skipped; the record after it starts a line of its own.
    #expect(reopened.loadAudit(limit: 10) == [first, second])
}
