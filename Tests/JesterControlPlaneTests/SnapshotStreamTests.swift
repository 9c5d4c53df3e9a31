// SPDX-License-Identifier: Apache-2.0
import JesterControl
@testable import JesterControlPlane
import Testing

/// The stream's two ends without a transport: the control plane's view of each data plane (what to push, ACKs,
/// NACKs, stale answers) and the data plane's link (apply one at a time, ACK or NACK, persist, back off).

private func version(_ number: Int, upstream targets: [String] = ["127.0.0.1:9000"]) -> SnapshotVersion {
    var document = SnapshotDocument()
    document.put(.upstreams, "app", .object(["targets": .array(targets.map(JSONTree.string))]))
    return SnapshotVersion(number: number, createdAt: "t", actor: "a", action: .put, changes: [], document: document)
}

@Test func nothingIsPushedBeforeHelloAndTheCurrentVersionAfterIt() {
    var registry = DataPlaneRegistry()
    registry.opened(1)
    #expect(registry.offer(version(1)).isEmpty)
    let receivedOutcome = registry.receive(
        .hello(node: "edge-1", running: nil, jesterVersion: "0.1.0"), on: 1, current: version(1), now: "t0")
    let (outcome, push) = (receivedOutcome.outcome, receivedOutcome.push)
    #expect(outcome == .greeted && push?.version == 1)
    #expect(registry.tree[member: "data_planes"] == .array([.object([
        "node": .string("edge-1"), "connected": .bool(true), "since": .string("t0"), "running": .null,
        "refused_versions": .array([]), "outstanding": .integer(1), "jester_version": .string("0.1.0"),
    ])]))
    #expect((try? JSONTree.parse(push!.document)) == version(1).document.tree)
    // Nothing more while that push awaits its answer, whatever is committed meanwhile.
    #expect(registry.offer(version(2)).isEmpty)
    let receivedAcked = registry.receive(.ack(version: 1, nonce: push!.nonce), on: 1, current: version(3), now: "t1")
    let (acked, next) = (receivedAcked.outcome, receivedAcked.push)
    #expect(acked == .accepted(version: 1) && next?.version == 3)  // a burst of edits sends only the last
}

@Test func aDataPlaneThatRunsTheCurrentVersionIsSentNothing() {
    var registry = DataPlaneRegistry()
    registry.opened(7)
    let receivedPush = registry.receive(.hello(node: "edge-1", running: 4, store: ""), on: 7, current: version(4), now: "t0")
    let push = receivedPush.push
    #expect(push == nil)
    #expect(registry.offer(version(5)).map(\.push.version) == [5])
}

@Test func aRefusedVersionIsNeverResentAndTheRefusalIsListed() throws {
    var registry = DataPlaneRegistry()
    registry.opened(1)
    let push = registry.receive(.hello(node: "edge-1", running: 2), on: 1, current: version(3), now: "t0").push!
    let receivedOutcome = registry.receive(
        .nack(kept: 2, nonce: push.nonce, detail: "certificate missing"), on: 1, current: version(3), now: "t1")
    let (outcome, again) = (receivedOutcome.outcome, receivedOutcome.push)
    #expect(outcome == .refused(version: 3, detail: "certificate missing") && again == nil)
    #expect(registry.offer(version(3)).isEmpty)
    let listed = registry.tree[member: "data_planes"]
    guard case .array(let planes)? = listed, let plane = planes.first else {
        Issue.record("not listed")
        return
    }
    #expect(plane[member: "running"] == .integer(2))
    #expect(plane[member: "last_refusal"]?[member: "detail"] == .string("certificate missing"))
    #expect(plane[member: "refused_versions"] == .array([.integer(3)]))
    // The next version goes out; once accepted, the refusal is history.
    let next = registry.offer(version(4))
    #expect(next.map(\.push.version) == [4])
    _ = registry.receive(.ack(version: 4, nonce: next[0].push.nonce), on: 1, current: version(4), now: "t2")
    #expect(registry.entries["edge-1"]?.session.lastRefusal == nil)
    #expect(registry.entries["edge-1"]?.session.refused[3] == "certificate missing")
}

@Test func staleAndOutOfOrderAnswersChangeNothing() {
    var registry = DataPlaneRegistry()
    registry.opened(1)
    #expect(registry.receive(.ack(version: 1, nonce: "x"), on: 1, current: version(1), now: "t").outcome == .outOfOrder)
    let push = registry.receive(.hello(node: "n", running: nil), on: 1, current: version(1), now: "t").push!
    #expect(registry.receive(.ack(version: 1, nonce: "other"), on: 1, current: version(1), now: "t").outcome == .stale)
    #expect(registry.receive(.nack(kept: nil, nonce: "other", detail: "d"), on: 1, current: version(1), now: "t")
        .outcome == .stale)
    #expect(registry.receive(.ack(version: 2, nonce: push.nonce), on: 1, current: version(1), now: "t").outcome
        == .stale)  // the right nonce with the wrong version
    #expect(registry.entries["n"]?.session.running == nil)
    #expect(registry.receive(.ack(version: 1, nonce: push.nonce), on: 1, current: version(1), now: "t").outcome
        == .accepted(version: 1))
}

@Test func aVersionNumberOfAnotherStoreIsNotTakenForTheOneTheDataPlaneRuns() {
    // The control plane's store was made anew (or the data plane moved): its version 4 is another document.
    var registry = DataPlaneRegistry(store: "new-store")
    registry.opened(1)
    let push = registry.receive(.hello(node: "edge-1", running: 4, store: "old-store"), on: 1, current: version(4),
        now: "t0").push
    #expect(push?.version == 4 && push?.store == "new-store")
    _ = registry.receive(.ack(version: 4, nonce: push!.nonce), on: 1, current: version(4), now: "t1")
    #expect(registry.offer(version(4)).isEmpty)
    // The data plane side: the same number from another store is applied, not acknowledged as served.
    var link = ControlPlaneLink(node: "edge-1", running: 4, runningStore: "old-store")
    _ = link.handle(.start)
    #expect(link.handle(.connected) == [.send(.hello(node: "edge-1", running: 4, store: "old-store"))])
    let foreign = SnapshotPush(version: 4, nonce: "n", document: [], store: "new-store")
    #expect(link.handle(.received(foreign)) == [.apply(foreign)])
    _ = link.handle(.applied(nonce: "n"))
    #expect(link.runningStore == "new-store")
}

@Test func aRefusalSurvivesTheDataPlanesReconnect() {
    var registry = DataPlaneRegistry()
    registry.opened(1)
    let push = registry.receive(.hello(node: "edge-1", running: 2), on: 1, current: version(3), now: "t0").push!
    _ = registry.receive(.nack(kept: 2, nonce: push.nonce, detail: "no"), on: 1, current: version(3), now: "t1")
    registry.closed(1, now: "t2")
    registry.opened(2)
    let again = registry.receive(.hello(node: "edge-1", running: 2), on: 2, current: version(3), now: "t3")
    #expect(again.push == nil)  // version 3 is still refused there
    #expect(registry.entries["edge-1"]?.session.lastRefusal?.version == 3)
    // A second live stream with the same node replaces the first, which the caller closes.
    registry.opened(3)
    let replacing = registry.receive(.hello(node: "edge-1", running: 2), on: 3, current: version(3), now: "t4")
    #expect(replacing.replaced == 2)
}

@Test func refusalsSharedByReplicasHoldHereAndARetryThereIsOneHere() throws {
    // What edge-1 refused at another replica, as the store has it.
    let shared = DataPlaneRefusals(refused: [3: "cannot read ca.pem"],
        last: DataPlaneSession.Refusal(version: 3, detail: "cannot read ca.pem", at: "t0"))
    let read = DataPlaneRefusals.read(try JSONTree.parse(shared.tree.serialized()))
    #expect(read == shared)
    #expect(DataPlaneRefusals.read(.object(["refused": .object(["x": .string("y")])])) == nil)
    var registry = DataPlaneRegistry(store: "s")
    // Known from the store before it streams here: listed, not connected.
    registry.adoptRefusals(shared, of: "edge-1", now: "t1")
    #expect(registry.entries["edge-1"]?.stream == nil && registry.entries["edge-1"]?.session.refused == [3: "cannot read ca.pem"])
    registry.adoptRefusals(DataPlaneRefusals(), of: "edge-2", now: "t1")
    #expect(registry.entries["edge-2"] == nil)
    // It moves here: version 3 is not offered, and the refusal stays listed as it was heard.
    registry.opened(1)
    let hello = registry.receive(.hello(node: "edge-1", running: 2, store: "s"), on: 1, current: version(3), now: "t2")
    #expect(hello.push == nil)
    #expect(registry.entries["edge-1"]?.session.lastRefusal?.at == "t0")
    // A retry asked at another replica empties the store's record: taken here, version 3 is offered again.
    registry.adoptRefusals(DataPlaneRefusals(), of: "edge-1", now: "t3")
    #expect(registry.offer(version(3)).map(\.push.version) == [3])
}

@Test func aRestartedDataPlaneReplacesItsOldStreamAndAClosedOneStaysListed() {
    var registry = DataPlaneRegistry()
    registry.opened(1)
    _ = registry.receive(.hello(node: "edge-1", running: nil), on: 1, current: version(1), now: "t0")
    registry.opened(2)
    _ = registry.receive(.hello(node: "edge-1", running: nil), on: 2, current: version(1), now: "t1")
    #expect(registry.entries["edge-1"]?.stream == 2)
    #expect(registry.offer(version(2)).isEmpty)  // stream 2's push of version 1 is still outstanding
    registry.closed(1, now: "t2")  // the old stream: nothing about the data plane changes
    #expect(registry.entries["edge-1"]?.stream == 2)
    registry.closed(2, now: "t3")
    #expect(registry.entries["edge-1"]?.stream == nil && registry.entries["edge-1"]?.since == "t3")
    #expect(registry.offer(version(3)).isEmpty)
}

// MARK: - The data plane's link

private func push(_ version: Int, _ nonce: String) -> SnapshotPush {
    SnapshotPush(version: version, nonce: nonce, document: Array("{\"routes\":[]}".utf8))
}

@Test func theLinkSaysHelloAppliesAcknowledgesAndPersists() {
    var link = ControlPlaneLink(node: "edge-1", running: 3)
    #expect(link.handle(.start) == [.connect])
    #expect(link.handle(.connected) == [.send(.hello(node: "edge-1", running: 3))])
    #expect(link.handle(.received(push(4, "a"))) == [.apply(push(4, "a"))])
    // Two more arrive while it applies: only the newest waits.
    #expect(link.handle(.received(push(5, "b"))).isEmpty)
    #expect(link.handle(.received(push(6, "c"))).isEmpty)
    #expect(link.handle(.applied(nonce: "a")) == [
        .persist(version: 4, document: push(4, "a").document, store: ""), .send(.ack(version: 4, nonce: "a")),
        .apply(push(6, "c")),
    ])
    #expect(link.handle(.applyRefused(nonce: "c", detail: "bind failed")) == [
        .send(.nack(kept: 4, nonce: "c", detail: "bind failed")),
    ])
    #expect(link.running == 4 && link.lastRefusal?.version == 6)
    // The version already served is acknowledged without a reload.
    #expect(link.handle(.received(push(4, "d"))) == [.send(.ack(version: 4, nonce: "d"))])
    // An answer for a push that is not being applied is ignored.
    #expect(link.handle(.applied(nonce: "zzz")).isEmpty)
}

@Test func aLostStreamBacksOffWithJitterAndAnApplyItLeftIsNotAnsweredOnTheNextStream() {
    var link = ControlPlaneLink(node: "n", running: nil, initialBackoff: .seconds(1), maximumBackoff: .seconds(8))
    _ = link.handle(.start)
    #expect(link.handle(.connectFailed(reason: "refused", jitter: 0)) == [.scheduleReconnect(after: .milliseconds(500))])
    #expect(link.handle(.timerFired) == [.connect])
    #expect(link.handle(.connectFailed(reason: "refused", jitter: 1)) == [.scheduleReconnect(after: .seconds(2))])
    _ = link.handle(.timerFired)
    #expect(link.handle(.connectFailed(reason: "refused", jitter: 0.5)) == [.scheduleReconnect(after: .seconds(3))])
    for _ in 0..<10 {
        _ = link.handle(.timerFired)
        _ = link.handle(.connectFailed(reason: "refused", jitter: 1))
    }
    #expect(link.backoff(attempt: 50, jitter: 1) == .seconds(8))  // capped
    _ = link.handle(.timerFired)
    _ = link.handle(.connected)
    #expect(link.handle(.received(push(1, "a"))) == [.apply(push(1, "a"))])
    // Delivering a push proved the stream: the next loss starts from the first backoff.
    #expect(link.handle(.streamLost(reason: "reset", jitter: 0)) == [.scheduleReconnect(after: .milliseconds(500))])
    _ = link.handle(.timerFired)
    _ = link.handle(.connected)
    // The apply from the old stream finishes: kept, but its answer belongs to a stream that is gone.
    #expect(link.handle(.applied(nonce: "a")) == [.persist(version: 1, document: push(1, "a").document, store: "")])
    #expect(link.running == 1)
    // A stream that stays open resets the backoff even when no push comes (the data plane is up to date).
    _ = link.handle(.streamLost(reason: "reset", jitter: 0))
    _ = link.handle(.timerFired)
    _ = link.handle(.connectFailed(reason: "refused", jitter: 0))  // attempt 2 now
    _ = link.handle(.timerFired)
    _ = link.handle(.connected)
    #expect(link.handle(.streamStable).isEmpty)
    #expect(link.handle(.streamLost(reason: "reset", jitter: 0)) == [.scheduleReconnect(after: .milliseconds(500))])
    _ = link.handle(.timerFired)
    _ = link.handle(.connected)
    #expect(link.handle(.stop) == [.closeStream])
    #expect(link.handle(.received(push(2, "b"))).isEmpty)
}
