// SPDX-License-Identifier: Apache-2.0
/// Decides whether a request's spans are recorded: parent-based, with a ratio for the traces Jester starts.
///
/// The ratio is decided from the trace id alone, as OpenTelemetry's `TraceIdRatioBased` does (the last 8 bytes
/// of the id, shifted right once, against `ratio × 2⁶³`), so every hop with the same ratio that sees the same
/// trace agrees without talking, and a trace is never half recorded by Jester's own workers. A request whose
/// valid `traceparent` says sampled or not gets what its caller decided (OpenTelemetry's `ParentBased`
/// defaults): the caller started the trace and knows whether anyone will record the rest.
public struct TraceSampler: Sendable, Hashable {
    /// The share of new traces recorded, 0 (none) to 1 (all).
    public let ratio: Double
    /// Whether a valid parent's sampled flag decides (true), or the ratio decides for every request.
    public let honoursParent: Bool
    /// Trace ids whose shifted last 8 bytes are below this are sampled.
    let upperBound: UInt64

    /// `ratio` is clamped to 0...1 (configuration validates it; a sampler never traps on a request).
    public init(ratio: Double, honoursParent: Bool = true) {
        let clamped = ratio.isNaN ? 0 : min(max(ratio, 0), 1)
        self.ratio = clamped
        self.honoursParent = honoursParent
        // 2⁶³ itself does not fit below the shifted id's maximum 2⁶³ - 1 + 1, so 1 is "always" by its own test.
        upperBound = clamped >= 1 ? UInt64.max : UInt64(clamped * 9_223_372_036_854_775_808.0)
    }

    /// Records nothing (tracing off, or a ratio of 0 without sampled parents).
    public static let never = TraceSampler(ratio: 0, honoursParent: false)

    /// Whether a request with this parent (nil: none, or an invalid one) and this trace id is recorded.
    public func shouldSample(parent: TraceContext?, traceID: TraceID) -> Bool {
        if honoursParent, let parent { return parent.isSampled }
        return isSampledByRatio(traceID)
    }

    /// The ratio's decision for a trace id (deterministic: the same id always gets the same answer).
    public func isSampledByRatio(_ traceID: TraceID) -> Bool {
        if upperBound == UInt64.max { return true }
        return traceID.low >> 1 < upperBound
    }
}
