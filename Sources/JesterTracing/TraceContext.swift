// SPDX-License-Identifier: Apache-2.0
/// The `trace-flags` of `traceparent` (W3C Trace Context §3.2.2.5).
public struct TraceFlags: OptionSet, Sendable, Hashable {
    public var rawValue: UInt8

    public init(rawValue: UInt8) {
        self.rawValue = rawValue
    }

    /// The caller recorded (or may have recorded) its span: every hop that honours its parent records too.
    public static let sampled = TraceFlags(rawValue: 0x01)
    /// The trace id's right-most 7 bytes are random (Trace Context Level 2 §3.2.2.5.2), which Jester's are.
    public static let random = TraceFlags(rawValue: 0x02)
    /// The flags this version knows; others are dropped rather than forwarded with a meaning Jester cannot vouch
    /// for.
    static let known: TraceFlags = [.sampled, .random]
}

/// One hop's trace context: the trace, the span that is the parent of the next hop's, and its flags and
/// vendors' state, as `traceparent` and `tracestate` carry them (https://www.w3.org/TR/trace-context/).
///
/// Parsed from a request's fields (`init(traceparent:tracestate:)`, nil for an absent or invalid one: then the
/// request starts a trace of its own, and the invalid `tracestate` goes with it, §3.3.1), and written for the
/// upstream request with the span id of the attempt (`withTraceparent`).
public struct TraceContext: Sendable, Hashable {
    public var traceID: TraceID
    /// The span this context names: the caller's span when parsed (the header's `parent-id`), Jester's own
    /// span for the upstream request.
    public var spanID: SpanID
    public var flags: TraceFlags
    public var traceState: TraceState

    public init(traceID: TraceID, spanID: SpanID, flags: TraceFlags, traceState: TraceState = .empty) {
        self.traceID = traceID
        self.spanID = spanID
        self.flags = flags
        self.traceState = traceState
    }

    /// Whether the caller's flags ask for recording.
    public var isSampled: Bool { flags.contains(.sampled) }

    /// The length of a version-00 `traceparent`.
    public static let traceparentLength = 55

    /// Parses a request's `traceparent` (one field; a request with two gives nil for its own reason, as
    /// §3.2.1 says a vendor fails then) and `tracestate` fields. Nil when there is no valid parent: the request
    /// then starts a new trace.
    public init?<Parent: Collection, State: Collection>(traceparent: Parent, tracestate: [State])
    where Parent.Element == UInt8, State.Element == UInt8 {
        let parsed =
            traceparent.withContiguousStorageIfAvailable(Self.parseTraceparent)
            ?? Array(traceparent).withUnsafeBufferPointer(Self.parseTraceparent)
        guard let parsed else { return nil }
        self.init(
            traceID: parsed.traceID, spanID: parsed.spanID, flags: parsed.flags,
            traceState: tracestate.isEmpty ? .empty : TraceState(fields: tracestate))
    }

    /// Parses header values given as strings (tests, configuration).
    public init?(traceparent: String, tracestate: String? = nil) {
        self.init(traceparent: Array(traceparent.utf8), tracestate: tracestate.map { [Array($0.utf8)] } ?? [])
    }

    /// The context of a child span: the same trace, flags and state, another span id.
    public func child(spanID: SpanID) -> TraceContext {
        TraceContext(traceID: traceID, spanID: spanID, flags: flags, traceState: traceState)
    }

    /// `traceparent`'s grammar (§3.2.2) with the rules for versions Jester does not know (§3.2.4): at least 55
    /// characters, lowercase hex, ids not all zero, version `ff` invalid, and a version-00 header exactly 55
    /// long. A later version is read for its ids and sampled flag, and may go on after a `-`.
    static func parseTraceparent(
        _ raw: UnsafeBufferPointer<UInt8>
    ) -> (traceID: TraceID, spanID: SpanID, flags: TraceFlags)? {
        // Optional whitespace around a field value is not part of it (RFC 9110 §5.5).
        var start = 0
        var end = raw.count
        while start < end, raw[start] == 0x20 || raw[start] == 0x09 { start += 1 }
        while end > start, raw[end - 1] == 0x20 || raw[end - 1] == 0x09 { end -= 1 }
        let field = UnsafeBufferPointer(rebasing: raw[start..<end])
        let dash = UInt8(ascii: "-")
        guard field.count >= traceparentLength,
            let versionHigh = Hex.value(field[0]), let versionLow = Hex.value(field[1]), field[2] == dash
        else { return nil }
        let version = versionHigh << 4 | versionLow
        guard version != 0xFF else { return nil }
        if version == 0 {
            guard field.count == traceparentLength else { return nil }
        } else {
            guard field.count == traceparentLength || field[traceparentLength] == dash else { return nil }
        }
        guard let high = Hex.word(field, from: 3), let low = Hex.word(field, from: 19), field[35] == dash,
            let parent = Hex.word(field, from: 36), field[52] == dash,
            let flagsHigh = Hex.value(field[53]), let flagsLow = Hex.value(field[54])
        else { return nil }
        let traceID = TraceID(high: high, low: low)
        guard traceID.isValid, parent != 0 else { return nil }
        var flags = TraceFlags(rawValue: UInt8(flagsHigh << 4 | flagsLow)).intersection(.known)
        // §3.2.4: of a later version's flags only the sampled bit is known to mean what it means in 00.
        if version != 0 { flags = flags.intersection(.sampled) }
        return (traceID, SpanID(parent), flags)
    }

    /// Calls `body` with this context as a version-00 `traceparent` value (55 bytes), without allocating.
    public func withTraceparent<Result>(_ body: (UnsafeRawBufferPointer) -> Result) -> Result {
        var result: Result?
        withTraceparentBytes { result = body($0) }
        return result!
    }

    /// `withTraceparent` for the request path: not generic, so a caller in another module (every upstream
    /// request of a traced instance carries one) runs specialized code, not the generic path with its metadata
    /// lookups (`perf`: `swift_getGenericMetadata` per request).
    public func withTraceparentBytes(_ body: (UnsafeRawBufferPointer) -> Void) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: Self.traceparentLength) { buffer in
            var index = 0
            func put(_ byte: UInt8) {
                buffer[index] = byte
                index += 1
            }
            func put(_ word: UInt64, digits: Int) {
                for nibble in 0..<digits {
                    let value = UInt8(truncatingIfNeeded: word >> UInt64((digits - 1 - nibble) * 4)) & 0xF
                    put(value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "a") - 10 + value)
                }
            }
            put(UInt8(ascii: "0"))
            put(UInt8(ascii: "0"))
            put(UInt8(ascii: "-"))
            put(traceID.high, digits: 16)
            put(traceID.low, digits: 16)
            put(UInt8(ascii: "-"))
            put(spanID.value, digits: 16)
            put(UInt8(ascii: "-"))
            put(UInt64(flags.rawValue), digits: 2)
            body(UnsafeRawBufferPointer(buffer))
        }
    }

    /// The `traceparent` value as a string (tests, logs).
    public var traceparent: String {
        withTraceparent { String(decoding: $0, as: UTF8.self) }
    }
}
