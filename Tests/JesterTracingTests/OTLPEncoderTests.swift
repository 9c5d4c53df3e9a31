// SPDX-License-Identifier: Apache-2.0
import JesterTracing
import Testing

// The hand-written protobuf against opentelemetry-proto's own encoding of the same request (Python's
// ExportTraceServiceRequest.SerializeToString(), opentelemetry-proto 1.25.0): byte for byte, so a field number,
// wire type or default left out wrongly fails here. The live tier decodes real exports with those classes too.

private func hex(_ text: String) -> [UInt8] {
    var bytes: [UInt8] = []
    var index = text.startIndex
    while index < text.endIndex {
        let next = text.index(index, offsetBy: 2)
        bytes.append(UInt8(text[index..<next], radix: 16)!)
        index = next
    }
    return bytes
}

private let expected = hex(
    "0ad8020a540a180a0c736572766963652e6e616d6512080a066a65737465720a1c0a13736572766963652e696e7374616e63652e6964"
        + "12050a03692d310a1a0a0f736572766963652e76657273696f6e12070a05312e322e3312ff010a0f0a066a65737465721205312e"
        + "322e3312eb010a100af7651916cd43dd8448eb211c80319c1208b7ad6b71692033311a06726f6a6f3d31220800f067aa0ba902b7"
        + "2a0347455430023900002a36fe9c97174160e34036fe9c97174a1c0a13687474702e726571756573742e6d6574686f6412050a03"
        + "4745544a200a19687474702e726573706f6e73652e7374617475735f636f6465120318f7034a0e0a086a65737465722e78120210"
        + "004a0e0a0164120921000000000000e03f4a120a036e6567120b18ffffffffffffffffff015a1f090a002a36fe9c971712057265"
        + "7472791a0d0a07617474656d7074120218027a0712033530331802850101030000")

@Test func anExportRequestIsEncodedAsOpenTelemetrysOwnClassesEncodeIt() throws {
    let start: UInt64 = 1_700_000_000_000_000_000
    let span = Span(
        traceID: try #require(TraceID(hex: "0af7651916cd43dd8448eb211c80319c")),
        spanID: try #require(SpanID(hex: "b7ad6b7169203331")),
        parentSpanID: try #require(SpanID(hex: "00f067aa0ba902b7")), parentIsRemote: true, flags: .sampled,
        traceState: TraceState("rojo=1"), name: "GET", kind: .server, startNanos: start, endNanos: start + 1_500_000,
        status: .error("503"),
        attributes: [
            SpanAttribute(SemanticKey.httpRequestMethod, "GET"), SpanAttribute(SemanticKey.httpResponseStatusCode, 503),
            SpanAttribute("jester.x", .bool(false)), SpanAttribute("d", .double(0.5)), SpanAttribute("neg", -1),
        ],
        events: [SpanEvent(name: "retry", timeNanos: start + 10, attributes: [SpanAttribute("attempt", 2)])])
    let body = OTLPEncoder.exportRequest([span], resource: .jester(instanceID: "i-1", version: "1.2.3"))
    #expect(body == expected)
}

@Test func varintsAndFixedFieldsFollowTheWireFormat() {
    var writer = ProtobufWriter()
    writer.varint(1, 150)  // the protobuf guide's example: 08 96 01
    writer.varint(2, 0)  // a default: left out
    writer.fixed32(3, 1)
    writer.string(4, "")  // a default: left out
    writer.string(5, "", always: true)  // a oneof member: kept
    writer.message(6) { _ in }  // a message: present even empty
    #expect(writer.bytes == [0x08, 0x96, 0x01, 0x1D, 0x01, 0x00, 0x00, 0x00, 0x2A, 0x00, 0x32, 0x00])
}

@Test func aRootSpanHasNoParentAndNoRemoteFlags() throws {
    let span = Span(
        traceID: TraceID(high: 1, low: 2), spanID: SpanID(3), parentSpanID: nil, name: "GET", kind: .server,
        startNanos: 1, endNanos: 2)
    var writer = ProtobufWriter()
    OTLPEncoder.encode(span, into: &writer)
    // Field 4 (parent_span_id, tag 0x22) absent; flags (field 16, tag 0x85 0x01) just "sampled".
    #expect(!writer.bytes.contains(0x22))
    #expect(writer.bytes.suffix(6) == [0x85, 0x01, 0x01, 0x00, 0x00, 0x00])
}
