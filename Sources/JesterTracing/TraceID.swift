// SPDX-License-Identifier: Apache-2.0
/// A W3C trace id: 16 bytes, never all zero (W3C Trace Context §3.2.2.3), kept as two words so that making,
/// comparing and sampling one costs no allocation.
public struct TraceID: Sendable, Hashable, CustomStringConvertible {
    /// The first 8 bytes, big-endian (the first 16 hex digits).
    public var high: UInt64
    /// The last 8 bytes, big-endian: the part TraceIdRatioBased sampling reads.
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// An id of all zero bytes is invalid on the wire: a header carrying it is ignored.
    public var isValid: Bool { high != 0 || low != 0 }

    /// The 32 lowercase hex digits of the header.
    public var description: String { String(decoding: hexBytes, as: UTF8.self) }

    /// The 32 lowercase hex digits as bytes.
    public var hexBytes: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(32)
        Hex.append(high, to: &bytes)
        Hex.append(low, to: &bytes)
        return bytes
    }

    /// The 16 raw bytes OTLP carries.
    public var bytes: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16)
        Hex.appendRaw(high, to: &bytes)
        Hex.appendRaw(low, to: &bytes)
        return bytes
    }

    /// Parses 32 lowercase hex digits (nil for anything else, the all-zero id included).
    public init?(hex: String) {
        var text = hex
        let parsed: TraceID? = text.withUTF8 { utf8 in
            guard utf8.count == 32, let high = Hex.word(utf8, from: 0), let low = Hex.word(utf8, from: 16) else {
                return nil
            }
            return TraceID(high: high, low: low)
        }
        guard let parsed, parsed.isValid else { return nil }
        self = parsed
    }
}

/// A W3C span id (the `parent-id` of `traceparent`): 8 bytes, never all zero.
public struct SpanID: Sendable, Hashable, CustomStringConvertible {
    /// The 8 bytes, big-endian.
    public var value: UInt64

    public init(_ value: UInt64) {
        self.value = value
    }

    /// An id of all zero bytes is invalid on the wire.
    public var isValid: Bool { value != 0 }

    /// The 16 lowercase hex digits of the header.
    public var description: String { String(decoding: hexBytes, as: UTF8.self) }

    /// The 16 lowercase hex digits as bytes.
    public var hexBytes: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16)
        Hex.append(value, to: &bytes)
        return bytes
    }

    /// The 8 raw bytes OTLP carries.
    public var bytes: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(8)
        Hex.appendRaw(value, to: &bytes)
        return bytes
    }

    /// Parses 16 lowercase hex digits (nil for anything else, the all-zero id included).
    public init?(hex: String) {
        var text = hex
        let parsed: UInt64? = text.withUTF8 { utf8 in utf8.count == 16 ? Hex.word(utf8, from: 0) : nil }
        guard let parsed, parsed != 0 else { return nil }
        value = parsed
    }
}

/// Lowercase hex, as Trace Context writes it (`HEXDIGLC`): uppercase digits make a header invalid (§3.2.2.1).
enum Hex {
    static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    /// The value of one lowercase hex digit, or nil.
    @inline(__always)
    static func value(_ byte: UInt8) -> UInt64? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt64(byte &- UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt64(byte &- UInt8(ascii: "a") &+ 10)
        default: nil
        }
    }

    /// The word written by the 16 hex digits at `start`, or nil when one is not a lowercase hex digit.
    static func word(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> UInt64? {
        guard start + 16 <= bytes.count else { return nil }
        var word: UInt64 = 0
        for index in start..<start + 16 {
            guard let digit = value(bytes[index]) else { return nil }
            word = word << 4 | digit
        }
        return word
    }

    /// Appends the 16 hex digits of `word`.
    static func append(_ word: UInt64, to bytes: inout [UInt8]) {
        for nibble in 0..<16 {
            bytes.append(digits[Int((word >> UInt64(60 - nibble * 4)) & 0xF)])
        }
    }

    /// Appends the 8 bytes of `word`, big-endian.
    static func appendRaw(_ word: UInt64, to bytes: inout [UInt8]) {
        for shift in stride(from: 56, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: word >> UInt64(shift)))
        }
    }
}
