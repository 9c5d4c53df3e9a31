// SPDX-License-Identifier: Apache-2.0
import JesterHTTP3
import Testing

/// The worker's connection-ID layout: slot and generation up front, random after.

@Test func anIDNamesItsWorkerAndGeneration() throws {
    let factory = WorkerConnectionIDFactory(slot: 7, generation: 0x1234)
    let first = factory.makeConnectionID()
    let second = factory.makeConnectionID()
    #expect(first.bytes.count == 16)
    #expect(Array(first.bytes.prefix(3)) == [7, 0x12, 0x34])
    #expect(WorkerConnectionIDFactory.owner(of: first)! == (7, 0x1234))
    // The rest is random: two IDs differ after the prefix.
    #expect(first.bytes.dropFirst(3) != second.bytes.dropFirst(3))
    #expect(WorkerConnectionIDFactory.owner(of: QUICConnectionID([1, 2, 3])!) == nil)
    #expect(WorkerConnectionIDFactory(slot: 0, generation: 0, length: 40).connectionIDLength == 20)
}

@Test func aServerHandsOutOnlyItsWorkersIDs() throws {
    let pair = try QUICPair(connectionIDs: WorkerConnectionIDFactory(slot: 3, generation: 9))
    pair.pump()
    #expect(pair.server?.connection.state == .established)
    #expect(pair.issuedIDs.count >= 2)
    for id in pair.issuedIDs { #expect(WorkerConnectionIDFactory.owner(of: id)! == (3, 9)) }
}
