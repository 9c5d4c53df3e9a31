// SPDX-License-Identifier: Apache-2.0
/// Who sends the spans: OTLP's `Resource` (its attributes) and the instrumentation scope.
public struct OTLPResource: Sendable, Hashable {
    public var attributes: [SpanAttribute]
    /// The instrumentation scope's name and version (the code that made the spans: Jester itself).
    public var scopeName: String
    public var scopeVersion: String

    public init(attributes: [SpanAttribute], scopeName: String = "jester", scopeVersion: String = "") {
        self.attributes = attributes
        self.scopeName = scopeName
        self.scopeVersion = scopeVersion
    }

    /// Jester's resource: `service.name` "jester", the instance (which process of which host: trace back ends
    /// tell workers apart by it) and the version.
    public static func jester(instanceID: String, version: String) -> OTLPResource {
        OTLPResource(
            attributes: [
                SpanAttribute(SemanticKey.serviceName, "jester"),
                SpanAttribute(SemanticKey.serviceInstanceID, instanceID),
                SpanAttribute(SemanticKey.serviceVersion, version),
            ], scopeName: "jester", scopeVersion: version)
    }
}

/// Encodes spans as an OTLP `ExportTraceServiceRequest` in protobuf (opentelemetry-proto 1.x,
/// `collector/trace/v1/trace_service.proto`), the body of an OTLP/HTTP export (`application/x-protobuf`).
///
/// By hand rather than with swift-protobuf: a dozen fields of seven messages, one pass with no reflection, and
/// no generated code or plugin in the build. The live tier decodes the result with opentelemetry-proto's own
/// classes, so a wrong field number or wire type fails a test.
public enum OTLPEncoder {
    /// The request body for `spans` from `resource` (one `ResourceSpans` with one `ScopeSpans`).
    public static func exportRequest(_ spans: [Span], resource: OTLPResource) -> [UInt8] {
        var scopeSpans = ProtobufWriter()
        scopeSpans.message(1) { scope in
            scope.string(1, resource.scopeName)
            scope.string(2, resource.scopeVersion)
        }
        for span in spans { scopeSpans.message(2) { encode(span, into: &$0) } }
        var resourceSpans = ProtobufWriter()
        resourceSpans.message(1) { resourceMessage in
            for attribute in resource.attributes { resourceMessage.message(1) { encode(attribute, into: &$0) } }
        }
        resourceSpans.bytesField(2, scopeSpans.bytes)
        var request = ProtobufWriter()
        request.bytesField(1, resourceSpans.bytes)
        return request.bytes
    }

    /// `trace.v1.Span`.
    public static func encode(_ span: Span, into writer: inout ProtobufWriter) {
        writer.bytesField(1, span.traceID.bytes)
        writer.bytesField(2, span.spanID.bytes)
        writer.string(3, span.traceState.value)
        if let parent = span.parentSpanID { writer.bytesField(4, parent.bytes) }
        writer.string(5, span.name)
        writer.varint(6, UInt64(span.kind.rawValue))
        writer.fixed64(7, span.startNanos)
        writer.fixed64(8, span.endNanos)
        for attribute in span.attributes { writer.message(9) { encode(attribute, into: &$0) } }
        for event in span.events {
            writer.message(11) { message in
                message.fixed64(1, event.timeNanos)
                message.string(2, event.name)
                for attribute in event.attributes { message.message(3) { encode(attribute, into: &$0) } }
            }
        }
        if span.status != .unset {
            writer.message(15) { status in
                if case .error(let message) = span.status { status.string(2, message) }
                status.varint(3, UInt64(span.status.code))
            }
        }
        // Span.flags: the W3C flags in bits 0-7, then "whether the parent is remote" is known (bit 8) and its
        // answer (bit 9).
        let remote: UInt32 = span.parentSpanID == nil ? 0 : 0x100 | (span.parentIsRemote ? 0x200 : 0)
        writer.fixed32(16, UInt32(span.flags.rawValue) | remote)
    }

    /// `common.v1.KeyValue` with its `AnyValue`.
    public static func encode(_ attribute: SpanAttribute, into writer: inout ProtobufWriter) {
        writer.string(1, attribute.key)
        writer.message(2) { value in
            switch attribute.value {
            case .string(let string): value.string(1, string, always: true)
            case .bool(let bool): value.varint(2, bool ? 1 : 0, always: true)
            case .int(let int): value.varint(3, UInt64(bitPattern: int), always: true)
            case .double(let double): value.fixed64(4, double.bitPattern, always: true)
            }
        }
    }
}

/// The protobuf wire format, as much as OTLP's messages need (https://protobuf.dev/programming-guides/encoding/):
/// varints, fixed 32 and 64-bit fields and length-delimited bytes. Proto3 leaves out fields with default
/// values, except members of a `oneof` (`always`), whose presence is their meaning.
public struct ProtobufWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    /// Wire types (§"Message Structure").
    enum WireType: UInt64 {
        case varint = 0
        case fixed64 = 1
        case lengthDelimited = 2
        case fixed32 = 5
    }

    mutating func tag(_ field: Int, _ type: WireType) {
        appendVarint(UInt64(field) << 3 | type.rawValue)
    }

    mutating func appendVarint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    /// A varint field (enums, bools, int64 as two's complement).
    public mutating func varint(_ field: Int, _ value: UInt64, always: Bool = false) {
        guard value != 0 || always else { return }
        tag(field, .varint)
        appendVarint(value)
    }

    /// A `fixed64` (or `double`) field, little-endian.
    public mutating func fixed64(_ field: Int, _ value: UInt64, always: Bool = false) {
        guard value != 0 || always else { return }
        tag(field, .fixed64)
        for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    /// A `fixed32` field, little-endian.
    public mutating func fixed32(_ field: Int, _ value: UInt32) {
        guard value != 0 else { return }
        tag(field, .fixed32)
        for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }

    /// A `bytes` field.
    public mutating func bytesField(_ field: Int, _ value: [UInt8]) {
        guard !value.isEmpty else { return }
        tag(field, .lengthDelimited)
        appendVarint(UInt64(value.count))
        bytes += value
    }

    /// A `string` field.
    public mutating func string(_ field: Int, _ value: String, always: Bool = false) {
        guard !value.isEmpty || always else { return }
        tag(field, .lengthDelimited)
        appendVarint(UInt64(value.utf8.count))
        bytes += value.utf8
    }

    /// An embedded message, written by `body` (always present, even empty: a message field's presence counts).
    public mutating func message(_ field: Int, _ body: (inout ProtobufWriter) -> Void) {
        var nested = ProtobufWriter()
        body(&nested)
        tag(field, .lengthDelimited)
        appendVarint(UInt64(nested.bytes.count))
        bytes += nested.bytes
    }
}
