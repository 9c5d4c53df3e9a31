// SPDX-License-Identifier: Apache-2.0
import JesterControl
import JesterHTTP3
import Testing

@testable import JesterProxy

/// Where a worker without steering sends a datagram it has no connection for, and the authenticated envelope
/// forwarded datagrams travel in.

private let secret = Array(repeating: UInt8(7), count: 64)
private let me = QUICForwarding.Owner(slot: 0, generation: 5)

private func forwarding(peers: [QUICPeer], as owner: QUICForwarding.Owner = me) -> QUICForwarding {
    var forwarding = QUICForwarding(me: owner, secret: secret)
    forwarding.update(peers, address: "127.0.0.1:8443")
    return forwarding
}

private func id(slot: UInt8, generation: UInt16) -> QUICConnectionID {
    WorkerConnectionIDFactory(slot: slot, generation: generation).makeConnectionID()
}

/// Generation 5 (slots 0 and 1) drains; generation 6 (slots 0 and 1) serves; another address's peer is ignored.
private let reload = [
    QUICPeer(address: "127.0.0.1:8443", slot: 0, generation: 5, port: 4000, serving: false),
    QUICPeer(address: "127.0.0.1:8443", slot: 1, generation: 5, port: 4001, serving: false),
    QUICPeer(address: "127.0.0.1:8443", slot: 0, generation: 6, port: 4100, serving: true),
    QUICPeer(address: "127.0.0.1:8443", slot: 1, generation: 6, port: 4101, serving: true),
    QUICPeer(address: "127.0.0.1:9443", slot: 2, generation: 6, port: 4999, serving: true),
]

@Test func aDatagramForAnotherLiveWorkersConnectionGoesToThatWorker() {
    let draining = forwarding(peers: reload)
    #expect(draining.decide(id: id(slot: 1, generation: 5), isLong: false, draining: true) == .forward(port: 4001))
    #expect(draining.decide(id: id(slot: 0, generation: 6), isLong: false, draining: true) == .forward(port: 4100))
    // Handshake packets carrying another worker's ID go there too.
    #expect(draining.decide(id: id(slot: 1, generation: 6), isLong: true, draining: false) == .forward(port: 4101))
}

@Test func itsOwnConnectionsAndWorkersThatAreGoneStayHere() {
    let worker = forwarding(peers: reload)
    #expect(worker.decide(id: id(slot: 0, generation: 5), isLong: false, draining: false) == .serveHere)
    // Slot 2 of generation 6 serves another address; slot 3 does not exist: no one to pass them to.
    #expect(worker.decide(id: id(slot: 2, generation: 6), isLong: false, draining: false) == .serveHere)
    #expect(worker.decide(id: id(slot: 3, generation: 6), isLong: false, draining: false) == .serveHere)
}

@Test func aNewConnectionReachingADrainingWorkerGoesToTheServingOneOfItsSlot() {
    let clientChosen = QUICConnectionID(Array(repeating: 0xee, count: 8))!
    #expect(forwarding(peers: reload).decide(id: clientChosen, isLong: true, draining: true) == .forward(port: 4100))
    // A serving worker accepts it.
    #expect(forwarding(peers: reload, as: .init(slot: 0, generation: 6)).decide(
        id: clientChosen, isLong: true, draining: false) == .serveHere)
    // A slot the serving generation no longer has: a serving worker chosen by the client's ID.
    let shrunk = reload.filter { !($0.generation == 6 && $0.slot == 1) }
    let slotOne = forwarding(peers: shrunk, as: .init(slot: 1, generation: 5))
    #expect(slotOne.decide(id: clientChosen, isLong: true, draining: true) == .forward(port: 4100))
    // A generation still starting (not serving yet) takes no new connection either, even in a slot of its own.
    let starting = reload + [QUICPeer(address: "127.0.0.1:8443", slot: 2, generation: 7, port: 4200, serving: false)]
    let added = forwarding(peers: starting, as: .init(slot: 2, generation: 7))
    guard case .forward(let port) = added.decide(id: clientChosen, isLong: true, draining: false) else {
        Issue.record("a starting worker accepted a new connection")
        return
    }
    #expect([4100, 4101].contains(port))
    // Spread by the ID over the serving workers, the same ID always to the same one.
    var chosen = Set<Int>()
    for byte in UInt8(0)..<32 {
        let id = QUICConnectionID((0..<8).map { byte &* 37 &+ UInt8($0) &* 11 })!
        if case .forward(let port) = added.decide(id: id, isLong: true, draining: false) { chosen.insert(port) }
        #expect(added.decide(id: id, isLong: true, draining: false) == added.decide(id: id, isLong: true, draining: false))
    }
    #expect(chosen == [4100, 4101])
}

@Test func aWorkerThatIsGoneIsToldApartFromALiveOne() {
    let worker = forwarding(peers: reload)
    #expect(worker.isLive(.init(slot: 1, generation: 6)) == true)
    #expect(worker.isLive(.init(slot: 3, generation: 6)) == false)
    #expect(worker.isLive(me) == true)
    // Before the master's list nothing is known.
    #expect(QUICForwarding(me: me, secret: secret).isLive(.init(slot: 1, generation: 6)) == nil)
}

@Test func twoProcessesNeverReadOneSlotSocket() {
    // Before the master's list: read (the first generation has no one else).
    #expect(QUICForwarding(me: me, secret: secret).readsSharedSocket)
    // Draining beside a serving successor in its slot: stop; the successor reads and forwards.
    #expect(!forwarding(peers: reload).readsSharedSocket)
    #expect(forwarding(peers: reload, as: .init(slot: 0, generation: 6)).readsSharedSocket)
    // A new generation still starting (not serving) beside the serving one: not yet.
    let starting = reload.map { QUICPeer(address: $0.address, slot: $0.slot, generation: $0.generation, port: $0.port,
        serving: $0.generation == 5) }
    #expect(!forwarding(peers: starting, as: .init(slot: 1, generation: 6)).readsSharedSocket)
    // Draining with no successor in its slot: the socket is its alone.
    let shrunk = reload.filter { !($0.generation == 6 && $0.slot == 1) }
    #expect(forwarding(peers: shrunk, as: .init(slot: 1, generation: 5)).readsSharedSocket)
}

@Test func forwardedDatagramsCarryTheClientAddressAndOnlyThisInstanceCanMakeThem() throws {
    let sender = QUICForwarding(me: me, secret: secret)
    let client = try #require(QUICSocketAddress(ip: "192.0.2.10", port: 51_000))
    let datagram: [UInt8] = [0x40] + Array(0..<40)
    let message = datagram.withUnsafeBytes { sender.encapsulate($0, from: client) }
    let receiver = QUICForwarding(me: .init(slot: 1, generation: 5), secret: secret)
    let opened = try #require(receiver.decapsulate(message))
    #expect(opened.peer == client && Array(opened.datagram) == datagram)

    var tampered = message
    tampered[8] ^= 1  // inside the client's address
    #expect(receiver.decapsulate(tampered) == nil)
    #expect(QUICForwarding(me: me, secret: Array(repeating: 8, count: 64)).decapsulate(message) == nil)
    #expect(receiver.decapsulate(Array(message.prefix(20))) == nil)
    #expect(receiver.decapsulate([]) == nil)
    var lying = message
    lying[4] = 200  // an address length past the end
    #expect(receiver.decapsulate(lying) == nil)
}

@Test func sharingOneSocketANewConnectionGoesToOneServingWorkerChosenByItsID() {
    // Generation 6 serves on slots 0, 1 and 2, all reading systemd's one socket.
    let peers = [0, 1, 2].map { QUICPeer(address: "127.0.0.1:8443", slot: $0, generation: 6, port: 4100 + $0, serving: true) }
    var workers = (0..<3).map { slot -> QUICForwarding in
        var worker = forwarding(peers: peers, as: .init(slot: UInt8(slot), generation: 6))
        worker.sharesOneSocket = true
        return worker
    }
    var chosen = Set<Int>()
    for byte in UInt8(0)..<48 {
        let clientChosen = QUICConnectionID((0..<8).map { byte &* 37 &+ UInt8($0) &* 11 &+ 0x80 })!
        // Whichever worker reads the datagram, the same worker serves it: the others forward it there.
        let decisions = workers.map { $0.decide(id: clientChosen, isLong: true, draining: false) }
        let servers = decisions.indices.filter { decisions[$0] == .serveHere }
        #expect(servers.count == 1, "\(decisions)")
        guard let server = servers.first else { continue }
        chosen.insert(server)
        #expect(decisions.enumerated().allSatisfy { $0.offset == server || $0.element == .forward(port: 4100 + server) })
    }
    #expect(chosen == [0, 1, 2])
    // A worker not yet in the list is not declared gone (its clients are not reset by the others).
    #expect(workers[0].isLive(.init(slot: 3, generation: 6)) == nil)
    workers[0].sharesOneSocket = false
    #expect(workers[0].isLive(.init(slot: 3, generation: 6)) == false)
}
