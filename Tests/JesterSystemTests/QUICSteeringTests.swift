// SPDX-License-Identifier: Apache-2.0
import Glibc
import JesterHTTP3
import JesterSystem
import Testing

/// The SK_REUSEPORT program that steers QUIC datagrams by connection ID: its encoding, its key layout against the
/// IDs workers make, and (as root, which loading needs) real datagrams through a real reuseport group on loopback.

@Test func anEncodedProgramHasItsJumpsResolvedAndItsMapLoadsMarked() {
    var program = BPFProgram()
    program.jump(to: "end", if: .r0, .notEqual, 0)
    program.loadMap(.r2, fd: 7)
    program.place("end")
    program.move(.r0, 1)
    program.exit()
    let bytes = program.encoded()
    #expect(program.count == 5)
    // JNE r0, 0: jumps over the two halves of the map load (offset 2).
    #expect(Array(bytes[0..<8]) == [0x55, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00])
    // BPF_LD | BPF_DW | BPF_IMM into r2, source BPF_PSEUDO_MAP_FD (1), the fd as immediate; then its second half.
    #expect(Array(bytes[8..<16]) == [0x18, 0x12, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00])
    #expect(Array(bytes[16..<24]) == [0, 0, 0, 0, 0, 0, 0, 0])
    #expect(Array(bytes[24..<32]) == [0xb7, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00])
    #expect(Array(bytes[32..<40]) == [0x95, 0, 0, 0, 0, 0, 0, 0])
}

@Test func theOwnerKeyIsHowWorkerConnectionIDsBegin() {
    for (slot, generation) in [(0, 1), (3, 258), (255, 65_535), (7, 65_536), (9, 200_000)] {
        let field = QUICSteering.connectionIDGeneration(generation)
        let id = WorkerConnectionIDFactory(slot: UInt8(slot), generation: field).makeConnectionID()
        let key = QUICSteering.ownerKey(slot: slot, generation: generation)
        #expect(Array(id.bytes.prefix(QUICSteering.ownerBytes)) == Array(key.prefix(QUICSteering.ownerBytes)))
        #expect(key.count == 4 && key[3] == 0)
        #expect(field != 0, "generation \(generation) must not take the field that names no worker")
    }
    // Generations wrap past 0; neighbours stay distinct.
    #expect(QUICSteering.connectionIDGeneration(65_535) == 65_535)
    #expect(QUICSteering.connectionIDGeneration(65_536) == 1)
    // A Retry's ID names no worker, so the retried Initial is steered like a new connection's.
    let retry = WorkerConnectionIDFactory(slot: 4, generation: 9).makeRetryConnectionID()
    #expect(WorkerConnectionIDFactory.owner(of: retry)?.generation == 0)
    #expect(retry.bytes.count == 16)
}

/// Three sockets of one group: slots 0 and 1 of generation 9 serve, slot 0 of generation 8 drains.
@Test(.enabled(if: getuid() == 0, "loading an SK_REUSEPORT program needs root"))
func datagramsReachTheSocketTheirConnectionIDNamesAndNewOnesOnlyTheServingGeneration() throws {
    let first = try ListeningSocket.bindDatagram(host: "127.0.0.1", port: 0)
    let port = boundPort(first)
    let second = try ListeningSocket.bindDatagram(host: "127.0.0.1", port: port)
    let draining = try ListeningSocket.bindDatagram(host: "127.0.0.1", port: port)
    defer { for fd in [first, second] { close(fd) } }
    let steering = try QUICSteering(owners: 64)
    try steering.attach(to: first)
    try steering.route(owner: 0, generation: 9, to: first)
    try steering.route(owner: 1, generation: 9, to: second)
    try steering.route(owner: 0, generation: 8, to: draining)
    try steering.routeNewConnections(to: [first, second])
    let sockets = [first, second, draining]

    // Short headers (first byte 0x40, then the 16-byte ID) from many client ports: always their owner.
    for round in 0..<12 {
        for (index, owner) in [(0, 9), (1, 9), (0, 8)].enumerated() {
            let id = WorkerConnectionIDFactory(slot: UInt8(owner.0), generation: UInt16(owner.1)).makeConnectionID()
            let receiver = try sendFromFreshPort([0x40] + id.bytes + Array(repeating: 0xaa, count: 30), to: port,
                readingFrom: sockets)
            #expect(receiver == index, "round \(round): owner \(owner) reached socket \(String(describing: receiver))")
        }
    }
    // A long header (Initial) carrying an owner's ID reaches that owner, the draining one included.
    let handshakeID = WorkerConnectionIDFactory(slot: 0, generation: 8).makeConnectionID()
    let long: [UInt8] = [0xc0, 0, 0, 0, 1, UInt8(handshakeID.bytes.count)] + handshakeID.bytes + [8] + Array(
        repeating: 0x11, count: 8) + Array(repeating: 0, count: 40)
    #expect(try sendFromFreshPort(long, to: port, readingFrom: sockets) == 2)

    // New connections (Initials with IDs the clients chose) go to the serving generation only, spread by address.
    var reached = Set<Int>()
    for _ in 0..<40 {
        let clientID = (0..<8).map { _ in UInt8.random(in: 0...255) }
        let initial: [UInt8] = [0xc0, 0, 0, 0, 1, 8] + clientID + [8] + Array(repeating: 0x22, count: 8)
            + Array(repeating: 0, count: 40)
        let receiver = try #require(try sendFromFreshPort(initial, to: port, readingFrom: sockets))
        #expect(receiver != 2, "a new connection reached the draining generation")
        reached.insert(receiver)
    }
    #expect(reached == [0, 1], "40 clients should have reached both serving sockets")

    // The owner gone (its socket closed, so the kernel dropped it from the maps): its IDs are chosen by the new
    // connections' map like a new client's, which now holds `second` only.
    close(draining)
    try steering.routeNewConnections(to: [second])
    for _ in 0..<8 {
        let orphan = WorkerConnectionIDFactory(slot: 0, generation: 8).makeConnectionID()
        let receiver = try sendFromFreshPort([0x40] + orphan.bytes + [1, 2, 3], to: port, readingFrom: [first, second])
        #expect(receiver == 1)
    }
}

private func boundPort(_ fd: Int32) -> Int {
    var address = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Sends `datagram` to 127.0.0.1:`port` from a new client socket (a new source port) and returns the index of
/// the socket in `sockets` that received it, or nil when none did within a second.
private func sendFromFreshPort(_ datagram: [UInt8], to port: Int, readingFrom sockets: [Int32]) throws -> Int? {
    let client = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    defer { close(client) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let sent = withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            sendto(client, datagram, datagram.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard sent == datagram.count else { throw SystemError("sendto") }
    var descriptors = sockets.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
    guard poll(&descriptors, nfds_t(descriptors.count), 1000) > 0 else { return nil }
    var buffer = [UInt8](repeating: 0, count: 2048)
    var receiver: Int?
    for (index, descriptor) in descriptors.enumerated() where descriptor.revents & Int16(POLLIN) != 0 {
        while recv(descriptor.fd, &buffer, buffer.count, Int32(MSG_DONTWAIT)) > 0 { receiver = index }
    }
    return receiver
}
