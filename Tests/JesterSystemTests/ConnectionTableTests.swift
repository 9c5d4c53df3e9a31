// SPDX-License-Identifier: Apache-2.0
import Glibc
import JesterSystem
import Testing

/// The instance-wide connection table, as the master and two workers see it: three mappings of one memfd.

private func tableAndTwoWorkers(buckets: Int = 64) throws -> (master: ConnectionTable, ConnectionTable, ConnectionTable) {
    let master = try ConnectionTable.create(partitions: 4, buckets: buckets)
    master.partitionClaimed(0)
    master.partitionClaimed(1)
    return (master, try ConnectionTable.attach(fd: dup(master.fd)), try ConnectionTable.attach(fd: dup(master.fd)))
}

@Test func theInstanceLimitCountsEveryWorker() throws {
    let (master, first, second) = try tableAndTwoWorkers()
    #expect(first.admit("10.0.0.1", partition: 0, maxTotal: 3, maxPerClient: 0) == nil)
    #expect(second.admit("10.0.0.2", partition: 1, maxTotal: 3, maxPerClient: 0) == nil)
    #expect(second.admit("10.0.0.3", partition: 1, maxTotal: 3, maxPerClient: 0) == nil)
    // A fourth, on either worker, would exceed the instance's 3; refused, it leaves no count behind.
    #expect(first.admit("10.0.0.4", partition: 0, maxTotal: 3, maxPerClient: 0) == .instanceFull(limit: 3))
    #expect(master.instanceConnections == 3)
    second.release("10.0.0.2", partition: 1)
    #expect(first.admit("10.0.0.4", partition: 0, maxTotal: 3, maxPerClient: 0) == nil)
    #expect(master.instanceConnections == 3)
}

@Test func thePerClientLimitCountsEveryWorkerAndOnlyThatClient() throws {
    let (master, first, second) = try tableAndTwoWorkers(buckets: 16_384)
    #expect(first.admit("192.0.2.7", partition: 0, maxTotal: 0, maxPerClient: 2) == nil)
    #expect(second.admit("192.0.2.7", partition: 1, maxTotal: 0, maxPerClient: 2) == nil)
    #expect(second.admit("192.0.2.7", partition: 1, maxTotal: 0, maxPerClient: 2) == .clientFull(limit: 2))
    #expect(first.admit("192.0.2.8", partition: 0, maxTotal: 0, maxPerClient: 2) == nil)
    #expect(master.connections(from: "192.0.2.7") == 2)
    // A PROXY header says the second connection is from another client: it moves there.
    #expect(second.reassign(from: "192.0.2.7", to: "198.51.100.1", partition: 1, maxPerClient: 2) == nil)
    #expect(master.connections(from: "192.0.2.7") == 1 && master.connections(from: "198.51.100.1") == 1)
    #expect(master.instanceConnections == 3)
}

@Test func aDeadWorkersPartitionIsClearedWithEverythingItCounted() throws {
    let (master, first, second) = try tableAndTwoWorkers()
    for index in 0..<5 { _ = first.admit("10.0.0.\(index % 2)", partition: 0, maxTotal: 0, maxPerClient: 0) }
    _ = second.admit("10.0.0.0", partition: 1, maxTotal: 0, maxPerClient: 0)
    master.clear(partition: 0)
    #expect(master.instanceConnections == 1)
    #expect(master.connections(from: "10.0.0.0") == 1 && master.connections(from: "10.0.0.1") == 0)
}

@Test func collisionsNeverUndercountAClient() throws {
    // Eight buckets per row and two hundred addresses: every bucket is shared, so counts may be high, never low.
    let (master, first, _) = try tableAndTwoWorkers(buckets: 8)
    let addresses = (0..<200).map { "203.0.113.\($0 % 256).\($0)" }
    for address in addresses { _ = first.admit(address, partition: 0, maxTotal: 0, maxPerClient: 0) }
    for address in addresses { #expect(master.connections(from: address) >= 1) }
    #expect(first.admit(addresses[0], partition: 0, maxTotal: 0, maxPerClient: 1) == .clientFull(limit: 1))
}

@Test func attachingSomethingElseIsRefused() throws {
    var pipeEnds: [Int32] = [0, 0]
    #expect(pipe(&pipeEnds) == 0)
    defer { close(pipeEnds[0]); close(pipeEnds[1]) }
    #expect(throws: SystemError.self) { try ConnectionTable.attach(fd: pipeEnds[0]) }
}
