// SPDX-License-Identifier: Apache-2.0
import JesterTracing
import Testing

// Parent-based sampling with a ratio for roots, decided from the trace id as OpenTelemetry's TraceIdRatioBased
// does (the last 8 bytes shifted right once, below ratio × 2⁶³), so every hop with the same ratio agrees.

private let sampledParent = TraceContext(traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")!
private let unsampledParent = TraceContext(traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")!

@Test func aValidParentDecides() {
    let none = TraceSampler(ratio: 0)
    let all = TraceSampler(ratio: 1)
    #expect(none.shouldSample(parent: sampledParent, traceID: sampledParent.traceID))
    #expect(!all.shouldSample(parent: unsampledParent, traceID: unsampledParent.traceID))
    // Not honouring parents, the ratio decides for every request.
    let ratioOnly = (
        none: TraceSampler(ratio: 0, honoursParent: false), all: TraceSampler(ratio: 1, honoursParent: false)
    )
    #expect(!ratioOnly.none.shouldSample(parent: sampledParent, traceID: sampledParent.traceID))
    #expect(ratioOnly.all.shouldSample(parent: unsampledParent, traceID: unsampledParent.traceID))
}

@Test func theRatioDecidesRootsAtTheExactBoundary() {
    let half = TraceSampler(ratio: 0.5)  // bound 2⁶²
    #expect(half.isSampledByRatio(TraceID(high: 0, low: (1 << 63) - 2)))  // (2⁶³ - 2) >> 1 = 2⁶² - 1
    #expect(!half.isSampledByRatio(TraceID(high: 0, low: 1 << 63)))  // 2⁶³ >> 1 = 2⁶²
    #expect(half.isSampledByRatio(TraceID(high: .max, low: 1)))  // only the last 8 bytes count
    #expect(TraceSampler(ratio: 1).isSampledByRatio(TraceID(high: 0, low: .max)))
    #expect(!TraceSampler(ratio: 0).isSampledByRatio(TraceID(high: 0, low: 1)))
    #expect(TraceSampler.never.shouldSample(parent: nil, traceID: TraceID(high: 0, low: 0)) == false)
}

@Test func theRatioIsDeterministicAndRoughlyRight() {
    var ids = TraceIDGenerator(seed: 42)
    let quarter = TraceSampler(ratio: 0.25)
    let again = TraceSampler(ratio: 0.25)
    var sampled = 0
    for _ in 0..<100_000 {
        let id = ids.traceID()
        let decision = quarter.shouldSample(parent: nil, traceID: id)
        #expect(decision == again.shouldSample(parent: nil, traceID: id))
        if decision { sampled += 1 }
    }
    #expect((24_000...26_000).contains(sampled))
}

@Test func outOfRangeRatiosAreClamped() {
    #expect(TraceSampler(ratio: -1).ratio == 0 && TraceSampler(ratio: 7).ratio == 1)
    #expect(TraceSampler(ratio: .nan).ratio == 0)
    #expect(TraceSampler(ratio: 7).isSampledByRatio(TraceID(high: 0, low: .max)))
}
