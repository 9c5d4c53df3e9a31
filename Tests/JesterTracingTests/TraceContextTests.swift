// SPDX-License-Identifier: Apache-2.0
import JesterTracing
import Testing

// W3C Trace Context (https://www.w3.org/TR/trace-context/): the spec's examples and the edge cases of §3.2
// (traceparent) and §3.3 (tracestate).

private let example = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

@Test func theSpecsExampleParses() throws {
    let context = try #require(TraceContext(traceparent: example))
    #expect(context.traceID == TraceID(hex: "0af7651916cd43dd8448eb211c80319c"))
    #expect(context.spanID == SpanID(hex: "b7ad6b7169203331"))
    #expect(context.isSampled && context.flags == .sampled)
    #expect(context.traceparent == example)
    let unsampled = try #require(TraceContext(traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"))
    #expect(!unsampled.isSampled)
}

@Test(arguments: [
    ("", "empty"),
    ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0", "one flag digit short"),
    ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-", "version 00 longer than 55"),
    ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra", "version 00 with a suffix"),
    ("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", "uppercase trace id"),
    ("00-0af7651916cd43dd8448eb211c80319c-B7AD6B7169203331-01", "uppercase parent id"),
    ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0A", "uppercase flags"),
    ("00-00000000000000000000000000000000-b7ad6b7169203331-01", "all-zero trace id"),
    ("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", "all-zero parent id"),
    ("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "version ff"),
    ("0g-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "version not hex"),
    ("00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "no dash after the version"),
    ("00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01", "no dash after the trace id"),
    ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331_01", "no dash after the parent id"),
    ("00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01xx", "short trace id"),
    ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-0100", "short parent id"),
    ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0x", "flags not hex"),
    ("00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01", "trace id not hex"),
    ("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01what", "later version: no dash after flags"),
    ("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331", "later version shorter than 55"),
])
func invalidTraceparentsStartANewTrace(value: String, why: String) {
    #expect(TraceContext(traceparent: value, tracestate: "rojo=1") == nil, "\(why)")
}

@Test func laterVersionsAreReadForTheirIdsAndSampledFlag() throws {
    // §3.2.4: a later version at least 55 long, ending there or followed by '-'.
    let longer = "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-the-future-will-be-like"
    let context = try #require(TraceContext(traceparent: longer))
    #expect(context.traceID == TraceID(hex: "0af7651916cd43dd8448eb211c80319c") && context.isSampled)
    // Forwarded as version 00, which Jester speaks.
    #expect(context.traceparent == example)
    let exact = try #require(TraceContext(traceparent: "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03"))
    // Of a later version's flags only "sampled" is known to mean the same.
    #expect(exact.flags == .sampled)
    let unsampled = try #require(TraceContext(traceparent: "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-08"))
    #expect(unsampled.flags == [])
}

@Test func flagsOfVersion00KeepWhatJesterKnows() throws {
    let random = try #require(TraceContext(traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03"))
    #expect(random.flags == [.sampled, .random])
    let unknown = try #require(TraceContext(traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-ff"))
    #expect(unknown.flags == [.sampled, .random] && unknown.traceparent.hasSuffix("-03"))
}

@Test func whitespaceAroundTheFieldIsNotPartOfIt() {
    #expect(TraceContext(traceparent: " \t" + example + " ")?.traceparent == example)
}

@Test func aNonContiguousCollectionParsesToo() throws {
    let lazy = Array(example.utf8).lazy.map { $0 }
    let context = try #require(TraceContext(traceparent: lazy, tracestate: [Array("a=1".utf8)]))
    #expect(context.traceparent == example && context.traceState.value == "a=1")
}

@Test func aChildKeepsTheTraceAndNamesItsOwnSpan() throws {
    let parent = try #require(TraceContext(traceparent: example, tracestate: "rojo=00f067aa0ba902b7"))
    let child = parent.child(spanID: SpanID(0x1122_3344_5566_7788))
    #expect(child.traceparent == "00-0af7651916cd43dd8448eb211c80319c-1122334455667788-01")
    #expect(child.traceState == parent.traceState)
}

@Test func idsRoundTripThroughHexAndRawBytes() throws {
    let trace = try #require(TraceID(hex: "0af7651916cd43dd8448eb211c80319c"))
    #expect(trace.description == "0af7651916cd43dd8448eb211c80319c")
    #expect(trace.bytes == [
        0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c,
    ])
    #expect(SpanID(hex: "b7ad6b7169203331")?.bytes == [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31])
    #expect(TraceID(hex: "00000000000000000000000000000000") == nil && SpanID(hex: "0000000000000000") == nil)
    #expect(TraceID(hex: "0af7651916cd43dd8448eb211c80319") == nil && SpanID(hex: "b7ad6b716920333X") == nil)
}

@Test func generatedIdsAreValidAndDistinct() {
    var ids = TraceIDGenerator()
    var traces = Set<TraceID>()
    var spans = Set<SpanID>()
    for _ in 0..<10_000 {
        let trace = ids.traceID()
        let span = ids.spanID()
        #expect(trace.isValid && span.isValid)
        traces.insert(trace)
        spans.insert(span)
    }
    #expect(traces.count == 10_000 && spans.count == 10_000)
    var first = TraceIDGenerator(seed: 7)
    var second = TraceIDGenerator(seed: 7)
    #expect(first.traceID() == second.traceID())
}

// MARK: tracestate

@Test func theSpecsTracestateExamplesPassUnchanged() {
    #expect(TraceState("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE").value == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
    let members = TraceState("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE").members
    #expect(members.map(\.key) == ["rojo", "congo"] && members.map(\.value) == ["00f067aa0ba902b7", "t61rcWkgMzE"])
    // Multi-tenant keys (tenant@system), and values with inner spaces.
    #expect(TraceState("fw529a3039@dt=FW4;0;0;0;0;0;0;1b,1a-2f@x*=v a l").members.count == 2)
}

@Test func optionalWhitespaceAndEmptyMembersAreDropped() {
    // A space after a value is the list's optional whitespace, not the value's (which may not end in one).
    #expect(TraceState("rojo=a ").value == "rojo=a")
    #expect(TraceState(" rojo=1 ,\t,, congo=2\t").value == "rojo=1,congo=2")
    #expect(TraceState("").isEmpty && TraceState(" , ").isEmpty)
}

@Test func severalFieldsAreOneList() {
    let state = TraceState(fields: [Array("rojo=1".utf8), Array("congo=2".utf8)])
    #expect(state.value == "rojo=1,congo=2")
}

@Test(arguments: [
    ("Rojo=1", "uppercase key"),
    ("1rojo=1", "simple key starting with a digit"),
    ("rojo", "no '='"),
    ("rojo=", "empty value"),
    ("rojo=a\u{1}b", "control character in the value"),
    ("rojo=a=b", "'=' in the value"),
    ("rojo=\u{7F}", "DEL in the value"),
    ("rojo=é", "non-ASCII value"),
    ("rojo=1,rojo=2", "duplicate key"),
    ("ro jo=1", "space in the key"),
    ("t@=1", "empty system id"),
    ("@s=1", "empty tenant id"),
    ("t@1s=1", "system id starting with a digit"),
    ("t@abcdefghijklmno=1", "system id over 14 characters"),
    ("rojo=1,congo", "one bad member spoils the list"),
])
func invalidTracestatesAreDroppedWhole(value: String, why: String) {
    #expect(TraceState(value).isEmpty, "\(why)")
}

@Test func keysAndValuesAtTheirLimits() {
    let longestKey = "a" + String(repeating: "b", count: 255)
    #expect(!TraceState(longestKey + "=1").isEmpty && TraceState(longestKey + "b=1").isEmpty)
    let longestValue = String(repeating: "v", count: 256)
    #expect(!TraceState("k=" + longestValue).isEmpty && TraceState("k=v" + longestValue).isEmpty)
    let tenant = "t" + String(repeating: "0", count: 240)
    #expect(!TraceState(tenant + "@s=1").isEmpty && TraceState(tenant + "0@s=1").isEmpty)
}

@Test func thirtyTwoMembersPassAndThirtyThreeAreDropped() {
    let members = (0..<33).map { "k\($0)=\($0)" }
    #expect(TraceState(members.prefix(32).joined(separator: ",")).members.count == 32)
    #expect(TraceState(members.joined(separator: ",")).isEmpty)
}

@Test func aLongListLosesLongMembersFirstThenFromTheEnd() {
    // §3.3.1.5: over 512 characters, members over 128 go first, then members from the end.
    let long = "long=" + String(repeating: "x", count: 200)
    let members = (0..<20).map { "k\($0)=" + String(repeating: "v", count: 20) }  // 24 characters each
    let state = TraceState(([long] + members).joined(separator: ","))
    #expect(!state.members.contains { $0.key == "long" })
    #expect(state.bytes.count <= TraceState.maxLength)
    #expect(state.members.map(\.key) == (0..<20).map { "k\($0)" }.prefix(state.members.count).map { $0 })
    #expect(state.members.count == 20)  // 20 × 24 + 19 commas = 499: all fit once "long" is gone
    let many = (0..<30).map { "k\($0)=" + String(repeating: "v", count: 20) }
    let cut = TraceState(many.joined(separator: ","))
    #expect(cut.bytes.count <= TraceState.maxLength && cut.members.first?.key == "k0" && cut.members.count == 20)
}

@Test func anInvalidTraceparentTakesItsTracestateWithIt() {
    #expect(TraceContext(traceparent: "garbage", tracestate: "rojo=1") == nil)
    #expect(TraceContext(traceparent: example, tracestate: "Bad=1")?.traceState.isEmpty == true)
}
