// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterControl
import Testing

@Test func roundTripsFramesSplitAnywhere() throws {
    let messages: [ControlMessage] = [
        .status, .drain(timeoutSeconds: 3), .workerStats(WorkerStats(connections: 2, requests: 9)),
    ]
    let bytes = messages.flatMap { ControlFrameCodec.encode($0) }
    for split in [1, 3, 4, 10, bytes.count - 1] {
        var codec = ControlFrameCodec()
        var received: [ControlMessage] = []
        codec.append(bytes[0..<split])
        while let message = try codec.next() { received.append(message) }
        codec.append(bytes[split...])
        while let message = try codec.next() { received.append(message) }
        #expect(received == messages)
    }
}

@Test func refusesOtherVersionsAndOversizedFrames() {
    var codec = ControlFrameCodec()
    let payload = Array(#"{"version":99,"message":{"status":{}}}"#.utf8)
    codec.append([0, 0, 0, UInt8(payload.count)] + payload)
    #expect(throws: ControlFrameCodec.DecodingError.versionMismatch(99)) { try codec.next() }
    var large = ControlFrameCodec()
    large.append([0x7F, 0, 0, 0])
    #expect(throws: ControlFrameCodec.DecodingError.frameTooLarge(0x7F00_0000)) { try large.next() }
}

// MARK: Compatibility across a binary upgrade

/// Frames as a worker or jesterctl from the release before correlation ids writes and reads them: the envelope
/// had no `id`. A binary upgrade puts such an old worker beside the new master (until its generation drains),
/// so both directions must keep working; the JSON of the messages they exchange is frozen here too.
private let legacyFrames: [(json: String, message: ControlMessage)] = [
    (#"{"workerReady":{"pid":42}}"#, .workerReady(pid: 42)),
    (#"{"workerDraining":{"connections":3}}"#, .workerDraining(connections: 3)),
    (#"{"workerDrained":{}}"#, .workerDrained()),
    (#"{"stop":{"fast":true}}"#, .stop(fast: true)),
    (#"{"failure":{"message":"no upstream"}}"#, .failure(message: "no upstream")),
    (#"{"setTargetAdmin":{"upstream":"app","target":"10.0.0.7:80","state":"drain"}}"#,
     .setTargetAdmin(upstream: "app", target: "10.0.0.7:80", state: "drain")),
    (#"{"workerStats":{"_0":{"connections":2,"requests":9,"bytesIn":0,"bytesOut":0,"errors":0}}}"#,
     .workerStats(WorkerStats(connections: 2, requests: 9))),
    (#"{"beginDrain":{"timeoutSeconds":5}}"#, .beginDrain(timeoutSeconds: 5)),
    (#"{"resolvedAddresses":{"_0":{"app.internal":"10.0.0.7"}}}"#, .resolvedAddresses(["app.internal": "10.0.0.7"])),
    (#"{"status":{}}"#, .status),
    (#"{"awaitUpgrade":{"untilDrained":true}}"#, .awaitUpgrade(untilDrained: true)),
]

/// What an old peer decodes: the envelope without `id`.
private struct LegacyEnvelope: Decodable {
    var version: Int
    var message: ControlMessage
}

private func frame(_ json: String) -> [UInt8] {
    let payload = Array(json.utf8)
    let length = UInt32(payload.count)
    return [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)] + payload
}

@Test func framesFromAPeerWithoutCorrelationIDsAreRead() throws {
    for (json, message) in legacyFrames {
        var codec = ControlFrameCodec()
        codec.append(frame(#"{"version":1,"message":"# + json + "}"))
        let envelope = try #require(try codec.nextEnvelope())
        #expect(envelope.message == message && envelope.id == nil, "\(json)")
    }
}

@Test func aPeerWithoutCorrelationIDsReadsNewFramesAndTheMessagesKeepTheirJSON() throws {
    for (json, message) in legacyFrames {
        let bytes = ControlFrameCodec.encode(message, id: 7)
        let payload = Data(bytes.dropFirst(4))
        let old = try JSONDecoder().decode(LegacyEnvelope.self, from: payload)
        #expect(old.version == 1 && old.message == message)
        // The message's JSON is what the old release wrote, key for key.
        let object = try JSONSerialization.jsonObject(with: payload) as? [String: Any]
        #expect(object?["id"] as? Int == 7)
        let written = try JSONSerialization.data(withJSONObject: object?["message"] as Any, options: .sortedKeys)
        let frozen = try JSONSerialization.data(
            withJSONObject: JSONSerialization.jsonObject(with: Data(json.utf8)), options: .sortedKeys)
        #expect(written == frozen, "\(json)")
    }
}

@Test func answersCarryTheRequestsCorrelationID() throws {
    var codec = ControlFrameCodec()
    codec.append(ControlFrameCodec.encode(.done(success: true, message: "ok"), id: 12))
    codec.append(ControlFrameCodec.encode(.status))
    #expect(try codec.nextEnvelope() == ControlEnvelope(.done(success: true, message: "ok"), id: 12))
    #expect(try codec.nextEnvelope()?.id == nil)
}

@Test func anAssignmentCarriesTheSharedTablesDescriptorsAndReadsWithoutThem() throws {
    var assignment = WorkerAssignment(
        slot: 1, generation: 3, configuration: Data("{}".utf8), listenerNames: ["main"], userID: nil, groupID: nil)
    assignment.connectionTableFD = 5
    assignment.connectionPartition = 2
    assignment.rateLimitTableFD = 6
    let decoded = try JSONDecoder().decode(WorkerAssignment.self, from: try JSONEncoder().encode(assignment))
    #expect(decoded.connectionTableFD == 5 && decoded.rateLimitTableFD == 6)
    // From a master of a version without the rate-limit table: the field is simply absent.
    let old = #"{"slot":0,"generation":1,"configuration":"e30=","listenerNames":[]}"#
    #expect(try JSONDecoder().decode(WorkerAssignment.self, from: Data(old.utf8)).rateLimitTableFD == nil)
}

@Test func keySetsTravelInTheAssignmentAndAsAMessage() throws {
    let set = FilterKeySet(filter: "auth", url: "https://idp.example/jwks", jwks: Data(#"{"keys":[]}"#.utf8))
    var codec = ControlFrameCodec()
    codec.append(ControlFrameCodec.encode(.keySet(set)))
    #expect(try codec.next() == .keySet(set))
    var assignment = WorkerAssignment(
        slot: 0, generation: 1, configuration: Data("{}".utf8), listenerNames: [], userID: nil, groupID: nil)
    assignment.keySets = [set]
    let decoded = try JSONDecoder().decode(WorkerAssignment.self, from: try JSONEncoder().encode(assignment))
    #expect(decoded.keySets == [set])
    // From a master of a version without fetched key sets: the field is absent.
    let old = #"{"slot":0,"generation":1,"configuration":"e30=","listenerNames":[]}"#
    #expect(try JSONDecoder().decode(WorkerAssignment.self, from: Data(old.utf8)).keySets == nil)
}
