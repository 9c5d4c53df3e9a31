// SPDX-License-Identifier: Apache-2.0
import JesterControl
import Testing

@Test func roundTripsFramesSplitAnywhere() throws {
    let messages: [ControlMessage] = [.status, .drain(timeoutSeconds: 3), .workerStats(WorkerStats(connections: 2, requests: 9))]
    let bytes = messages.flatMap(ControlFrameCodec.encode)
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
